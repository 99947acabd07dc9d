"""The render pipeline: audio -> features -> generator -> motion -> renderer -> sink.

`Portrait` is everything found once per image (landmarks, crop, rig, renderer). `render` runs
the stages in order and reports how long each took, so `tm render` and the benchmark share
one code path.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import audio as audio_mod
from .config import Preset
from .driver import PhoneticDriver
from .face.align import Alignment, Compositor, align_face, crop_image, to_uint8
from .face.landmarks import Face, find_face
from .face.motion import FaceRig
from .media import VideoWriter, check_writable, load_image
from .render.meshwarp import MeshWarpRenderer
from .speech import align_phones, recognize_phones


class StageTimer:
    """Wall time per stage, summed over calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[stage] += time.perf_counter() - self.start

        return _Span()


@dataclass
class Portrait:
    image: np.ndarray  # H x W x 3 uint8, the whole picture
    face: Face
    alignment: Alignment
    rig: FaceRig
    renderer: MeshWarpRenderer
    compositor: Compositor | None  # None when writing the crop alone

    @classmethod
    def load(cls, path: str | Path, preset: Preset, face_index: int = 0) -> "Portrait":
        image = load_image(path)
        face = find_face(image, face_index, name=str(path))
        alignment = align_face(face.landmarks, preset.output.size)
        landmarks = alignment.to_crop(face.landmarks)
        crop = crop_image(image, alignment)
        renderer = MeshWarpRenderer(crop, landmarks, preset.warp)
        compositor = None if preset.output.crop else Compositor(image, alignment)
        return cls(image, face, alignment, FaceRig(landmarks), renderer, compositor)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames this portrait renders to."""
        if self.compositor is None:
            return self.alignment.size, self.alignment.size
        return self.compositor.width, self.compositor.height

    def render_frame(self, motion: np.ndarray) -> np.ndarray:
        crop = self.renderer(self.rig.apply(motion))
        return to_uint8(crop) if self.compositor is None else self.compositor(crop)


@dataclass
class RenderResult:
    frames: int
    seconds_of_audio: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    motion: np.ndarray | None = None


def generate_motion(samples: np.ndarray, preset: Preset, seed: int, transcript: str | None,
                    timer: StageTimer) -> np.ndarray:
    with timer("audio features"):
        features = audio_mod.extract_features(samples, preset.output.fps)
    with timer("phones"):
        phones = align_phones(samples, transcript) if transcript else recognize_phones(samples)
    with timer("driver"):
        return PhoneticDriver(preset.driver)(phones, features, seed)


def render(portrait_path: str | Path, audio_path: str | Path, output: str | Path, preset: Preset,
           seed: int = 0, transcript: str | None = None, face_index: int = 0,
           on_frame: Callable[[int, int], None] | None = None) -> RenderResult:
    """Render `audio_path` spoken by the face in `portrait_path` to the mp4 `output`."""
    torch.set_grad_enabled(False)
    # half the cores render, the rest encode: oversubscribed OpenMP threads spin and run 10x slower
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    timer = StageTimer()
    if str(output) != "-":
        check_writable(Path(output))
    with timer("load audio"):
        samples = audio_mod.load_audio(audio_path)
    with timer("landmarks"):
        portrait = Portrait.load(portrait_path, preset, face_index)
    motion = generate_motion(samples, preset, seed, transcript, timer)
    width, height = portrait.frame_size
    out = preset.output
    with VideoWriter(output, width, height, out.fps, audio_path=audio_path, crf=out.crf,
                     preset=out.x264_preset) as writer:
        for i, frame_motion in enumerate(motion):
            with timer("render"):
                frame = portrait.render_frame(frame_motion)
            with timer("encode (pipe)"):
                writer.write(frame)
            if on_frame:
                on_frame(i + 1, len(motion))
    timer.seconds["encode (pipe)"] += writer.close_seconds
    return RenderResult(len(motion), len(samples) / audio_mod.SAMPLE_RATE, dict(timer.seconds), motion)
