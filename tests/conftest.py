"""Shared fixtures: the shipped samples, the astronaut's face found once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PORTRAIT = SAMPLES / "portrait.png"
SPEECH = SAMPLES / "speech.wav"
TRANSCRIPT = "And you always want to see it in the superlative degree."


def run_tm(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`tm ARGS...` through the console entry point (tm's errors become exit codes there):
    (exit code, stdout, stderr)."""
    from tmcli.cli.app import main

    monkeypatch.setattr(sys, "argv", ["tm", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture(scope="session")
def portrait_image() -> np.ndarray:
    from tmcli.core.images import load_image

    return load_image(PORTRAIT)


@pytest.fixture(scope="session")
def portrait(portrait_image):
    """The astronaut prepared for rendering with the default preset."""
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait

    return Portrait.load(PORTRAIT, load_preset())


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    from tmcli.core.audio import load_audio

    return load_audio(SPEECH)


def toy_clip(rng: np.random.Generator, frames: int):
    """A clip whose motion is a known function of its audio features: jawOpen follows the
    first mel band, so a model that learns anything must learn that."""
    from tmcli.face.rig import INDEX, neutral
    from tmcli.motion.controls import Controls
    from tmcli.speech.features import FEATURE_DIM
    from tmcli.train.shards import Clip

    loud = (np.sin(np.arange(frames) / rng.uniform(2, 5) + rng.uniform(0, 6)) > 0).astype(np.float32)
    features = rng.normal(0, 0.3, (frames, FEATURE_DIM)).astype(np.float32)
    features[:, 0] += 2 * loud
    motion = neutral(frames)
    motion[:, INDEX["jawOpen"]] = 0.6 * loud
    motion[:, INDEX["mouthClose"]] = 1 - loud
    controls = Controls(gaze=(float(rng.uniform(-0.5, 0.5)), 0.0))
    motion[:, INDEX["gazeX"]] = controls.gaze[0]
    audio = rng.normal(0, 0.05, int(frames / 25 * 16000)).astype(np.float32)
    return Clip(
        audio=audio,
        features=features,
        motion=motion,
        valid=np.ones(frames, bool),
        controls=controls.vector(),
        neutral=neutral(1)[0],
        info={"toy": True},
    )


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """A small data set of toy clips in the on-disk format, two shards."""
    from tmcli.train.shards import ShardWriter

    root = tmp_path_factory.mktemp("toy_data")
    rng = np.random.default_rng(0)
    with ShardWriter(root, fps=25.0, source="toy", shard_mb=0.3) as writer:
        for _ in range(12):
            writer.add(toy_clip(rng, int(rng.integers(60, 120))))
    return root
