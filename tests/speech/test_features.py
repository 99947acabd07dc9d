"""What learned generators hear: phone classes per frame, and silence padding that looks like
the silence inside a real clip."""

import threading

import numpy as np
import pytest

from tmcli.core.audio import extract_features
from tmcli.core.runtime import staged
from tmcli.speech.features import (
    ACOUSTIC_DIM,
    FEATURE_DIM,
    PHONE_CLASSES,
    generator_features,
    phone_classes,
    silence_features,
)
from tmcli.speech.phones import Phone


def test_phone_classes_cover_each_frame_once():
    phones = [Phone("SIL", 0.0, 0.1), Phone("M", 0.1, 0.2), Phone("AA", 0.2, 0.34), Phone("T", 0.34, 0.4)]
    classes = phone_classes(phones, 10, 25.0)
    np.testing.assert_allclose(classes.sum(1), 1.0)
    names = list(PHONE_CLASSES)
    assert classes[3, names.index("bilabial")] == 1.0  # 120-160 ms: inside the M
    assert classes[6, names.index("open")] == 1.0  # 240-280 ms: inside the AA
    assert 0 < classes[8, names.index("other")] < 1  # 320-360 ms: AA then T


def test_padding_looks_like_the_silence_inside_a_clip(speech):
    clip = np.concatenate([speech[: 16000 * 2], np.zeros(16000, dtype=np.float32)])
    phones = [Phone("AH", 0.0, 2.0), Phone("SIL", 2.0, 3.0)]
    features = generator_features(extract_features(clip, 25.0), phones)
    assert features.shape == (75, FEATURE_DIM)
    quiet = features[-10:]  # the last 0.4 s: digital silence
    pad = silence_features(10)
    np.testing.assert_allclose(quiet[:, :ACOUSTIC_DIM], pad[:, :ACOUSTIC_DIM], atol=0.05)
    np.testing.assert_array_equal(quiet[:, ACOUSTIC_DIM:], pad[:, ACOUSTIC_DIM:])
    assert np.abs(features[:40, :80].mean() - pad[0, :80].mean()) > 2  # speech does not


def test_a_stage_starts_at_once_keeps_order_and_passes_errors_on():
    """A file's first utterances are heard while the model loads; a bad file still fails the render."""
    started = threading.Event()

    def items():
        started.set()
        yield from range(5)
        raise ValueError("unreadable audio")

    stream = staged(items(), 2)
    assert started.wait(5)  # before anything was asked for
    assert [next(stream) for _ in range(5)] == list(range(5))
    with pytest.raises(ValueError, match="unreadable"):
        next(stream)
