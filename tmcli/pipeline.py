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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio as audio_mod
from .config import Preset
from .controls import Controls, parse_emotion
from .driver import PhoneticDriver
from .errors import ConfigError
from .features import generator_features, prefetch
from .media import VideoWriter, check_writable
from .speech import speech_phones, warm_up

GENERATORS = ("phonetic", "teacher", "student")
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


def controls_from(preset: Preset) -> Controls:
    g = preset.generator
    return Controls((g.gaze_x, g.gaze_y), parse_emotion(g.emotion), g.pose_intensity, g.blink_rate)


def render(portrait_path: str | Path, audio_path: str | Path, output: str | Path, preset: Preset,
           seed: int = 0, transcript: str | None = None, face_index: int = 0,
           on_frame: Callable[[int, int | None], None] | None = None, generator: str = "student",
           checkpoint: str | Path | None = None, raw_rate: int | None = None,
           on_motion: Callable[[np.ndarray], None] | None = None) -> RenderResult:
    """Render `audio_path` ("-": standard input) spoken by the face in `portrait_path` to the
    mp4 `output` ("-": standard output).

    generator: "student" streams: audio is read, cut into utterances, turned into motion chunk
    by chunk and rendered as it comes (memory does not grow with the length). "teacher" (the
    bidirectional MotionDiT over sliding windows) and "phonetic" (phones -> visemes, no
    weights) read the whole audio first. Learned generators load `checkpoint`, by default the
    one shipped in tmcli/weights/. raw_rate: the audio is headerless 16-bit PCM at this rate.
    on_motion: called with each block of motion (frames, MOTION_DIM) before it is rendered.
    """
    start = time.perf_counter()
    timer = StageTimer()
    if str(output) != "-":
        check_writable(Path(output))
    if generator not in GENERATORS:
        raise ConfigError(f"unknown generator {generator!r}", hint=f"use one of {', '.join(GENERATORS)}")
    if generator != "phonetic" and checkpoint is None:
        checkpoint = embedded_checkpoint(generator)
    controls = controls_from(preset)  # a bad emotion fails here, before any work
    from_stdin = str(audio_path) == "-"
    streaming = generator == "student"
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch, no threads forked
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        if streaming:
            pool.submit(warm_up)  # the worker loads pocketsphinx while this process loads the rest
            if not from_stdin:  # a file's first utterances are cut and heard while the model loads
                features = prefetch(_student_features(audio_mod.read_audio_blocks(audio_path, raw_rate),
                                                      preset, transcript, audio_path, pool))
        else:
            with timer("load audio"):
                samples = np.concatenate(list(audio_mod.read_audio_blocks(audio_path, raw_rate, 60.0)))
            # phones: the transcript force-aligned, or recognised words + closures
            phones_job = pool.submit(speech_phones, samples, transcript)
        if generator != "phonetic":
            with timer("load generator"):  # while the worker finds phones; a bad checkpoint fails early
                model = load_generator(checkpoint, preset, generator)
        with timer("landmarks"):
            import torch

            from .portrait import Portrait

            torch.set_grad_enabled(False)
            # half the cores render, the rest encode: oversubscribed OpenMP threads spin and run 10x slower
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
            portrait = Portrait.load(portrait_path, preset, face_index)
        width, height = portrait.frame_size
        out = preset.output
        with VideoWriter(output, width, height, out.fps, audio_path=None if from_stdin else audio_path,
                         audio_rate=audio_mod.SAMPLE_RATE if from_stdin else None, crf=out.crf,
                         preset=out.x264_preset) as writer:
            if streaming:
                if from_stdin:
                    blocks = writer.tee_audio(audio_mod.read_audio_blocks(audio_path, raw_rate))
                    features = _student_features(blocks, preset, transcript, audio_path, pool)
                motion_chunks = model.stream(features, controls, seed)
                total_frames = None
                seconds_of_audio = 0.0
            else:
                if from_stdin:
                    writer.write_audio(samples)
                with timer("audio features"):
                    features = audio_mod.extract_features(samples, out.fps)
                with timer("waiting for phones (worker)"):
                    phones = _result(phones_job, functools.partial(speech_phones, samples, transcript))
                with timer("generator"):
                    if generator == "phonetic":
                        motion = PhoneticDriver(preset.driver)(phones, features, seed, controls)
                    else:
                        motion = model(generator_features(features, phones), controls, seed)
                motion_chunks = iter([motion])
                total_frames, seconds_of_audio = len(motion), len(samples) / audio_mod.SAMPLE_RATE
            frames = 0
            while True:
                with timer("audio, phones, generator (streamed)" if streaming else "generator"):
                    chunk = next(motion_chunks, None)
                if chunk is None:
                    break
                if on_motion:
                    on_motion(chunk)
                for frame_motion in chunk:
                    with timer("render"):
                        frame = portrait.render_frame(frame_motion)
                    with timer("encode (pipe)"):
                        writer.write(frame)
                    frames += 1
                    if on_frame:
                        on_frame(frames, total_frames)
        timer.seconds["encode (pipe)"] += writer.close_seconds
    if streaming:
        seconds_of_audio = frames / out.fps
    return RenderResult(frames, seconds_of_audio, time.perf_counter() - start, portrait.alignment.size,
                        dict(timer.seconds))


def _result(job, fallback):
    """A worker's result; if the worker could not start (spawn re-imports __main__, which fails
    for code read from stdin and scripts without a main guard), do the same work here."""
    try:
        return job.result()
    except BrokenProcessPool:
        return fallback()


def _student_features(blocks, preset: Preset, transcript: str | None, audio_path, pool) -> Iterator[np.ndarray]:
    """The streaming student's input: generator features, an utterance at a time, as audio blocks arrive."""
    from .features import FeatureStream, phones_within, recognised_phones

    if transcript:  # the alignment needs the whole text and audio: align first, then stream
        samples = audio_mod.load_audio(audio_path)
        phones_of = functools.partial(phones_within, speech_phones(samples, transcript))
        pool = None
    else:
        phones_of = recognised_phones
    return FeatureStream(preset.output.fps, phones_of, pool=pool)(blocks)


def load_generator(checkpoint: str | Path, preset: Preset, kind: str):
    """The teacher or student in `checkpoint`, checked against the kind and frame rate asked for."""
    from .generator import StreamingGenerator, TeacherGenerator, load_motion_dit
    from .nn.causal_dit import CausalMotionDiT

    model = load_motion_dit(checkpoint)
    if isinstance(model, CausalMotionDiT) != (kind == "student"):
        made = "a causal student (tm distill)" if isinstance(model, CausalMotionDiT) else "a teacher (tm train)"
        raise ConfigError(f"{checkpoint} holds {made}, not a {kind}",
                          hint=f"render it with --generator {'student' if kind == 'teacher' else 'teacher'}")
    if abs(model.config.fps - preset.output.fps) > 1e-6:
        raise ConfigError(f"the checkpoint generates {model.config.fps:g} fps motion; asked for {preset.output.fps:g} fps",
                          hint=f"render with --fps {model.config.fps:g}")
    return StreamingGenerator(model) if kind == "student" else TeacherGenerator(model, preset.generator)
