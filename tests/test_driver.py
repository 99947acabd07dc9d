import numpy as np
import pytest

from tmcli.audio import extract_features
from tmcli.config import DriverSettings
from tmcli.controls import Controls
from tmcli.driver import PhoneticDriver
from tmcli.face.motion import INDEX, MOTION_DIM
from tmcli.speech import Phone

FPS = 25


def _features(seconds: float, loud=(0.5, 2.5)):
    t = np.arange(int(seconds * 16000)) / 16000
    voice = 0.3 * np.sin(2 * np.pi * 150 * t) * ((t > loud[0]) & (t < loud[1]))
    return extract_features(voice.astype(np.float32), FPS)


PHONES = [Phone("SIL", 0, 0.5), Phone("AA", 0.5, 0.8), Phone("M", 0.8, 0.9), Phone("AA", 0.9, 1.3),
          Phone("P", 1.3, 1.38), Phone("IY", 1.38, 2.5), Phone("SIL", 2.5, 4.0)]


@pytest.fixture(scope="module")
def motion():
    return PhoneticDriver()(PHONES, _features(4.0), seed=3)


def test_one_row_per_frame(motion):
    assert motion.shape == (100, MOTION_DIM) and np.isfinite(motion).all()


def test_bilabials_close_the_lips(motion):
    close, jaw = motion[:, INDEX["mouthClose"]], motion[:, INDEX["jawOpen"]]
    for start, end in ((0.8, 0.9), (1.3, 1.38)):
        frames = slice(int(start * FPS), int(np.ceil(end * FPS)))
        assert close[frames].max() == 1.0 and jaw[frames].min() <= 0.05


def test_vowels_open_and_silence_rests(motion):
    jaw, close = motion[:, INDEX["jawOpen"]], motion[:, INDEX["mouthClose"]]
    assert jaw[int(0.6 * FPS): int(0.75 * FPS)].min() > 0.3  # AA
    assert jaw[int(3.0 * FPS):].max() < 0.02 and close[int(3.0 * FPS):].min() > 0.95


def test_lips_lead_the_sound():
    """The closure for /m/ (0.8 s) starts earlier with a longer lead."""
    def closure_onset(lead):
        close = PhoneticDriver(DriverSettings(lead=lead))(PHONES, _features(4.0), seed=3)[:, INDEX["mouthClose"]]
        after = int(0.6 * FPS)
        return after + int(np.argmax(close[after:] > 0.9))

    assert closure_onset(0.08) < closure_onset(0.0)


def test_blinks_every_two_to_six_seconds():
    feats = _features(60.0, loud=(0, 0))
    blink = PhoneticDriver()([Phone("SIL", 0, 60)], feats, seed=1)[:, INDEX["eyeBlinkLeft"]]
    starts = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5)) / FPS
    gaps = np.diff(starts)
    assert 60 / 6 - 1 <= len(starts) <= 60 / 2 + 1
    assert gaps.min() >= 2.0 - 0.1 and gaps.max() <= 6.0 + 0.1


def test_seed_decides_idle_motion(motion):
    again = PhoneticDriver()(PHONES, _features(4.0), seed=3)
    other = PhoneticDriver()(PHONES, _features(4.0), seed=4)
    assert np.array_equal(motion, again)
    assert not np.allclose(motion[:, INDEX["headYaw"]], other[:, INDEX["headYaw"]])
    assert np.array_equal(motion[:, INDEX["jawOpen"]], other[:, INDEX["jawOpen"]])  # lips: audio only


def test_still_head():
    still = PhoneticDriver()(PHONES, _features(4.0), seed=3, controls=Controls(pose_intensity=0.0))
    assert np.abs(still[:, :6]).max() == 0.0
