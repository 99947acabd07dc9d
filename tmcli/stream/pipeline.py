"""The render pipeline: audio -> features -> generator -> motion -> renderer -> sink.

`render` wires the stages (a MotionSource: audio, features, phones, generator; then the
renderer and the encoder, side by side as in runtime.py) and reports how long each took, so
`tm render` and `tm bench` share one code path. Finding phones (pocketsphinx) needs neither torch nor mediapipe,
so it runs in a worker process while this one loads them, prepares the portrait and computes
the audio features: on two cores that hides most of the start-up.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tmcli.core import audio as audio_mod
from tmcli.core.config import Preset
from tmcli.motion.controls import Controls, parse_emotion
from tmcli.motion.driver import PhoneticDriver
from tmcli.core.errors import ConfigError
from tmcli.face.rig import POSE_CHANNELS
from tmcli.speech.features import generator_features
from tmcli.core.media import VideoWriter, check_image, check_outputs
from tmcli.core.runtime import HostFrames, StageDevices, StageTimer, on_stream, preload, render_threads, staged
from tmcli.motion.smoothing import smooth_slow_channels
from tmcli.speech.phones import speech_phones, warm_up

GENERATORS = ("phonetic", "teacher", "student")
CHUNK_FRAMES = 5  # frames per rendered chunk of the generators that make all motion at once
QUEUE_CHUNKS = 4  # chunks one stage may run ahead of the next
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
FEATURE_MODULES = ("librosa.feature", "librosa.core.pitch")  # audio.extract_features': 1-2 s to import


def check_generator(generator: str) -> None:
    if generator not in GENERATORS:
        raise ConfigError(f"unknown generator {generator!r}", hint=f"use one of {', '.join(GENERATORS)}")


def motion_blocks(motion: np.ndarray) -> Iterator[np.ndarray]:
    """Motion made all at once, in chunks as the student's: so the frames in flight stay few."""
    for start in range(0, len(motion), CHUNK_FRAMES):
        yield motion[start: start + CHUNK_FRAMES]


def embedded_checkpoint(generator: str) -> Path:
    """The generator shipped inside the package (see tmcli/weights/*/README.md)."""
    path = WEIGHTS_DIR / generator
    if not (path / "config.json").is_file():
        raise ConfigError(f"no embedded {generator} checkpoint in this install",
                          hint="pass --checkpoint DIR (train one with `tm train`)")
    return path


@dataclass
class RenderResult:
    frames: int
    seconds_of_audio: float
    wall_seconds: float
    render_size: int  # side of the crop the renderer worked at
    frame_size: tuple[int, int]  # (width, height) written
    stage_seconds: dict[str, float] = field(default_factory=dict)


def controls_from(preset: Preset) -> Controls:
    c = preset.controls
    return Controls((c.gaze_x, c.gaze_y), parse_emotion(c.emotion), c.pose_intensity, c.blink_rate)


def still_head(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Head pose held at the portrait's: pose intensity 0 means a head that does not move, and a
    learned generator conditioned on 0 still sways by about 0.01 rad."""
    for chunk in chunks:
        chunk = chunk.copy()
        chunk[:, POSE_CHANNELS] = 0.0
        yield chunk


class MotionSource:
    """Audio -> motion chunks: reading, features, phones and the generator (the stages up to
    motion). `start` sets them going; `chunks` yields motion (frames, MOTION_DIM) blocks.

    "student" streams: audio is read, cut into utterances, turned into motion chunk by chunk
    (memory does not grow with the length). "teacher" and "phonetic" read the whole audio first.
    Finding phones (pocketsphinx) needs neither torch nor mediapipe, so it runs in the worker
    process `pool` while this process loads them."""

    def __init__(self, audio_path: str | Path, preset: Preset, generator: str, checkpoint: str | Path | None,
                 devices: StageDevices, seed: int, transcript: str | None, raw_rate: int | None,
                 timer: StageTimer, pool):
        check_generator(generator)
        if generator != "phonetic" and checkpoint is None:
            checkpoint = embedded_checkpoint(generator)
        self.controls = controls_from(preset)  # a bad emotion fails here, before any work
        self.audio_path, self.preset, self.generator, self.checkpoint = audio_path, preset, generator, checkpoint
        self.devices, self.seed, self.transcript, self.raw_rate = devices, seed, transcript, raw_rate
        self.timer, self.pool = timer, pool
        self.from_stdin = str(audio_path) == "-"
        self.streaming = generator == "student"
        self.stage = "audio, phones, generator (streamed)" if self.streaming else "generator"
        self.total_frames: int | None = None  # known once the whole audio is read

    def start(self) -> None:
        timer, pool = self.timer, self.pool
        if self.streaming:
            warm = pool.submit(warm_up)  # the worker loads pocketsphinx while this process loads the rest
            warm.add_done_callback(lambda _: timer.mark("speech decoders loaded (worker)"))
            preload(*FEATURE_MODULES)  # while the worker finds the first phones
            if not self.from_stdin:  # a file's first utterances are cut and heard while the model loads
                blocks = audio_mod.read_audio_blocks(self.audio_path, self.raw_rate)
                self.features = staged(_student_features(blocks, self.preset, self.transcript, self.audio_path, pool))
        else:
            with timer("load audio"):
                self.samples = audio_mod.load_audio(self.audio_path, self.raw_rate, audio_mod.WHOLE_AUDIO_LIMIT)
            # phones: the transcript force-aligned, or recognised words + closures
            self.phones_job = pool.submit(speech_phones, self.samples, self.transcript)
            self.total_frames = int(round(len(self.samples) / audio_mod.SAMPLE_RATE * self.preset.output.fps))
        if self.generator != "phonetic":
            with timer("load generator"):  # while the worker finds phones; a bad checkpoint fails early
                self.model = load_generator(self.checkpoint, self.preset, self.generator, self.devices)

    def wait_ready(self) -> None:
        """Loaded in start(): nothing to wait for (a RemoteMotionSource waits for its process)."""

    def chunks(self, writer: VideoWriter | None = None) -> Iterator[np.ndarray]:
        """Motion blocks. writer: for audio from stdin, the video that gets the audio as it is read.
        A learned generator's slow channels (head pose, gaze, brows) are smoothed (smoothing.py);
        pose intensity 0 holds the head still, whichever generator."""
        chunks = self._generated(writer)
        if self.generator != "phonetic":
            settings = self.preset.generator
            chunks = smooth_slow_channels(chunks, self.preset.output.fps, settings.smooth_cutoff, settings.smooth_beta)
        return still_head(chunks) if self.controls.pose_intensity == 0 else chunks

    def _generated(self, writer: VideoWriter | None) -> Iterator[np.ndarray]:
        if self.streaming:
            features = self.features if not self.from_stdin else _student_features(
                writer.tee_audio(audio_mod.read_audio_blocks(self.audio_path, self.raw_rate)),
                self.preset, self.transcript, self.audio_path, self.pool)
            yield from self.model.stream(_marked(features, self.timer, "first features"), self.controls, self.seed)
            return
        if self.from_stdin:
            writer.write_audio(self.samples)
        with self.timer("audio features"):
            features = audio_mod.extract_features(self.samples, self.preset.output.fps)
        with self.timer("waiting for phones (worker)"):
            phones = _result(self.phones_job, functools.partial(speech_phones, self.samples, self.transcript))
        if self.generator == "phonetic":
            motion = PhoneticDriver(self.preset.driver)(phones, features, self.seed, self.controls)
        else:
            motion = self.model(generator_features(features, phones), self.controls, self.seed)
        self.total_frames = len(motion)
        yield from motion_blocks(motion)


class FileMotionSource:
    """Motion read from a motion file (tm's JSON or an ARKit CSV, see curves.py): motion transfer."""

    stage = "motion from file"

    def __init__(self, path: str | Path, preset: Preset, timer: StageTimer):
        from tmcli.motion.curves import read_motion

        with timer("load motion"):
            self.motion = read_motion(path, preset.output.fps)
        self.total_frames = len(self.motion)

    def start(self) -> None:
        """Read in __init__: a bad file fails before any work."""

    def wait_ready(self) -> None:
        """Nothing to wait for."""

    def chunks(self, writer: VideoWriter | None = None) -> Iterator[np.ndarray]:
        return motion_blocks(self.motion)


@render_threads()
def render(portrait_path: str | Path, audio_path: str | Path | None, output: str | Path | None, preset: Preset,
           seed: int = 0, transcript: str | None = None, face_index: int = 0,
           on_frame: Callable[[int, int | None], None] | None = None, generator: str = "student",
           checkpoint: str | Path | None = None, raw_rate: int | None = None,
           on_motion: Callable[[np.ndarray], None] | None = None, devices: StageDevices | None = None,
           timer: StageTimer | None = None, motion_in: str | Path | None = None,
           motion_out: str | Path | None = None) -> RenderResult:
    """Render `audio_path` ("-": standard input) spoken by the face in `portrait_path` to the
    mp4 `output` ("-": standard output).

    generator: student (streams), teacher or phonetic (see MotionSource). Learned generators
    load `checkpoint`, by default the one shipped in tmcli/weights/. raw_rate: the audio is
    headerless 16-bit PCM at this rate. on_motion: called with each block of motion before it
    is rendered. devices: where the generator and the renderer run (default: the CPU); with
    `devices.processes`, the generator runs in a process of its own (see remote.py). The
    generator, the renderer and the encoder run side by side (runtime.py); `timer` gets each
    stage's busy time and the moments the stream began and its first frame came out.
    motion_in: render the motion in this file instead of generating it (audio, if any, is
    only muxed); motion_out: also write the motion to this file (.json or .csv, curves.py);
    output None: no video, only the motion file.
    """
    from tmcli.motion.curves import MotionWriter, motion_format
    from tmcli.stream.generator import is_video_checkpoint

    if checkpoint is not None and is_video_checkpoint(checkpoint):  # the video backend makes frames, not motion
        if generator != "student" or motion_in or motion_out or output is None or (devices and devices.processes):
            raise ConfigError("a video-backend checkpoint renders video alone, streamed by its student",
                              hint="leave out --generator, --motion-in/--motion-out, --no-video and --processes")
        from tmcli.stream.video import render_video

        return render_video(portrait_path, audio_path, output, preset, checkpoint, seed, transcript, face_index,
                            on_frame, devices, timer)
    start = time.perf_counter()
    timer = timer or StageTimer()
    devices = devices or StageDevices.cpu()
    if motion_out is not None:
        motion_format(motion_out)  # a bad extension fails before any work
    if output is None and motion_out is None:
        raise ConfigError("nothing to write: give an output video or a motion file")
    check_image(portrait_path)  # what is no still image, or is too large, fails from its header
    check_outputs(output, (motion_out,), inputs=(portrait_path, audio_path, motion_in))  # makes missing folders
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch, no threads forked
    # the worker leaves Ctrl-C to this process, which terminates it (cli/app.py): no traceback from it
    ignore_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_IGN)
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=ignore_sigint) as pool, contextlib.ExitStack() as stack:
        args = (audio_path, preset, generator, checkpoint, devices, seed, transcript, raw_rate)
        if motion_in is not None:
            source = FileMotionSource(motion_in, preset, timer)
        elif devices.processes:
            from tmcli.stream.remote import RemoteMotionSource

            source = stack.enter_context(RemoteMotionSource(*args, timer=timer))
        else:
            source = MotionSource(*args, timer=timer, pool=pool)
        source.start()
        with timer("landmarks"):
            from tmcli.motion.portrait import Portrait

            portrait = Portrait.load(portrait_path, preset, face_index, devices.renderer)
            from tmcli.stream.engine import ExportedModel, ExportedWarp, is_export

            if motion_in is None and is_export(checkpoint):  # the export's graphs pose the landmarks and warp
                exported = ExportedModel(checkpoint, graphs=("face_rig", "warp"))
                portrait.rig.pose = exported.face_rig
                portrait.renderer = ExportedWarp(exported, portrait.renderer)
            elif devices.renderer.type == "cuda" and preset.warp.cuda_graph:
                from tmcli.motion.warp import GraphedWarp

                portrait.renderer = GraphedWarp(portrait.renderer)
        out = preset.output
        if motion_out is not None:
            curves = stack.enter_context(MotionWriter(motion_out, out.fps, portrait.face.landmarks, {
                "portrait": str(portrait_path), "audio": str(audio_path), "generator": generator, "seed": seed}))
            on_motion = _both(curves.write, on_motion)
        if output is None:  # the motion alone
            frames = 0
            for chunk in source.chunks():
                on_motion(chunk)
                frames += len(chunk)
            return RenderResult(frames, frames / out.fps, time.perf_counter() - start, portrait.alignment.size,
                                (0, 0), dict(timer.seconds))
        width, height = portrait.frame_size
        from_stdin = str(audio_path) == "-"
        with VideoWriter(output, width, height, out.fps, audio_path=None if from_stdin else audio_path,
                         audio_rate=audio_mod.SAMPLE_RATE if from_stdin else None, crf=out.crf,
                         preset=out.x264_preset) as writer:
            frames = 0
            source.wait_ready()
            timer.mark("stream start")
            for frame, chunk_started in frame_stream(source.chunks(writer), portrait, devices, timer, source.stage,
                                                     on_motion):
                with timer("encode (pipe)"):
                    writer.write(frame)
                frames += 1
                if frames == 1:
                    timer.mark("first frame")
                if chunk_started is not None:  # a chunk's last frame is out
                    timer.record("chunk latency", time.perf_counter() - chunk_started)
                if on_frame:
                    on_frame(frames, source.total_frames)
        timer.seconds["encode (pipe)"] += writer.close_seconds
    timer.mark("stream end")  # the video is whole (muxed and closed)
    return RenderResult(frames, frames / out.fps, time.perf_counter() - start, portrait.alignment.size,
                        portrait.frame_size, dict(timer.seconds))


def _both(first: Callable, second: Callable | None) -> Callable:
    if second is None:
        return first
    return lambda chunk: (first(chunk), second(chunk))


def frame_stream(motion_chunks: Iterator[np.ndarray], portrait, devices: StageDevices, timer: StageTimer,
                 generator_stage: str = "generator", on_motion: Callable[[np.ndarray], None] | None = None,
                 queue_chunks: int = QUEUE_CHUNKS) -> Iterator[tuple[np.ndarray, float | None]]:
    """Motion chunks -> frames (H x W x 3 uint8, host), the generator and the renderer each in a
    thread of its own on its own device and stream, at most `queue_chunks` chunks apart.

    Yields (frame, None), and with a chunk's last frame (frame, when the chunk was begun)."""
    import torch

    def generate():
        with on_stream(devices.generator), torch.no_grad():
            while True:
                started = time.perf_counter()
                with timer(generator_stage):
                    chunk = next(motion_chunks, None)
                if chunk is None:
                    return
                timer.mark("first motion")
                if on_motion:
                    on_motion(chunk)
                yield started, chunk

    def render_chunks(chunks):
        host = None
        with on_stream(devices.renderer), torch.no_grad():
            for started, chunk in chunks:
                # frames in flight: a queue of chunks, one waiting to enter it, one encoding, one rendering
                host = host or HostFrames(devices.renderer, slots=(queue_chunks + 3) * len(chunk))
                with timer("render"):
                    frames = [host(portrait.frame_tensor(frame_motion)) for frame_motion in chunk]
                timer.mark("first chunk rendered")
                yield started, frames

    for started, pending in staged(render_chunks(staged(generate(), queue_chunks)), queue_chunks):
        for i, wait in enumerate(pending):
            yield wait(), started if i == len(pending) - 1 else None


def _result(job, fallback):
    """A worker's result; if the worker could not start (spawn re-imports __main__, which fails
    for code read from stdin and scripts without a main guard), do the same work here."""
    try:
        return job.result()
    except BrokenProcessPool:
        return fallback()


def _marked(items: Iterator, timer: StageTimer, event: str) -> Iterator:
    """`items`, with `event` marked when the first one comes."""
    for item in items:
        timer.mark(event)
        yield item


def _student_features(blocks, preset: Preset, transcript: str | None, audio_path, pool) -> Iterator[np.ndarray]:
    """The streaming student's input: generator features, an utterance at a time, as audio blocks arrive."""
    from tmcli.speech.features import FeatureStream, phones_within, recognised_phones

    if transcript:  # the alignment needs the whole text and audio: align first, then stream
        samples = audio_mod.load_audio(audio_path)
        phones_of = functools.partial(phones_within, speech_phones(samples, transcript))
        pool = None
    else:
        phones_of = recognised_phones
    return FeatureStream(preset.output.fps, phones_of, pool=pool)(blocks)


def load_generator(checkpoint: str | Path, preset: Preset, kind: str, devices: StageDevices | None = None):
    """The teacher or student in `checkpoint` on the generator's device, checked against the kind
    and frame rate asked for."""
    from tmcli.stream.engine import ExportedChunkStep, ExportedModel, GraphedChunkStep, is_export
    from tmcli.stream.generator import StreamingGenerator, TeacherGenerator, load_motion_dit
    from tmcli.motion.causal_dit import CausalMotionDiT

    devices = devices or StageDevices.cpu()
    if is_export(checkpoint):  # tm export's graphs: the student's chunk step, on the CPU
        if kind != "student" or devices.generator.type != "cpu":
            raise ConfigError("an export runs the student's chunk step on the CPU",
                              hint="render it with --generator student and no --device")
        exported = ExportedChunkStep(ExportedModel(checkpoint, graphs=("chunk_step",)))
        if abs(exported.config.fps - preset.output.fps) > 1e-6:
            raise ConfigError(f"the export generates {exported.config.fps:g} fps motion; asked for "
                              f"{preset.output.fps:g} fps", hint=f"render with --fps {exported.config.fps:g}")
        return StreamingGenerator(exported)
    model = load_motion_dit(checkpoint, devices.generator)
    if isinstance(model, CausalMotionDiT) != (kind == "student"):
        made = "a causal student (tm distill)" if isinstance(model, CausalMotionDiT) else "a teacher (tm train)"
        raise ConfigError(f"{checkpoint} holds {made}, not a {kind}",
                          hint=f"render it with --generator {'student' if kind == 'teacher' else 'teacher'}")
    if abs(model.config.fps - preset.output.fps) > 1e-6:
        raise ConfigError(f"the checkpoint generates {model.config.fps:g} fps motion; asked for {preset.output.fps:g} fps",
                          hint=f"render with --fps {model.config.fps:g}")
    if kind == "student":
        graphed = devices.generator.type == "cuda" and preset.generator.cuda_graph
        generator = StreamingGenerator(GraphedChunkStep(model, devices.autocast) if graphed else model, devices.autocast)
    else:
        generator = TeacherGenerator(model, preset.generator, devices.autocast)
    if devices.generator.type == "cuda":  # CUDA starts lazily: pay for it here, not in the first chunk
        from tmcli.speech.features import silence_features

        generator(silence_features(getattr(model, "audio_span", model.config.window)), Controls())
    return generator
