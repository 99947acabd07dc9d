"""Dubbing a video (stream/dub.py): the order source frames are played in, motion resampled to the
video's rate, and whole dubs of small generated videos (tm's own renders, marked frame by frame)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from tmcli.core.config import load_preset
from tmcli.core.media import VideoWriter, read_video_frames
from tmcli.face import landmarks as L
from tmcli.face.rig import ARTICULATION, INDEX
from tmcli.motion.curves import read_motion
from tmcli.stream import dub
from tmcli.stream.dub import ordered_frames, resampled, source_index

from conftest import PORTRAIT, SPEECH, run_tm

FPS = 25.0
MARK = 16  # side of the corner square whose grey level numbers each source frame
STEP = 5  # grey levels between frame numbers


@pytest.mark.parametrize(
    "loop, expected",
    [
        ("pingpong", [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]),
        ("loop", [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]),
        ("freeze", [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3]),
    ],
)
def test_source_index(loop, expected):
    assert [source_index(k, 4, loop) for k in range(11)] == expected
    assert [source_index(k, 1, loop) for k in range(4)] == [0, 0, 0, 0]


def test_pingpong_never_jumps():
    for count in (2, 3, 7):
        steps = np.diff([source_index(k, count, "pingpong") for k in range(50)])
        assert set(np.abs(steps)) == {1}


def _numbered_video(path, count: int, size: int = 64) -> None:
    with VideoWriter(path, size, size, FPS) as writer:
        for i in range(count):
            writer.write(np.full((size, size, 3), STEP * i, np.uint8))


def _number(frame: np.ndarray) -> int:
    return int(round(frame[:MARK, :MARK].mean() / STEP))


@pytest.mark.parametrize("loop", ["pingpong", "loop", "freeze"])
def test_frames_are_decoded_in_source_index_order(tmp_path, monkeypatch, loop):
    monkeypatch.setattr(dub, "BLOCK_SECONDS", 3 / FPS)  # backward runs in several blocks
    path = tmp_path / "numbered.mp4"
    _numbered_video(path, 9)
    frames = read_video_frames(path)
    fps = next(frames)
    got = [_number(f) for f in itertools.islice(ordered_frames(path, fps, frames, loop), 40)]
    assert got == [source_index(k, 9, loop) for k in range(40)]


def test_the_whole_video_seen_is_reported_once(tmp_path):
    path = tmp_path / "numbered.mp4"
    _numbered_video(path, 3)
    seen = []
    frames = read_video_frames(path)
    fps = next(frames)
    list(itertools.islice(ordered_frames(path, fps, frames, "loop", lambda: seen.append(1)), 10))
    assert seen == [1]


def test_resampled_motion_is_linear_in_time_and_as_long():
    ramp = np.arange(50, dtype=np.float32)[:, None].repeat(3, axis=1)  # 2 s at 25 fps
    chunks = [ramp[i : i + 5] for i in range(0, 50, 5)]
    out = np.concatenate(list(resampled(iter(chunks), 25.0, 30.0)))
    assert len(out) == 60  # 2 s at 30 fps
    np.testing.assert_allclose(out[:59, 0], np.minimum(np.arange(59) * 25 / 30, 49), atol=1e-5)
    other = np.concatenate(list(resampled(iter([ramp[:7], ramp[7:31], ramp[31:]]), 25.0, 30.0)))
    np.testing.assert_array_equal(out, other)  # however the motion is chunked
    same = list(resampled(iter(chunks), 25.0, 25.0))
    assert all(a is b for a, b in zip(same, chunks))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 2 s, 25 fps video of the astronaut talking (tm's own render, 256 px), each frame numbered
    in its corner, frames 10-14 a cutaway with no face; and 4 s of speech to dub it with."""
    from tmcli.stream.pipeline import render

    tmp = tmp_path_factory.mktemp("dub")
    audio, rate = sf.read(SPEECH, dtype="float32")
    sf.write(tmp / "two.wav", audio[: 2 * rate], rate)
    preset = load_preset("default").with_overrides(output={"crop": True, "size": 256})
    render(PORTRAIT, tmp / "two.wav", tmp / "talk.mp4", preset, generator="phonetic")
    fps, *frames = read_video_frames(tmp / "talk.mp4")
    video = tmp / "source.mp4"
    with VideoWriter(video, 256, 256, fps) as writer:
        for i, frame in enumerate(frames):
            frame = np.full_like(frame, 90) if 10 <= i < 15 else frame.copy()
            frame[:MARK, :MARK] = STEP * i
            writer.write(frame)
    return video, len(frames)


@pytest.fixture(scope="module")
def dubbed(source, tmp_path_factory):
    from tmcli.stream.pipeline import render

    video, _ = source
    out = tmp_path_factory.mktemp("dubbed") / "dubbed.mp4"
    result = render(video, SPEECH, out, load_preset("default"))
    return out, result


@pytest.mark.slow
def test_a_dub_keeps_frame_rate_size_and_the_speech_length(source, dubbed):
    out, result = dubbed
    fps, *frames = read_video_frames(out)
    assert fps == FPS and frames[0].shape == (256, 256, 3)
    assert abs(len(frames) - sf.info(SPEECH).duration * FPS) <= 1
    assert result.frames == len(frames)


@pytest.mark.slow
def test_a_dub_plays_its_source_ping_pong_and_passes_faceless_frames_through(source, dubbed):
    video, count = source
    _, *originals = read_video_frames(video)
    _, *frames = read_video_frames(dubbed[0])
    order = [source_index(k, count, "pingpong") for k in range(len(frames))]
    assert count < len(frames)  # the speech is longer than the video
    assert [_number(f) for f in frames] == order
    for k, i in enumerate(order):
        if 10 <= i < 15:  # the cutaway, as it was
            assert np.abs(frames[k].astype(int) - originals[i]).mean() < 1.5


@pytest.mark.slow
def test_a_dub_leaves_the_upper_face_and_changes_the_mouth(source, dubbed):
    video, count = source
    _, *originals = read_video_frames(video)
    _, *frames = read_video_frames(dubbed[0])
    upper, mouth = [], []
    for k, frame in enumerate(frames):
        original = originals[source_index(k, count, "pingpong")]
        faces = L.detect_faces(original)
        if not faces:
            continue
        lm = faces[0].landmarks
        top = int(lm[L.NOSE_TIP, 1] - 0.15 * L.interocular(lm))
        mse = np.mean((frame[MARK:top].astype(float) - original[MARK:top]) ** 2)
        upper.append(10 * np.log10(255**2 / max(mse, 1e-10)))
        lips = slice(int(lm[13, 1]) - 10, int(lm[14, 1]) + 10), slice(int(lm[61, 0]), int(lm[291, 0]))
        mouth.append(np.abs(frame[lips].astype(int) - original[lips]).mean())
    assert np.median(upper) >= 30
    assert max(mouth) > 8  # new speech, another mouth


@pytest.mark.slow
def test_face_index_picks_which_face_of_a_video_is_dubbed(source, tmp_path):
    """Two faces side by side, the second smaller: --face-index 1 dubs it and leaves the first."""
    from PIL import Image

    from tmcli.stream.pipeline import render

    video, _ = source
    fps, *frames = read_video_frames(video)
    frames = [f for i, f in enumerate(frames) if not 10 <= i < 15][:25]  # faces in every frame
    pair = tmp_path / "pair.mp4"
    with VideoWriter(pair, 512, 256, fps) as writer:
        for frame in frames:
            small = np.full_like(frame, 90)
            small[32:224, 32:224] = np.asarray(Image.fromarray(frame).resize((192, 192), Image.LANCZOS))
            writer.write(np.concatenate([frame, small], axis=1))
    audio, rate = sf.read(SPEECH, dtype="float32")
    sf.write(tmp_path / "one.wav", audio[:rate], rate)
    _, *originals = read_video_frames(pair)
    faces = L.detect_faces(originals[0])  # the larger first
    mouths = []
    for face in faces:
        lm = face.landmarks
        mouths.append((slice(int(lm[13, 1]) - 8, int(lm[14, 1]) + 8), slice(int(lm[61, 0]), int(lm[291, 0]))))
    for index in (0, 1):
        out = tmp_path / f"face{index}.mp4"
        render(pair, tmp_path / "one.wav", out, load_preset("default"), face_index=index)
        _, *got = read_video_frames(out)
        change = [[np.abs(g[m].astype(int) - o[m]).mean() for g, o in zip(got, originals)] for m in mouths]
        dubbed, kept = max(change[index]), max(change[1 - index])
        assert dubbed > 8 and dubbed > 3 * kept, index  # this face's mouth says the new speech
        assert kept < 6, index  # the other's is as it was (encoding noise only: 1.6-4.8)


def _video_of(tmp_path, name: str, frame: np.ndarray, count: int = 10):
    path = tmp_path / name
    with VideoWriter(path, frame.shape[1], frame.shape[0], FPS) as writer:
        for _ in range(count):
            writer.write(frame)
    return path


@pytest.mark.slow
def test_a_video_without_a_face_is_one_clear_error_and_no_file(monkeypatch, capsys, tmp_path):
    grey = _video_of(tmp_path, "grey.mp4", np.full((64, 64, 3), 120, np.uint8))
    code, _, err = run_tm(monkeypatch, capsys, "render", grey, SPEECH, "-o", tmp_path / "out.mp4", "-q")
    assert code == 2
    assert "no face found in any frame" in err and "Traceback" not in err
    assert not (tmp_path / "out.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.mp4"]


def test_options_a_dub_cannot_take_are_refused(monkeypatch, capsys, tmp_path):
    grey = _video_of(tmp_path, "grey.mp4", np.full((64, 64, 3), 120, np.uint8), 2)
    for extra, fragment in (
        (["--fps", "30"], "keeps the source's frame rate"),
        (["--size", "256"], "keeps the source's frame rate, size"),
        (["--loop", "bounce"], "unknown --loop 'bounce'"),
        (["--motion-out", tmp_path / "m.json"], "a video face is dubbed from AUDIO"),
    ):
        code, _, err = run_tm(monkeypatch, capsys, "render", grey, SPEECH, "-o", tmp_path / "o.mp4", *extra)
        assert code == 2 and fragment in err, err
        assert not (tmp_path / "o.mp4").exists()


def test_motion_from_must_be_a_video(monkeypatch, capsys, tmp_path):
    code, _, err = run_tm(
        monkeypatch, capsys, "render", PORTRAIT, SPEECH, "-o", tmp_path / "o.mp4", "--motion-from", PORTRAIT
    )
    assert code == 2 and "--motion-from" in err and "not a video" in err


@pytest.mark.slow
def test_motion_from_takes_the_head_from_the_video_and_the_mouth_from_the_audio(tmp_path):
    """A reference whose head turns (tm's render with lively head motion): the portrait's head
    follows it, its mouth stays the generator's."""
    from tmcli.stream.pipeline import render

    preset = load_preset("default").with_overrides(output={"crop": True, "size": 256})
    truth = []
    lively = preset.with_overrides(controls={"pose_intensity": 2.0})
    render(
        PORTRAIT, SPEECH, tmp_path / "ref.mp4", lively, seed=4, generator="phonetic", on_motion=truth.append
    )
    truth = np.concatenate(truth)
    plain, taken = tmp_path / "plain.json", tmp_path / "taken.json"
    render(PORTRAIT, SPEECH, None, preset, generator="phonetic", motion_out=plain)
    render(
        PORTRAIT,
        SPEECH,
        None,
        preset,
        generator="phonetic",
        motion_out=taken,
        motion_from=tmp_path / "ref.mp4",
    )
    plain, taken = (read_motion(p, FPS) for p in (plain, taken))
    mouth = [INDEX[n] for n in ARTICULATION]
    np.testing.assert_allclose(taken[:, mouth], plain[:, mouth], atol=1e-6)
    n = min(len(truth), len(taken))
    for name in ("headYaw", "headPitch"):
        i = INDEX[name]
        assert truth[:n, i].std() > 0.02
        assert np.corrcoef(truth[:n, i], taken[:n, i])[0, 1] > 0.8, name


@pytest.mark.slow
def test_a_manifest_row_may_name_a_video_with_its_loop(source, monkeypatch, capsys, tmp_path):
    video, count = source
    (tmp_path / "jobs.csv").write_text(
        f"portrait,audio,output,loop\n{video},{SPEECH},dub.mp4,freeze\n{PORTRAIT},{SPEECH},still.mp4,\n"
    )
    code, _, err = run_tm(
        monkeypatch, capsys, "render", "--manifest", tmp_path / "jobs.csv", "-o", tmp_path, "-q"
    )
    assert code == 0, err
    _, *frames = read_video_frames(tmp_path / "dub.mp4")
    assert [_number(f) for f in frames] == [source_index(k, count, "freeze") for k in range(len(frames))]
    fps, *still = read_video_frames(tmp_path / "still.mp4")
    assert len(still) == len(frames)
