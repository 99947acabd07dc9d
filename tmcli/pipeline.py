"""The render pipeline: audio -> features -> generator -> motion -> renderer -> sink.

`render` runs the stages in order and reports how long each took, so `tm render` and the
benchmark share one code path. Finding phones (pocketsphinx) needs neither torch nor mediapipe,
so it runs in a worker process while this one loads them, prepares the portrait and computes
the audio features: on two cores that hides most of the start-up.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import audio as audio_mod
from .config import Preset
from .controls import Controls, parse_emotion
from .driver import PhoneticDriver
from .errors import ConfigError
from .features import generator_features
from .media import VideoWriter, check_writable
from .speech import speech_phones

GENERATORS = ("phonetic", "teacher")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def embedded_checkpoint(generator: str) -> Path:
    """The generator shipped inside the package (see tmcli/weights/*/README.md)."""
    path = WEIGHTS_DIR / generator
    if not (path / "config.json").is_file():
        raise ConfigError(f"no embedded {generator} checkpoint in this install",
                          hint="pass --checkpoint DIR (train one with `tm train`)")
    return path


class StageTimer:
    """Wall time per stage, summed over calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


@dataclass
class RenderResult:
    frames: int
    seconds_of_audio: float
    wall_seconds: float
    render_size: int  # side of the crop the renderer worked at
    stage_seconds: dict[str, float] = field(default_factory=dict)
    motion: np.ndarray | None = None


def controls_from(preset: Preset) -> Controls:
    g = preset.generator
    return Controls((g.gaze_x, g.gaze_y), parse_emotion(g.emotion), g.pose_intensity, g.blink_rate)


def render(portrait_path: str | Path, audio_path: str | Path, output: str | Path, preset: Preset,
           seed: int = 0, transcript: str | None = None, face_index: int = 0,
           on_frame: Callable[[int, int], None] | None = None, generator: str = "phonetic",
           checkpoint: str | Path | None = None) -> RenderResult:
    """Render `audio_path` spoken by the face in `portrait_path` to the mp4 `output`.

    generator: "phonetic" (phones -> visemes; needs no weights) or "teacher" (the MotionDiT
    in `checkpoint`, by default the one shipped in tmcli/weights/, sampled over sliding windows).
    """
    start = time.perf_counter()
    timer = StageTimer()
    if str(output) != "-":
        check_writable(Path(output))
    if generator not in GENERATORS:
        raise ConfigError(f"unknown generator {generator!r}", hint=f"use one of {', '.join(GENERATORS)}")
    if generator != "phonetic" and checkpoint is None:
        checkpoint = embedded_checkpoint(generator)
    controls_from(preset)  # a bad emotion fails here, before any work
    with timer("load audio"):
        samples = audio_mod.load_audio(audio_path)
    # phones: the transcript force-aligned, or recognised words + closures; the learned
    # generators hear them as one of their inputs
    find_phones = functools.partial(speech_phones, transcript=transcript)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch, no threads forked
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        phones_job = pool.submit(find_phones, samples)
        if generator != "phonetic":
            with timer("load generator"):  # while the worker finds phones; a bad checkpoint fails early
                teacher = load_teacher(checkpoint, preset)
        with timer("landmarks"):
            import torch

            from .portrait import Portrait

            torch.set_grad_enabled(False)
            # half the cores render, the rest encode: oversubscribed OpenMP threads spin and run 10x slower
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
            portrait = Portrait.load(portrait_path, preset, face_index)
        with timer("audio features"):
            features = audio_mod.extract_features(samples, preset.output.fps)
        with timer("waiting for phones (worker)"):
            try:
                phones = phones_job.result()
            except BrokenProcessPool:
                # the worker could not start: spawn re-imports __main__, which fails for code read
                # from stdin and for scripts without a main guard. Do the same work here instead.
                phones = find_phones(samples)
        with timer("generator"):
            if generator == "phonetic":
                motion = PhoneticDriver(preset.driver)(phones, features, seed, controls_from(preset))
            else:
                motion = teacher(generator_features(features, phones), controls_from(preset), seed)
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
    return RenderResult(len(motion), len(samples) / audio_mod.SAMPLE_RATE, time.perf_counter() - start,
                        portrait.alignment.size, dict(timer.seconds), motion)



def load_teacher(checkpoint: str | Path, preset: Preset):
    """The MotionDiT teacher in `checkpoint`, checked against the frame rate asked for."""
    from .generator import TeacherGenerator, load_motion_dit

    model = load_motion_dit(checkpoint)
    if abs(model.config.fps - preset.output.fps) > 1e-6:
        raise ConfigError(f"the checkpoint generates {model.config.fps:g} fps motion; asked for {preset.output.fps:g} fps",
                          hint=f"render with --fps {model.config.fps:g}")
    return TeacherGenerator(model, preset.generator)
