"""The render pipeline: a source of motion -> renderer -> encoder, side by side.

`render` wires the stages (a motion source, sources.py; then the renderer and the encoder, side
by side as in core/runtime.py) and reports how long each took, so `tm render` and `tm bench`
share one code path. A video-backend checkpoint is handed to video.py, a generator in a process
of its own to remote.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError
from tmcli.core.images import check_image
from tmcli.core.media import VideoWriter, check_outputs, is_video
from tmcli.core.runtime import HostFrames, StageDevices, StageTimer, on_stream, render_threads, staged
from tmcli.motion.curves import MotionWriter, motion_format
from tmcli.stream.dub import DubbedVideo, MotionFrom, Resampled
from tmcli.stream.sources import QUEUE_CHUNKS, FileMotionSource, MotionSource, RenderResult

DUB_HINT = "leave out --motion-in, --motion-out, --no-video and --motion-from"

if TYPE_CHECKING:
    from tmcli.motion.portrait import Portrait


@render_threads()
def render(
    portrait_path: str | Path,
    audio_path: str | Path | None,
    output: str | Path | None,
    preset: Preset,
    seed: int = 0,
    transcript: str | None = None,
    face_index: int = 0,
    on_frame: Callable[[int, int | None], None] | None = None,
    generator: str = "student",
    checkpoint: str | Path | None = None,
    raw_rate: int | None = None,
    on_motion: Callable[[np.ndarray], None] | None = None,
    devices: StageDevices | None = None,
    timer: StageTimer | None = None,
    motion_in: str | Path | None = None,
    motion_out: str | Path | None = None,
    loop: str = "pingpong",
    motion_from: str | Path | None = None,
) -> RenderResult:
    """Render `audio_path` ("-": stdin) spoken by the face in `portrait_path` to the mp4 `output`
    ("-": stdout; None: only the motion file `motion_out`); a video as the face is dubbed (render_dub).
    generator: student, teacher or phonetic, from `checkpoint` (sources.py). raw_rate: headerless
    16-bit PCM at this rate. on_motion: called with each block of motion. devices: where generator
    and renderer run (`devices.processes`: remote.py); `timer` gets each stage's busy time.
    motion_in: this file's motion is rendered. motion_from: a video whose head pose, blinks, gaze
    and brows the portrait takes, played as `loop` says (dub.MotionFrom)."""
    from tmcli.stream.generator import is_video_checkpoint  # once the worker runs: MotionSource.start

    if checkpoint is not None and is_video_checkpoint(checkpoint):  # frames from the video backend
        _check_video_request(generator, motion_in, motion_out, output, devices)
        from tmcli.stream.video import render_video

        video_args = (seed, transcript, face_index, on_frame, devices, timer)
        return render_video(portrait_path, audio_path, output, preset, checkpoint, *video_args)
    start, fps = time.perf_counter(), preset.output.fps
    timer, devices = timer or StageTimer(), devices or StageDevices.cpu()
    args = (audio_path, preset, generator, checkpoint, devices, seed, transcript, raw_rate)
    if is_video(portrait_path):
        dubbing = (face_index, loop, timer, on_frame, motion_in or motion_out or motion_from)
        return render_dub(portrait_path, output, args, *dubbing)
    _check_files(portrait_path, audio_path, output, motion_in, motion_out)
    meta = {"portrait": str(portrait_path), "audio": str(audio_path), "generator": generator, "seed": seed}
    with _speech_worker() as pool, contextlib.ExitStack() as stack:
        source = _motion_source(args, motion_in, timer, pool, stack)
        if motion_from is not None:  # head, eyes and brows from a video
            source = MotionFrom(source, motion_from, fps, loop, face_index, timer)
        with timer("landmarks"):
            portrait = _portrait(portrait_path, preset, face_index, devices, checkpoint, motion_in)
        if motion_out is not None:
            curves = MotionWriter(motion_out, fps, portrait.face.landmarks, meta)
            on_motion = _both(stack.enter_context(curves).write, on_motion)
        if output is None:  # the motion alone
            frames = sum(len(chunk) for chunk in _called(source.chunks(), on_motion))
            return RenderResult.of(frames, fps, start, timer, portrait.alignment.size)
        encoding = (preset, devices, timer, on_frame, on_motion, getattr(source, "check_faces", None))
        frames = _encode(source, portrait, output, audio_path, *encoding)
    timer.mark("stream end")  # the video is whole (muxed and closed)
    return RenderResult.of(frames, fps, start, timer, portrait.alignment.size, portrait.frame_size)


def render_dub(
    video_path: str | Path,
    output: str | Path | None,
    args: tuple,
    face_index: int,
    loop: str,
    timer,
    on_frame,
    motion_files=None,
) -> RenderResult:
    """The video at `video_path` with its mouth saying the audio of `args` (MotionSource's
    arguments): the source's frame rate and size, the new audio, the generator's motion made at
    its own rate and resampled to the video's. motion_files: a motion file or reference given."""
    if motion_files or output is None:
        raise ConfigError("a video face is dubbed from AUDIO", hint=DUB_HINT)
    start, (audio_path, preset, devices) = time.perf_counter(), (args[0], args[1], args[4])
    check_outputs(output, inputs=(video_path, audio_path))
    with _speech_worker() as pool:
        source = MotionSource(*args, timer=timer, pool=pool)
        source.start()
        with timer("open video"):
            video = DubbedVideo(video_path, preset, loop, face_index, devices.renderer, timer)
        try:
            motion = Resampled(source, preset.output.fps, video.fps)
            output_preset = dataclasses.replace(
                preset, output=dataclasses.replace(preset.output, fps=video.fps)
            )
            encoding = (output_preset, devices, timer, on_frame, None, video.check_faces)
            frames = _encode(motion, video, output, audio_path, *encoding)
        finally:
            video.close()
    timer.mark("stream end")
    return RenderResult.of(frames, video.fps, start, timer, video.render_size, video.frame_size)


def _check_video_request(generator: str, motion_in, motion_out, output, devices: StageDevices | None) -> None:
    """A video-backend checkpoint makes frames, not motion, and streams them itself."""
    if generator != "student" or motion_in or motion_out or output is None or (devices and devices.processes):
        raise ConfigError(
            "a video-backend checkpoint renders video alone, streamed by its student",
            hint="leave out --generator, --motion-in/--motion-out, --no-video and --disaggregate",
        )


def _speech_worker() -> ProcessPoolExecutor:
    """The process that finds phones: a fresh interpreter (spawn: no torch, no threads forked)
    that leaves Ctrl-C to this process, which terminates it (cli/app.py): no traceback from it."""
    ignore_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_IGN)
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=ignore_sigint)


def _motion_source(
    args: tuple, motion_in: str | Path | None, timer: StageTimer, pool, stack: contextlib.ExitStack
):
    """A motion file's, a generator in a process of its own (devices.processes), or one here: started."""
    if motion_in is not None:
        source = FileMotionSource(motion_in, args[1], timer)
    elif args[4].processes:
        from tmcli.stream.remote import RemoteMotionSource

        source = stack.enter_context(RemoteMotionSource(*args, timer=timer))
    else:
        source = MotionSource(*args, timer=timer, pool=pool)
    source.start()
    return source


def _check_files(portrait_path, audio_path, output, motion_in, motion_out) -> None:
    """Bad paths fail from their names and headers, before any work; missing output folders are made."""
    if motion_out is not None:
        motion_format(motion_out)
    if output is None and motion_out is None:
        raise ConfigError("nothing to write: give an output video or a motion file")
    check_image(portrait_path)  # what is no still image, or is too large, fails from its header
    check_outputs(output, (motion_out,), inputs=(portrait_path, audio_path, motion_in))


def _portrait(
    path: str | Path, preset: Preset, face_index: int, devices: StageDevices, checkpoint, motion_in
) -> Portrait:
    """The portrait, posed and warped by tm export's graphs when `checkpoint` is an export, by
    the warp captured as a CUDA graph on a GPU that asks for it, else by the eager warp."""
    from tmcli.motion.portrait import Portrait
    from tmcli.motion.warp_graph import GraphedWarp
    from tmcli.stream.engine import ExportedModel, ExportedWarp, is_export

    portrait = Portrait.load(path, preset, face_index, devices.renderer)
    if motion_in is None and is_export(checkpoint):
        exported = ExportedModel(checkpoint, graphs=("face_rig", "warp"))
        rig, warp = portrait.rig.posed_by(exported.face_rig), ExportedWarp(exported, portrait.renderer)
        return dataclasses.replace(portrait, rig=rig, renderer=warp)
    if devices.renderer.type == "cuda" and preset.warp.cuda_graph:
        return dataclasses.replace(portrait, renderer=GraphedWarp(portrait.renderer))
    return portrait


def _called(chunks: Iterator[np.ndarray], on_motion: Callable | None) -> Iterator[np.ndarray]:
    for chunk in chunks:
        on_motion(chunk)
        yield chunk


def _encode(
    source,
    portrait: Portrait,
    output: str | Path,
    audio_path: str | Path | None,
    preset: Preset,
    devices: StageDevices,
    timer: StageTimer,
    on_frame: Callable | None,
    on_motion: Callable | None,
    finish: Callable[[], None] | None = None,
) -> int:
    """The source's motion rendered and encoded to `output` -> the number of frames written.
    finish: called after the last frame, before the file is published (it may still refuse it)."""
    width, height = portrait.frame_size
    with VideoWriter.for_speech(output, width, height, preset.output, audio_path) as writer:
        frames = 0
        source.wait_ready()
        timer.mark("stream start")
        for frame, chunk_started in frame_stream(
            source.chunks(writer), portrait, devices, timer, source.stage, on_motion
        ):
            with timer("encode (pipe)"):
                writer.write(frame)
            frames += 1
            if frames == 1:
                timer.mark("first frame")
            if chunk_started is not None:  # a chunk's last frame is out
                timer.record("chunk latency", time.perf_counter() - chunk_started)
            if on_frame:
                on_frame(frames, source.total_frames)
        if finish is not None:
            finish()
    timer.seconds["encode (pipe)"] += writer.close_seconds
    return frames


def _both(first: Callable, second: Callable | None) -> Callable:
    if second is None:
        return first
    return lambda chunk: (first(chunk), second(chunk))


def frame_stream(
    motion_chunks: Iterator[np.ndarray],
    portrait,
    devices: StageDevices,
    timer: StageTimer,
    generator_stage: str = "generator",
    on_motion: Callable[[np.ndarray], None] | None = None,
    queue_chunks: int = QUEUE_CHUNKS,
) -> Iterator[tuple[np.ndarray, float | None]]:
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
