import json

import numpy as np
import pytest
import soundfile as sf

from tmcli.core.config import load_preset
from tmcli.core.errors import InputError
from tmcli.core.media import VideoWriter, read_video_frames
from tmcli.face.fitting import fit_motion
from tmcli.face.rig import INDEX, MOTION_DIM
from tmcli.motion.controls import Controls
from tmcli.train.extract import extract_clip, extract_videos, measure_controls
from tmcli.train.shards import CLIPS, read_clips

from conftest import PORTRAIT, SPEECH

MAIN_SHAPES = [
    "jawOpen",
    "mouthPucker",
    "mouthSmileLeft",
    "mouthSmileRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "browInnerUp",
    "browOuterUpLeft",
]


def _random_motion(rng: np.random.Generator) -> np.ndarray:
    m = np.zeros(MOTION_DIM)
    for name in ("headYaw", "headPitch", "headRoll"):
        m[INDEX[name]] = rng.uniform(-0.15, 0.15)
    m[[INDEX["headX"], INDEX["headY"]]] = rng.uniform(-0.1, 0.1, 2)
    m[INDEX["headScale"]] = rng.uniform(-0.05, 0.05)
    m[INDEX["jawOpen"]], m[INDEX["mouthClose"]] = rng.uniform(0, 0.6), rng.uniform(0, 1)
    m[INDEX["mouthPucker"]] = rng.uniform(0, 0.5)
    m[INDEX["mouthSmileLeft"]] = m[INDEX["mouthSmileRight"]] = rng.uniform(-0.4, 0.8)
    m[INDEX["eyeBlinkLeft"]] = m[INDEX["eyeBlinkRight"]] = rng.uniform(0, 1)
    m[INDEX["browInnerUp"]], m[INDEX["browOuterUpLeft"]] = rng.uniform(0, 0.6, 2)
    m[[INDEX["gazeX"], INDEX["gazeY"]]] = rng.uniform(-0.6, 0.6, 2)
    return m


def test_fit_recovers_the_motion_that_made_the_landmarks(portrait):
    rig, rng = portrait.rig, np.random.default_rng(0)
    for _ in range(40):
        truth = _random_motion(rng)
        landmarks = rig.apply(truth)
        fit = fit_motion(rig, landmarks)
        assert fit.shape == (MOTION_DIM,) and fit.dtype == np.float32
        err = np.abs(fit - truth)
        assert err[:3].max() < 0.01 and err[3:6].max() < 0.01  # rotation (rad), translation (u), log scale
        assert max(err[INDEX[n]] for n in MAIN_SHAPES) < 0.05
        assert err[INDEX["gazeX"]] < 0.02 and err[INDEX["gazeY"]] < 0.02
        if truth[INDEX["jawOpen"]] > 0.2:  # a closed jaw leaves mouthClose nothing to close
            assert err[INDEX["mouthClose"]] < 0.1
        assert np.abs(rig.apply(fit)[:, :2] - landmarks[:, :2]).max() < 0.02 * rig.unit


def test_measure_controls_reads_back_what_made_the_motion():
    fps, n = 25.0, 1500  # one minute
    wanted = Controls(gaze=(0.2, -0.1), emotion=(0.6, 0.0, 0.3), blink_rate=12.0)
    motion = np.tile(wanted.expression_offset(), (n, 1))
    motion[:, INDEX["gazeX"]], motion[:, INDEX["gazeY"]] = 0.2, -0.1
    t = np.arange(n) / fps
    motion[:, INDEX["headYaw"]] = 0.03 * np.sqrt(2) * np.sin(2 * np.pi * 0.3 * t)  # std 0.03 rad
    for start in range(60, n, 125):  # 12 blinks, 0.2 s each
        motion[start : start + 5, [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]] = 1.0
    valid = np.ones(n, bool)
    valid[100:110] = False  # frames without a face do not count
    got = Controls.from_vector(measure_controls(motion.astype(np.float32), valid, fps))
    assert got.gaze == pytest.approx((0.2, -0.1), abs=1e-6)
    assert got.emotion == pytest.approx((0.6, 0.0, 0.3), abs=0.02)
    assert got.pose_intensity == pytest.approx(1.0, abs=0.02)
    assert got.blink_rate == pytest.approx(12.0 * 1500 / 1490, abs=0.01)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A 2.5 s render with enough head motion to see pitch (std > 0.02 rad), and its motion."""
    from tmcli.stream.pipeline import render

    tmp = tmp_path_factory.mktemp("extract")
    audio, rate = sf.read(SPEECH, dtype="float32")
    wav = tmp / "speech.wav"
    sf.write(wav, audio[rate // 2 : 3 * rate], rate)
    preset = load_preset("default").with_overrides(
        output={"crop": True, "size": 256}, controls={"pose_intensity": 1.0}
    )
    motion = []
    result = render(
        PORTRAIT, wav, tmp / "talk.mp4", preset, seed=2, generator="phonetic", on_motion=motion.append
    )
    return tmp / "talk.mp4", wav, result, np.concatenate(motion)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.slow
def test_extract_clip_follows_a_rendered_video(rendered):
    video, _, result, truth = rendered
    clip = extract_clip(video)
    assert len(clip.motion) == result.frames and clip.valid.all()
    assert clip.features.shape[0] == result.frames and len(clip.audio) == pytest.approx(2.5 * 16000, abs=400)
    assert clip.info["frames_with_face"] == result.frames and clip.info["video"] == str(video)
    assert truth[:, INDEX["headPitch"]].std() > 0.02
    # yaw is left to the per-frame fit tests above: over these 2.5 s the driver holds one turn
    for name, least in (("jawOpen", 0.8), ("mouthClose", 0.8), ("headPitch", 0.5)):
        assert _corr(clip.motion[:, INDEX[name]], truth[:, INDEX[name]]) > least, name


@pytest.mark.slow
def test_resampled_video_with_faceless_frames(rendered, tmp_path):
    """A 50 fps video whose last frames show no face: resampled to 25 fps, those frames invalid."""
    video, wav, result, truth = rendered
    frames = read_video_frames(video)
    next(frames)
    frames = list(frames)
    blank = np.full_like(frames[0], 90)
    out = tmp_path / "fifty.mp4"
    with VideoWriter(out, frames[0].shape[1], frames[0].shape[0], 50.0, audio_path=wav) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame if i < len(frames) - 10 else blank)
            writer.write(frame if i < len(frames) - 10 else blank)
    clip = extract_clip(out)
    assert len(clip.motion) == result.frames
    assert clip.valid[:-10].all() and not clip.valid[-10:].any()
    assert not clip.motion[~clip.valid].any()
    jaw = INDEX["jawOpen"]
    assert _corr(clip.motion[:-10, jaw], truth[:-10, jaw]) > 0.8


def _no_face_video(path, audio_path):
    with VideoWriter(path, 64, 64, 25.0, audio_path=audio_path) as writer:
        for _ in range(10):
            writer.write(np.full((64, 64, 3), 120, np.uint8))


@pytest.mark.slow
def test_extract_videos_writes_a_resumable_data_set(rendered, tmp_path):
    video, wav, _, _ = rendered
    seen = []
    out = tmp_path / "data"
    assert extract_videos([video], out, on_clip=lambda path, clip: seen.append((path, clip))) == 1
    ((path, clip),) = seen
    assert path == video
    (back,) = list(read_clips(out))
    np.testing.assert_array_equal(back.motion, clip.motion)
    np.testing.assert_array_equal(back.valid, clip.valid)
    np.testing.assert_array_equal(back.controls, clip.controls)
    np.testing.assert_array_equal(back.neutral, np.zeros(MOTION_DIM))
    np.testing.assert_allclose(back.audio, clip.audio, atol=1 / 32767)
    np.testing.assert_allclose(back.features, clip.features, rtol=2e-3, atol=2e-3)
    line = json.loads((out / CLIPS).read_text())
    assert line["video"] == str(video) and line["size"] == video.stat().st_size

    seen.clear()
    assert extract_videos([video], out, on_clip=lambda path, clip: seen.append((path, clip))) == 0
    assert seen == [(video, None)] and len(list(read_clips(out))) == 1

    faceless, silent = tmp_path / "wall.mp4", tmp_path / "silent.mp4"
    _no_face_video(faceless, wav)
    _no_face_video(silent, None)
    with pytest.raises(InputError, match="no face found in any frame of .*wall.mp4"):
        extract_videos([faceless], tmp_path / "other")
    with pytest.raises(InputError, match="silent.mp4.*no audio track"):
        extract_videos([silent], tmp_path / "other")
    # clips extracted before a failure are kept
    with pytest.raises(InputError):
        extract_videos([video, faceless], tmp_path / "partial")
    assert len(list(read_clips(tmp_path / "partial"))) == 1
