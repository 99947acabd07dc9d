import numpy as np
import pytest

from tmcli.core.audio import extract_features
from tmcli.core.config import DriverSettings
from tmcli.face.rig import INDEX, MOTION_DIM
from tmcli.motion.controls import Controls
from tmcli.motion.driver import PhoneticDriver
from tmcli.speech.phones import Phone

FPS = 25


def _features(seconds: float, loud=(0.5, 2.5)):
    t = np.arange(int(seconds * 16000)) / 16000
    voice = 0.3 * np.sin(2 * np.pi * 150 * t) * ((t > loud[0]) & (t < loud[1]))
    return extract_features(voice.astype(np.float32), FPS)


PHONES = [
    Phone("SIL", 0, 0.5),
    Phone("AA", 0.5, 0.8),
    Phone("M", 0.8, 0.9),
    Phone("AA", 0.9, 1.3),
    Phone("P", 1.3, 1.38),
    Phone("IY", 1.38, 2.5),
    Phone("SIL", 2.5, 4.0),
]


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
    assert jaw[int(0.6 * FPS) : int(0.75 * FPS)].min() > 0.3  # AA
    assert jaw[int(3.0 * FPS) :].max() < 0.02 and close[int(3.0 * FPS) :].min() > 0.95


def test_lips_lead_the_sound():
    """The closure for /m/ (0.8 s) starts earlier with a longer lead."""

    def closure_onset(lead):
        close = PhoneticDriver(DriverSettings(lead=lead))(PHONES, _features(4.0), seed=3)[
            :, INDEX["mouthClose"]
        ]
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


def _two_phrases(seconds: float = 6.0):
    """Speech 0.5-2.5 s and 3.5-5.5 s: two phrases with a pause between them."""
    t = np.arange(int(seconds * 16000)) / 16000
    on = ((t > 0.5) & (t < 2.5)) | ((t > 3.5) & (t < 5.5))
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)  # 4 syllables a second
    return extract_features((0.3 * syllables * np.sin(2 * np.pi * 150 * t) * on).astype(np.float32), FPS)


def _two_pitches(first_hz: float, second_hz: float, seconds: float = 6.0):
    """_two_phrases, the first said at `first_hz`, the second at `second_hz`."""
    t = np.arange(int(seconds * 16000)) / 16000
    hz = np.where(t < 3.0, first_hz, second_hz)
    on = ((t > 0.5) & (t < 2.5)) | ((t > 3.5) & (t < 5.5))
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    voice = 0.3 * syllables * np.sin(2 * np.pi * np.cumsum(hz) / 16000) * on
    return extract_features(voice.astype(np.float32), FPS)


def test_the_head_turns_with_each_phrase_pitch():
    """A phrase said higher than the speaker's median turns the head to +yaw, a lower one to -yaw,
    whatever the seed; one at the median pitch leaves it frontal."""
    settings = DriverSettings(head_sway=0.0)
    phones = [Phone("SIL", 0, 0.5), Phone("AA", 0.5, 2.5), Phone("SIL", 2.5, 3.5), Phone("AA", 3.5, 5.5)]
    for seed in range(3):
        for first_hz, second_hz, side in ((180.0, 130.0, 1.0), (130.0, 180.0, -1.0)):
            yaw = PhoneticDriver(settings)(phones, _two_pitches(first_hz, second_hz), seed=seed)[
                :, INDEX["headYaw"]
            ]
            first, second = yaw[int(2.4 * FPS)], yaw[int(5.0 * FPS)]
            assert side * first >= 0.8 * settings.head_turn and -side * second >= 0.8 * settings.head_turn
            assert abs(yaw[int(0.4 * FPS)]) < 1e-6  # before the first phrase the head has not turned
    level = PhoneticDriver(settings)(phones, _two_pitches(150.0, 150.0), seed=0)[:, INDEX["headYaw"]]
    assert np.abs(level).max() < 0.2 * settings.head_turn


def test_head_motion_follows_the_audio_causally():
    """Without the idle sway, the head at time t depends only on the audio up to t + 0.2 s (the
    streaming student's lookahead), so a causal generator can learn it."""
    settings = DriverSettings(head_sway=0.0)
    a, b = _two_phrases(), _two_phrases()
    cut = int(3.0 * FPS)
    b.envelope[cut:] = 0.0
    b.voiced[cut:] = False
    phones = [Phone("SIL", 0, 0.5), Phone("AA", 0.5, 2.5), Phone("SIL", 2.5, 6.0)]
    head_a = PhoneticDriver(settings)(phones, a, seed=2)[:, :3]
    head_b = PhoneticDriver(settings)(phones, b, seed=2)[:, :3]
    before = cut - int(0.2 * FPS)
    assert np.allclose(head_a[:before], head_b[:before], atol=1e-9)
    assert not np.allclose(head_a[cut:], head_b[cut:])


def test_blinks_stay_shut_for_a_few_frames():
    blink = PhoneticDriver()([Phone("SIL", 0, 30)], _features(30.0, loud=(0, 0)), seed=5)[
        :, INDEX["eyeBlinkLeft"]
    ]
    shut = blink > 0.95
    starts = np.flatnonzero(shut[1:] & ~shut[:-1]) + 1
    assert len(starts) >= 4
    for s in starts:  # each blink held shut for 2 frames or more (80 ms at 25 fps)
        assert shut[s : s + 2].all()


def test_a_blink_falls_where_speech_resumes():
    """Speech resuming after a pause brings a blink, unless one came in the last half interval
    (15 a minute: 2 s)."""
    phones = [Phone("SIL", 0, 0.5), Phone("AA", 0.5, 2.5), Phone("SIL", 2.5, 3.5), Phone("AA", 3.5, 5.5)]
    resumed = 0
    for seed in range(12):
        blink = PhoneticDriver()(phones, _two_phrases(), seed=seed)[:, INDEX["eyeBlinkLeft"]]
        onsets = np.flatnonzero((blink[1:] > 0) & (blink[:-1] == 0)) + 1
        second = int(3.5 * FPS)
        if not any(second - 2 * FPS < o < second - 1 for o in onsets):
            assert any(abs(o - second) <= 2 for o in onsets)
            resumed += 1
    assert resumed >= 3  # the rule was put to the test
