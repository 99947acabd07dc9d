"""tm eval --reference: renders of known motion read back and held against each other."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tmcli.tools.face_series import INNER_LIPS, face_series, interior_counts, read_face_series
from tmcli.tools.reference import MAX_LAG, compare

from conftest import PORTRAIT, SPEECH, run_tm

FRAMES, FPS = 75, 25.0  # 3 s


def motion(shift: int = 0, jaw_scale: float = 1.0, blink: bool = False, yaw: float = 0.08) -> np.ndarray:
    """Speech-like jaw, a slow head sway; `shift` frames later, the jaw scaled, one full blink."""
    from tmcli.face.rig import INDEX, neutral

    rng = np.random.default_rng(0)
    jaw = np.clip(np.convolve(rng.random(FRAMES + 16), np.hanning(7), mode="same")[4:-4] / 3, 0, 1)
    t = np.arange(FRAMES) / FPS
    m = neutral(FRAMES)
    m[:, INDEX["jawOpen"]] = (
        jaw_scale * jaw[MAX_LAG - shift : MAX_LAG - shift + FRAMES]
    )  # frame i shows jaw[i - shift]
    m[:, INDEX["headYaw"]] = yaw * np.sin(2 * np.pi * 0.6 * t)
    m[:, INDEX["headPitch"]] = 0.04 * np.sin(2 * np.pi * 0.4 * t + 1)
    if blink:
        for name in ("eyeBlinkLeft", "eyeBlinkRight"):
            m[30:36, INDEX[name]] = [0.5, 1, 1, 1, 1, 0.5]
    return m


CASES = {
    "base": {},
    "late": {"shift": 2},
    "half": {"jaw_scale": 0.5},
    "blink": {"blink": True},
    "sway": {"yaw": 0.16},
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Each case rendered once (128 px face crop) from a motion file."""
    from tmcli.core.config import load_preset
    from tmcli.motion.curves import MotionWriter
    from tmcli.stream.pipeline import render

    folder = tmp_path_factory.mktemp("reference")
    preset = load_preset().with_overrides(output={"crop": True, "size": 128})
    paths = {}
    for name, kwargs in CASES.items():
        with MotionWriter(folder / f"{name}.json", FPS, landmarks=np.zeros((478, 3))) as writer:
            writer.write(motion(**kwargs))
        paths[name] = folder / f"{name}.mp4"
        render(PORTRAIT, None, paths[name], preset, motion_in=folder / f"{name}.json")
    return paths


@pytest.fixture(scope="module")
def series(videos):
    return {name: read_face_series(path) for name, path in videos.items()}


@pytest.mark.slow
def test_a_video_against_itself_matches_exactly(series):
    report = compare(series["base"], series["base"])
    assert report.frames == FRAMES and report.best_lag == 0
    assert report.gap_correlation == pytest.approx(1) and report.opening_ratio == pytest.approx(1)
    assert report.yaw_spread_ratio == pytest.approx(1) and report.head_spread[0] > 1  # degrees
    assert report.head_low_share > 0.5  # a 0.6 Hz sway


@pytest.mark.slow
def test_a_late_mouth_is_found_at_its_lag(series):
    report = compare(series["late"], series["base"])
    assert report.best_lag == 2  # + = the video comes later than the reference
    assert report.gap_correlation_best > report.gap_correlation + 0.2
    assert compare(series["base"], series["late"]).best_lag == -2


@pytest.mark.slow
def test_half_the_jaw_opens_as_the_rig_says(series):
    """The opening ratio read back from the videos is the one the motion gives the portrait's own
    landmarks (jawOpen does not scale the lip gap linearly: half the jaw opens ~0.65 as wide)."""
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait
    from tmcli.tools.evaluate import mouth_aperture

    rig = Portrait.load(PORTRAIT, load_preset().with_overrides(output={"crop": True, "size": 128})).rig

    def opening(m: np.ndarray) -> float:
        return float(np.percentile([mouth_aperture(rig.apply(row)) for row in m], 90))

    known = opening(motion(jaw_scale=0.5)) / opening(motion())
    assert 0.4 < known < 0.8
    assert compare(series["half"], series["base"]).opening_ratio == pytest.approx(known, rel=0.15)


@pytest.mark.slow
def test_a_full_blink_is_deep_and_no_blink_is_not(series):
    report = compare(series["blink"], series["base"])
    # real speakers read 0.4-0.8; this 128 px render of a full blink reads ~0.6
    # (0.4 when the lowered lid smeared)
    assert report.blink_depth >= 0.5 and report.reference_blink_depth < 0.12
    assert report.blink_rate == pytest.approx(60 / 3) and report.reference_blink_rate == 0


@pytest.mark.slow
def test_twice_the_sway_spreads_twice_as_far(series):
    assert compare(series["sway"], series["base"]).yaw_spread_ratio == pytest.approx(2, rel=0.2)


@pytest.mark.slow
def test_a_reference_at_another_fps_is_resampled_onto_the_videos_frames(series):
    from dataclasses import replace

    base = series["base"]
    keep = np.repeat(
        np.arange(FRAMES), [2 if i % 5 == 4 else 1 for i in range(FRAMES)]
    )  # 25 fps -> 30: every 5th twice
    faster = replace(
        base,
        fps=30.0,
        tracks=[base.tracks[i] for i in keep],
        gap=base.gap[keep],
        shape=base.shape[keep],
        eye=base.eye[keep],
        pose=base.pose[keep],
        found=base.found[keep],
    )
    report = compare(base, faster)
    assert report.reference_fps == 30.0 and report.frames == FRAMES and report.best_lag == 0
    assert report.gap_correlation > 0.95


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_json(videos, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_tm(
        monkeypatch,
        capsys,
        "eval",
        videos["late"],
        SPEECH,
        "--reference",
        videos["base"],
        "--json",
        tmp_path / "r.json",
    )
    assert code in (0, None), err
    assert "best lag" in out + err and "blink depth" in out + err
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["best_lag"] == 2 and len(figures["head_spread"]) == 3
    assert figures["audio_correlation"] is not None and figures["mouth_dark"] is not None


@pytest.mark.slow
def test_a_reference_with_no_face_fails_in_one_line(videos, monkeypatch, capsys, tmp_path):
    from tmcli.core.media import VideoWriter

    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 64, 64, FPS) as writer:
        for _ in range(5):
            writer.write(np.full((64, 64, 3), 128, np.uint8))
    code, out, err = run_tm(monkeypatch, capsys, "eval", videos["base"], SPEECH, "--reference", blank)
    assert code != 0 and "no face found in the reference" in out + err and "Traceback" not in out + err


def _mouth(gap: float) -> np.ndarray:
    """Landmarks (478, 3) of a face 100 px between the eyes whose inner lips outline the box
    x 50-150, y 100 to 100 + gap (interocular units): upper lip along y = 100, lower below it."""
    from tmcli.face import landmarks as L

    lm = np.zeros((478, 3))
    lm[[33, 133], 0], lm[[362, 263], 0] = 50, 150
    xs = np.linspace(50, 150, len(L.LIPS_UPPER_INNER))
    lm[L.LIPS_UPPER_INNER, 0], lm[L.LIPS_UPPER_INNER, 1] = xs, 100
    lm[L.LIPS_LOWER_INNER, 0], lm[L.LIPS_LOWER_INNER, 1] = xs, 100 + 100 * gap
    lm[[78, 308], 1] = 100 + 50 * gap  # the corners halfway
    return lm


def _frame() -> np.ndarray:
    """200 x 200: near-black left of x = 100, off-white (teeth-like) from x = 100 to 125, lip red
    right of it."""
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:, 100:125] = (230, 225, 210)
    frame[:, 125:] = (180, 60, 70)
    return frame


def test_the_mouth_interior_shares_are_those_painted_inside_the_parted_lips():
    total, dark, teeth = interior_counts(_frame(), _mouth(0.4))
    assert len(INNER_LIPS) == 20 and total == pytest.approx(
        100 * 40 - 10 * 40, rel=0.05
    )  # the box less its corners' wedges
    assert dark / total == pytest.approx(0.5, abs=0.05) and teeth / total == pytest.approx(0.27, abs=0.03)
    assert interior_counts(_frame(), _mouth(0.05)).sum() == 0  # lips together: not measured
    assert interior_counts(_frame(), None).sum() == 0


def test_the_report_pools_the_interior_over_the_frames_whose_lips_are_apart():
    lit = _frame()
    lit[:, :100] = 90  # the dark half lit: grey, neither near-black nor teeth-like
    series = face_series(FPS, [_mouth(0.4), _mouth(0.4), _mouth(0.0)], [_frame(), lit, lit])
    report = compare(series, face_series(FPS, [_mouth(0.4)] * 3))
    assert report.mouth_dark == pytest.approx(0.25, abs=0.03) and report.mouth_teeth == pytest.approx(
        0.25, abs=0.03
    )
    assert np.isnan(report.reference_mouth_dark)  # the reference's frames were not read
    assert any("near-black" in row[0] for row in report.rows())
