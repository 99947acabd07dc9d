"""Shared fixtures: the shipped samples, the astronaut's face found once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PORTRAIT = SAMPLES / "portrait.png"
SPEECH = SAMPLES / "speech.wav"
TRANSCRIPT = "And you always want to see it in the superlative degree."


@pytest.fixture(scope="session")
def portrait_image() -> np.ndarray:
    from tmcli.media import load_image

    return load_image(PORTRAIT)


@pytest.fixture(scope="session")
def portrait(portrait_image):
    """The astronaut prepared for rendering with the default preset."""
    from tmcli.config import load_preset
    from tmcli.portrait import Portrait

    return Portrait.load(PORTRAIT, load_preset())


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    from tmcli.audio import load_audio

    return load_audio(SPEECH)
