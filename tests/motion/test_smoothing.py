import numpy as np
import pytest

from tmcli.core.config import load_preset
from tmcli.core.errors import ConfigError
from tmcli.core.filters import OneEuroFilter
from tmcli.face.rig import ARTICULATION, INDEX, MOTION_DIM
from tmcli.motion.smoothing import SLOW_CHANNELS, smooth_slow_channels
from tmcli.stream.pipeline import render

from conftest import PORTRAIT, SPEECH

FPS = 25.0


def noisy_motion(frames: int = 250, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    motion = 0.3 + 0.02 * rng.standard_normal((frames, MOTION_DIM))
    motion[:, INDEX["headYaw"]] = 0.1 * np.sin(np.arange(frames) / FPS * 2 * np.pi * 0.2)  # a slow sway
    motion[:, INDEX["headYaw"]] += 0.01 * rng.standard_normal(frames)
    return motion.astype(np.float32)


def smoothed(motion: np.ndarray, sizes: list[int], cutoff: float = 1.0, beta: float = 1.0) -> np.ndarray:
    chunks = np.split(motion, np.cumsum(sizes)[:-1])
    return np.concatenate(list(smooth_slow_channels(chunks, FPS, cutoff, beta)))


def test_slow_channels_are_pose_gaze_brows_and_eyes_but_not_mouth_or_eyelids():
    names = {name for name, i in INDEX.items() if i in set(SLOW_CHANNELS)}
    assert {"headYaw", "headScale", "gazeX", "browInnerUp", "eyeSquintLeft"} <= names
    assert not names & set(ARTICULATION)
    assert "eyeBlinkLeft" not in names and "jawOpen" not in names


def test_chunked_smoothing_equals_smoothing_the_whole_sequence():
    motion = noisy_motion()
    whole = smoothed(motion, [len(motion)])
    np.testing.assert_allclose(smoothed(motion, [5] * 50), whole, atol=1e-6)
    np.testing.assert_allclose(smoothed(motion, [1, 7, 3, 100, 139]), whole, atol=1e-6)


def test_it_is_causal():
    motion = noisy_motion()
    later = motion.copy()
    later[100:] += 1.0
    np.testing.assert_array_equal(smoothed(motion, [250])[:100], smoothed(later, [250])[:100])


def test_mouth_and_eyelids_pass_untouched_and_the_slow_channels_lose_their_noise():
    motion = noisy_motion()
    out = smoothed(motion, [5] * 50)
    fast = np.setdiff1d(np.arange(MOTION_DIM), SLOW_CHANNELS)
    np.testing.assert_array_equal(out[:, fast], motion[:, fast])
    brow = INDEX["browInnerUp"]  # constant + noise: the frame-to-frame change shrinks several fold
    assert np.abs(np.diff(out[50:, brow])).mean() < 0.25 * np.abs(np.diff(motion[50:, brow])).mean()
    yaw = INDEX["headYaw"]  # the 0.2 Hz sway itself survives (within 10% of its amplitude)
    assert 0.09 < np.abs(out[50:, yaw]).max() < 0.115


def test_speed_raises_the_cutoff_so_a_fast_move_lags_less():
    step = np.zeros((60, 1))
    step[20:] = 1.0  # a sudden turn of the head
    slow = OneEuroFilter(FPS, 1.0, beta=0.0)(step)
    adaptive = OneEuroFilter(FPS, 1.0, beta=1.0)(step)
    assert adaptive[25, 0] > slow[25, 0] + 0.1
    assert adaptive[-1, 0] > 0.97


def test_cutoff_zero_is_off_and_negative_settings_are_refused():
    motion = noisy_motion(20)
    np.testing.assert_array_equal(smoothed(motion, [20], cutoff=0.0), motion)
    with pytest.raises(ConfigError):
        load_preset("default").with_overrides(generator={"smooth_beta": -1.0})


@pytest.mark.slow
def test_render_smooths_a_learned_generators_head_and_leaves_its_mouth(tmp_path):
    """The wiring: the student's motion out of render() has its head tremor filtered, mouth as sampled."""

    def motion(cutoff: float) -> np.ndarray:
        blocks = []
        preset = load_preset("default").with_overrides(generator={"smooth_cutoff": cutoff})
        render(
            PORTRAIT,
            SPEECH,
            None,
            preset,
            generator="student",
            on_motion=blocks.append,
            motion_out=tmp_path / f"{cutoff}.json",
        )
        return np.concatenate(blocks)

    raw, smooth = motion(0.0), motion(1.0)
    mouth = [INDEX[name] for name in ARTICULATION]
    np.testing.assert_array_equal(smooth[:, mouth], raw[:, mouth])
    pose = [INDEX[name] for name in ("headYaw", "headPitch", "headRoll")]
    assert (
        np.abs(np.diff(smooth[:, pose], 2, axis=0)).mean()
        < 0.5 * np.abs(np.diff(raw[:, pose], 2, axis=0)).mean()
    )


def test_a_channel_with_a_higher_cutoff_lags_less():
    step = np.zeros((40, 2))
    step[10:] = 1.0  # both channels jump at once; the second is filtered at 12 Hz, the first at 3
    out = OneEuroFilter(FPS, np.array([3.0, 12.0]), beta=0.0)(step)
    assert out[10, 1] > 0.7 > out[10, 0]  # the lips keep up within the frame; the head does not
    np.testing.assert_array_equal(OneEuroFilter(FPS, np.array([3.0, 3.0]), 0.0)(step)[:, 1], out[:, 0])
