"""Dubbing: a video of a person as the face. Its frames are decoded, tracked and prepared in a
stage of their own (`DubbedVideo`), in the order the output needs them (`source_index`: the
video once, then ping-pong, loop or freeze while the speech goes on), and each is given the
mouth of the motion the generator makes of the new speech (motion/dubbing.py). The pipeline
sees it as it sees a portrait: `frame_tensor(motion)` is the next output frame.

Nothing holds the whole video: the first pass decodes it as it plays; a backward run of ping-pong
decodes blocks of BLOCK_SECONDS and plays each reversed; a frame without a face is passed on as
it is.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError, InputError, NoFaceError
from tmcli.core.media import read_video_frames
from tmcli.core.runtime import StageTimer, staged
from tmcli.face.rig import ARTICULATION, CHANNELS
from tmcli.stream.sources import QUEUE_CHUNKS

REFERENCE_SIZE = 256  # crop side a reference video's faces are fitted at
LOOPS = ("pingpong", "loop", "freeze")  # what a video shorter than the speech does after its end
BLOCK_SECONDS = 2.0


def check_loop(loop: str) -> None:
    if loop not in LOOPS:
        raise ConfigError(f"unknown --loop {loop!r}", hint=f"use one of {', '.join(LOOPS)}")


def source_index(k: int, count: int, loop: str) -> int:
    """The source frame behind output frame k of a video of `count` frames: the video once, then
    ping-pong (back and forth, never showing an end frame twice in a row: no jump, no pause),
    loop (from the start again) or freeze (its last frame)."""
    if k < count:
        return k
    if loop == "freeze" or count == 1:
        return count - 1
    if loop == "loop":
        return k % count
    period = 2 * (count - 1)
    r = k % period
    return r if r < count else period - r


def ordered_frames(
    path: Path, fps: float, frames: Iterator[np.ndarray], loop: str, seen: Callable[[], None] | None = None
) -> Iterator[np.ndarray]:
    """Frames in source_index's order, without end: `frames` (the first pass) as they come, then
    decoded again as `loop` asks (the consumer stops when the speech ends). `seen` is called once
    the whole video has been (it may refuse it)."""
    count, last = 0, None
    for count, last in enumerate(frames, start=1):
        yield last
    if last is None:
        raise InputError(f"{path} has no video frames", hint="give a video with a person in it")
    if seen is not None:
        seen()
    if loop == "freeze" or count == 1:
        yield from itertools.repeat(last)
    while True:
        if loop == "loop":
            yield from _decoded(path, fps, 0, count)
            continue
        block = max(1, round(BLOCK_SECONDS * fps))  # backwards: blocks, each decoded and reversed
        for end in range(count - 2, -1, -block):
            begin = max(0, end - block + 1)
            yield from reversed(list(_decoded(path, fps, begin, end + 1 - begin)))
        yield from _decoded(path, fps, 1, count - 1)


def _decoded(path: Path, fps: float, first: int, count: int) -> Iterator[np.ndarray]:
    """`count` frames from frame `first` on."""
    frames = read_video_frames(path, start=(first - 0.5) / fps if first else 0.0)
    next(frames)
    return itertools.islice(frames, count)


def resampled(chunks: Iterator[np.ndarray], from_fps: float, to_fps: float) -> Iterator[np.ndarray]:
    """Motion chunks at `from_fps` -> chunks at `to_fps`, linearly between frames; as long (the
    last output frame is the last that starts before the motion ends)."""
    if abs(from_fps - to_fps) < 1e-6:
        yield from chunks
        return
    held, base, k = np.zeros((0, 0)), 0, 0  # frames kept, index of held[0], next output frame
    for chunk in chunks:
        held = chunk if held.size == 0 else np.concatenate([held, chunk])
        out = []
        while (t := k * from_fps / to_fps) <= base + len(held) - 1:
            i = int(t) - base
            frac = t - int(t)
            after = held[min(i + 1, len(held) - 1)]
            out.append((1 - frac) * held[i] + frac * after)
            k += 1
        drop = max(0, int(k * from_fps / to_fps) - base)
        held, base = held[drop:], base + drop
        if out:
            yield np.stack(out).astype(chunk.dtype)
    duration = (base + len(held)) / from_fps  # the motion's end: frames that start before it
    tail = []
    while held.size and k / to_fps < duration - 1e-9:
        tail.append(held[-1])
        k += 1
    if tail:
        yield np.stack(tail)


class Resampled:
    """A motion source (sources.py) whose chunks come at another frame rate (`resampled`)."""

    total_frames = None

    def __init__(self, source, from_fps: float, to_fps: float):
        self.source, self.from_fps, self.to_fps = source, from_fps, to_fps
        self.stage = source.stage

    def wait_ready(self) -> None:
        self.source.wait_ready()

    def chunks(self, writer=None) -> Iterator[np.ndarray]:
        return resampled(self.source.chunks(writer), self.from_fps, self.to_fps)


class MotionFrom:
    """A motion source (sources.py) whose head pose, blinks, gaze and brows come from a reference
    video: every channel but the articulation, fitted per frame through the rig of the video's
    first face (relative to it, so the portrait starts as it is), at the render's frame rate,
    the video played as `loop` says while the speech goes on. The mouth stays the generator's."""

    TAKEN = np.array([i for i, name in enumerate(CHANNELS) if name not in ARTICULATION])

    def __init__(self, source, path: str | Path, fps: float, loop: str, face_index: int, timer: StageTimer):
        check_loop(loop)
        self.source, self.path, self.fps, self.loop = source, Path(path), fps, loop
        self.face_index, self.timer = face_index, timer
        self.stage, self.total_frames = source.stage, None
        self.faces = 0
        self.frames = read_video_frames(self.path)  # an unreadable video fails here, before any work
        self.video_fps = float(next(self.frames))

    def wait_ready(self) -> None:
        self.source.wait_ready()

    def chunks(self, writer=None) -> Iterator[np.ndarray]:
        reference = (row for chunk in resampled(self._fitted(), self.video_fps, self.fps) for row in chunk)
        for chunk in self.source.chunks(writer):
            chunk = np.array(chunk, copy=True)
            chunk[:, self.TAKEN] = np.stack([next(reference) for _ in chunk])[:, self.TAKEN]
            yield chunk

    def _fitted(self) -> Iterator[np.ndarray]:
        """The reference's motion, a (1, MOTION_DIM) chunk per frame (the last found where no face)."""
        from tmcli.face.align import align_face
        from tmcli.face.fitting import fit_motion
        from tmcli.face.rig import FaceRig, neutral
        from tmcli.face.tracking import FaceTracker

        tracker, rig, motion = FaceTracker(self.video_fps, self.face_index), None, neutral(1)[0]
        try:
            for frame in ordered_frames(self.path, self.video_fps, self.frames, self.loop, self.check_faces):
                with self.timer("reference tracking"):
                    landmarks = tracker(frame)
                if landmarks is not None:
                    crop = align_face(landmarks, REFERENCE_SIZE).to_crop(landmarks)
                    rig = rig or FaceRig(crop)
                    motion, self.faces = fit_motion(rig, crop), self.faces + 1
                yield motion[None]
        finally:
            tracker.close()

    def check_faces(self) -> None:
        if self.faces == 0:
            raise NoFaceError(f"--motion-from: no face found in {self.path}", hint="give a video of a face")


class DubbedVideo:
    """The video a render dubs, in the pipeline's place of a portrait."""

    def __init__(
        self, path: str | Path, preset: Preset, loop: str, face_index: int, device, timer: StageTimer
    ):
        check_loop(loop)
        self.path, self.preset, self.device, self.timer = Path(path), preset, device, timer
        frames = read_video_frames(self.path)
        self.fps = float(next(frames))
        first = next(frames, None)
        if first is None:
            raise InputError(f"{path} has no video frames", hint="give a video with a person in it")
        h, w = first.shape[:2]
        self.frame_size = (w - w % 2, h - h % 2)  # H.264 yuv420p wants even sizes
        self.dub = None
        self.idle = threading.Event()  # set while no tracker is open (close waits for it)
        self.idle.set()
        self.faces = 0  # frames in which the face was found
        ordered = ordered_frames(
            self.path, self.fps, itertools.chain([first], frames), loop, self.check_faces
        )
        self.prepared = staged(self._prepared(ordered, face_index), QUEUE_CHUNKS * 5)

    @property
    def render_size(self) -> int:
        return self.dub.size if self.dub is not None else 0

    def _prepared(self, frames: Iterator[np.ndarray], face_index: int):
        """Each frame tracked and prepared for its mouth (MouthDub.prepare), or as it is if faceless."""
        from tmcli.face.tracking import FaceTracker
        from tmcli.motion.dubbing import MouthDub

        self.idle.clear()
        tracker = FaceTracker(self.fps, face_index)
        try:
            while True:
                with self.timer("decode"):
                    frame = next(frames)
                with self.timer("tracking"):
                    landmarks = tracker(frame)
                if landmarks is None:
                    yield frame
                    continue
                self.faces += 1
                if self.dub is None:
                    self.dub = MouthDub(frame, landmarks, self.preset.warp, self.device)
                with self.timer("fit + crop"):
                    prepared = self.dub.prepare(frame, landmarks)
                yield prepared
        finally:
            tracker.close()
            self.idle.set()

    def frame_tensor(self, motion: np.ndarray):
        """The next output frame (H x W x 3 uint8 tensor), its mouth saying `motion`."""
        import torch

        frame = next(self.prepared)
        if isinstance(frame, np.ndarray):  # no face here: the frame as it is
            return torch.from_numpy(np.array(frame[: self.frame_size[1], : self.frame_size[0]]))
        return self.dub(frame, motion)

    def close(self) -> None:
        """Stop decoding ahead; wait for the tracker to close (native threads left running at
        exit abort the process)."""
        self.prepared.close()
        self.idle.wait(timeout=10)

    def check_faces(self) -> None:
        """A video in which no frame had a face is an error: once it has been seen whole, or at the
        render's end (before the file is published, so none is left)."""
        if self.faces == 0:
            raise NoFaceError(
                f"no face found in any frame of {self.path}",
                hint="give a video in which a face can be seen, or a portrait image",
            )
