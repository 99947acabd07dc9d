"""Where motion comes from: audio through features, phones and a generator (`MotionSource`), or a
motion file (`FileMotionSource`). Both hand the pipeline motion in chunks.

Finding phones (pocketsphinx) needs neither torch nor mediapipe, so it runs in a worker process
while this one loads them, prepares the portrait and computes the audio features: on two cores
that hides most of the start-up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tmcli.core import audio as audio_mod
from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError
from tmcli.core.media import VideoWriter
from tmcli.core.runtime import StageDevices, StageTimer, preload, staged
from tmcli.face.rig import POSE_CHANNELS
from tmcli.motion.controls import Controls, parse_emotion
from tmcli.motion.driver import PhoneticDriver
from tmcli.motion.smoothing import smooth_slow_channels
from tmcli.speech.alignment import speech_phones
from tmcli.speech.features import generator_features
from tmcli.speech.phones import warm_up

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
        yield motion[start : start + CHUNK_FRAMES]


@dataclass
class RenderResult:
    frames: int
    seconds_of_audio: float
    wall_seconds: float
    render_size: int  # side of the crop the renderer worked at
    frame_size: tuple[int, int]  # (width, height) written
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        frames: int,
        fps: float,
        start: float,
        timer: StageTimer,
        render_size: int,
        frame_size: tuple[int, int] = (0, 0),
    ) -> RenderResult:
        """A render that began at `start` (perf_counter) and ends now; frame_size (0, 0): no video."""
        seconds = dict(timer.seconds)
        return cls(frames, frames / fps, time.perf_counter() - start, render_size, frame_size, seconds)


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

    def __init__(
        self,
        audio_path: str | Path,
        preset: Preset,
        generator: str,
        checkpoint: str | Path | None,
        devices: StageDevices,
        seed: int,
        transcript: str | None,
        raw_rate: int | None,
        timer: StageTimer,
        pool,
    ):
        check_generator(generator)
        if generator != "phonetic" and checkpoint is None:
            checkpoint = embedded_checkpoint(generator)
        self.controls = controls_from(preset)  # a bad emotion fails here, before any work
        self.audio_path, self.preset, self.generator, self.checkpoint = (
            audio_path,
            preset,
            generator,
            checkpoint,
        )
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
                self.features = staged(
                    student_features(blocks, self.preset, self.transcript, self.audio_path, pool)
                )
        else:
            with timer("load audio"):
                self.samples = audio_mod.load_audio(
                    self.audio_path, self.raw_rate, audio_mod.WHOLE_AUDIO_LIMIT
                )
            # phones: the transcript force-aligned, or recognised words + closures
            self.phones_job = pool.submit(speech_phones, self.samples, self.transcript)
            self.total_frames = int(round(len(self.samples) / audio_mod.SAMPLE_RATE * self.preset.output.fps))
        if self.generator != "phonetic":
            from tmcli.stream.generator import load_generator  # imported here: the worker is started

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
            chunks = smooth_slow_channels(
                chunks, self.preset.output.fps, settings.smooth_cutoff, settings.smooth_beta
            )
        return still_head(chunks) if self.controls.pose_intensity == 0 else chunks

    def _generated(self, writer: VideoWriter | None) -> Iterator[np.ndarray]:
        if self.streaming:
            features = (
                self.features
                if not self.from_stdin
                else student_features(
                    writer.tee_audio(audio_mod.read_audio_blocks(self.audio_path, self.raw_rate)),
                    self.preset,
                    self.transcript,
                    self.audio_path,
                    self.pool,
                )
            )
            yield from self.model.stream(
                _marked(features, self.timer, "first features"), self.controls, self.seed
            )
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


def student_features(
    blocks, preset: Preset, transcript: str | None, audio_path, pool
) -> Iterator[np.ndarray]:
    """The streaming student's input: generator features, an utterance at a time, as audio blocks arrive."""
    from tmcli.speech.features import FeatureStream, phones_within, recognised_phones

    if transcript:  # the alignment needs the whole text and audio: align first, then stream
        samples = audio_mod.load_audio(audio_path)
        phones_of = functools.partial(phones_within, speech_phones(samples, transcript))
        pool = None
    else:
        phones_of = recognised_phones
    return FeatureStream(preset.output.fps, phones_of, pool=pool)(blocks)


def embedded_checkpoint(generator: str) -> Path:
    """The generator shipped inside the package (see tmcli/weights/*/README.md)."""
    path = WEIGHTS_DIR / generator
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"no embedded {generator} checkpoint in this install",
            hint="pass --checkpoint DIR (train one with `tm train`)",
        )
    return path
