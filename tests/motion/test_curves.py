"""Motion curves: tm's JSON and the ARKit / Live Link Face CSV, written and read back."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tmcli.core.errors import InputError
from tmcli.face.rig import INDEX, LOWER, MOTION_DIM, UPPER, neutral
from tmcli.motion.curves import ARKIT_BLENDSHAPES, CSV_COLUMNS, UNMODELLED, MotionWriter, read_motion

from conftest import PORTRAIT, SPEECH


def random_motion(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(LOWER, UPPER, (frames, MOTION_DIM)).astype(np.float32)


def write(path, motion, fps=25.0, blocks=(3, 4)):
    with MotionWriter(path, fps, landmarks=np.zeros((478, 3))) as w:
        start = 0
        for size in blocks:  # written block by block, as chunks come
            w.write(motion[start : start + size])
            start += size


def test_json_round_trips_every_channel_exactly(tmp_path):
    motion = random_motion(7)
    write(tmp_path / "m.json", motion)
    np.testing.assert_array_equal(read_motion(tmp_path / "m.json", 25.0), motion)
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["num_frames"] == 7 and len(data["portrait_landmarks"]) == 478
    assert data["frames"][2]["blendshapes"]["jawOpen"] == pytest.approx(float(motion[2, INDEX["jawOpen"]]))
    assert data["frames"][2]["pose"]["headYaw"] == pytest.approx(float(motion[2, INDEX["headYaw"]]))


def test_csv_has_the_live_link_face_layout_and_round_trips_what_it_holds(tmp_path):
    motion = random_motion(7)
    rest = neutral(1)[0]
    for name in ("headX", "headY", "headScale"):  # no ARKit column: these come back at rest
        motion[:, INDEX[name]] = rest[INDEX[name]]
    write(tmp_path / "m.csv", motion)
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    assert rows[0] == CSV_COLUMNS and len(CSV_COLUMNS) == 2 + 52 + 9 and len(rows) == 8
    assert rows[0][2:54] == ARKIT_BLENDSHAPES and rows[1][0] == "00:00:00:00.000" and rows[6][1] == "61"
    row = dict(zip(rows[0], rows[3]))
    assert float(row["JawOpen"]) == pytest.approx(float(motion[2, INDEX["jawOpen"]]))
    assert float(row["HeadRoll"]) == pytest.approx(float(motion[2, INDEX["headRoll"]]))
    gx = float(motion[2, INDEX["gazeX"]])
    assert float(row["EyeLookOutLeft"]) == pytest.approx(max(gx, 0)) and float(
        row["EyeLookInLeft"]
    ) == pytest.approx(max(-gx, 0))
    assert all(float(row[name]) == 0 for name in UNMODELLED) and "TongueOut" in UNMODELLED
    np.testing.assert_array_equal(read_motion(tmp_path / "m.csv", 25.0), motion)


def test_csv_from_elsewhere_without_eye_angles_takes_the_gaze_from_the_look_shapes(tmp_path):
    values = dict.fromkeys(CSV_COLUMNS[2:], 0.0)
    values.update(JawOpen=0.4, EyeLookOutLeft=0.5, EyeLookInRight=0.5, EyeLookUpLeft=0.2, EyeLookUpRight=0.2)
    with open(tmp_path / "capture.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerow(["10:00:00:00.000", "61", *values.values()])
    m = read_motion(tmp_path / "capture.csv", 25.0)[0]
    assert m[INDEX["jawOpen"]] == pytest.approx(0.4)
    assert (m[INDEX["gazeX"]], m[INDEX["gazeY"]]) == pytest.approx((0.5, -0.2))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("m.txt", "", "are .json"),
        ("m.csv", "Timecode,JawOpen\n0,1\n", "no column"),
        ("m.json", '{"format": "tm-motion", "version": 9, "fps": 25, "frames": []}', "version 9"),
        ("m.json", '{"format": "tm-motion", "version": 1, "fps": 30, "frames": []}', "30 fps"),
        ("m.json", '{"format": "tm-motion", "version": 1, "fps": 25, "frames": []}', "no frames"),
        ("m.json", '{"format": "other"}', "not a tm motion file"),
        (
            "m.json",
            '{"format": "tm-motion", "version": 1, "fps": 25, "frames": [{"pose": {}}]}',
            "cannot read",
        ),
        ("m.json", "{broken", "cannot read"),
    ],
)
def test_bad_motion_files_are_clear_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_motion(tmp_path / name, 25.0)


def test_nan_motion_is_refused(tmp_path):
    motion = random_motion(3)
    motion[1, 0] = np.nan
    write(tmp_path / "m.json", motion, blocks=(3,))
    with pytest.raises(InputError, match="not numbers"):
        read_motion(tmp_path / "m.json", 25.0)


def test_a_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with MotionWriter(tmp_path / "m.csv", 25.0) as w:
            w.write(random_motion(2))
            raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []


def tm(*args):
    return subprocess.run(
        [sys.executable, "-m", "tmcli", "render", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_motion_out_then_motion_in_gives_the_same_video(tmp_path):
    """render -> --motion-out (JSON and CSV, --no-video) -> --motion-in: the same frames."""
    from tmcli.core.media import read_video_frames

    small = ["--generator", "phonetic", "--size", "192", "--crop", "-q"]
    first = tm(PORTRAIT, SPEECH, "-o", tmp_path / "a.mp4", "--motion-out", tmp_path / "m.json", *small)
    assert first.returncode == 0, first.stderr[-2000:]
    only = tm(PORTRAIT, SPEECH, "--no-video", "--motion-out", tmp_path / "m.csv", *small)
    assert only.returncode == 0, only.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "m.csv", "m.json"]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.mp4", "m.csv", "m.json"):  # as a plain open() would make them, not mkstemp's 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    json_motion, csv_motion = read_motion(tmp_path / "m.json", 25.0), read_motion(tmp_path / "m.csv", 25.0)
    assert json_motion.shape == csv_motion.shape == (100, MOTION_DIM)
    again = tm(PORTRAIT, SPEECH, "--motion-in", tmp_path / "m.json", "-o", tmp_path / "b.mp4", *small)
    assert again.returncode == 0, again.stderr[-2000:]
    silent = tm(PORTRAIT, "--motion-in", tmp_path / "m.json", "-o", tmp_path / "c.mp4", *small)
    assert silent.returncode == 0, silent.stderr[-2000:]
    a, b, c = (list(read_video_frames(tmp_path / f"{n}.mp4"))[1:] for n in "abc")
    assert len(a) == len(b) == len(c) == 100
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(a, b, c))


@pytest.mark.slow
def test_a_bad_motion_file_fails_the_render_in_one_line(tmp_path):
    (tmp_path / "m.csv").write_text("Timecode,JawOpen\n")
    proc = tm(PORTRAIT, "--motion-in", tmp_path / "m.csv", "-o", tmp_path / "x.mp4")
    assert proc.returncode == 2 and "no column" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
