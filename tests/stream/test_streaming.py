"""Streaming render: utterance cuts, stdin audio in, mp4 on stdout, frames out before the input ends."""

import select
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tmcli.core.audio import SAMPLE_RATE, ffmpeg_exe, load_audio, num_video_frames
from tmcli.core.media import read_video_frames
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.speech.features import FEATURE_DIM, FeatureStream, phones_within
from tmcli.speech.phones import Phone

from conftest import PORTRAIT, SPEECH

TM = [sys.executable, "-m", "tmcli"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """An untrained tiny student: the plumbing, not the quality, is under test."""
    out = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    CausalMotionDiT(hidden_size=32, num_layers=2, num_heads=2, audio_context=1).save_pretrained(out)
    return out


def _pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def _tone_bursts(seconds_on: list[float], gap: float = 0.6) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * max(seconds_on))) / SAMPLE_RATE
    parts = []
    for s in seconds_on:
        parts += [0.3 * np.sin(2 * np.pi * 220 * t[: int(s * SAMPLE_RATE)]), np.zeros(int(gap * SAMPLE_RATE))]
    return np.concatenate(parts).astype(np.float32)


def test_feature_stream_cuts_at_pauses_on_frame_edges():
    audio = _tone_bursts([2.5, 1.0, 3.0])  # 8.3 s: pauses after 2.5 s and 4.1 s
    seen = []

    def phones_of(piece, start):
        seen.append((start, len(piece)))
        return [Phone("AA", 0.0, len(piece) / SAMPLE_RATE)]

    blocks = np.array_split(audio, 41)  # odd block sizes
    rows = list(FeatureStream(25.0, phones_of)(blocks))
    assert sum(len(r) for r in rows) == num_video_frames(len(audio), 25.0)
    assert all(r.shape[1] == FEATURE_DIM for r in rows)
    starts = [s for s, _ in seen]
    # cut in the first pause (2.5-3.1 s); the next pause starts only 1.5 s later, under the 2 s
    # minimum, so the second cut is in the last one (7.7-8.3 s)
    assert len(seen) == 3 and starts[0] == 0.0
    assert 2.5 < starts[1] < 3.1 and 7.7 < starts[2] < 8.3
    assert all(abs(s * 25 - round(s * 25)) < 1e-9 for s in starts)  # on frame edges
    for s in starts[1:]:
        cut = int(s * SAMPLE_RATE)
        assert np.abs(audio[cut - 800 : cut + 800]).max() == 0  # silence on both sides of the cut


def test_long_speech_without_pauses_is_cut_at_the_maximum():
    audio = _tone_bursts([20.0], gap=0.0)
    pieces = []
    list(FeatureStream(25.0, lambda p, s: pieces.append(len(p)) or [], max_seconds=8.0)([audio]))
    assert max(pieces) <= 8 * SAMPLE_RATE and sum(pieces) == len(audio)


def test_phones_within_a_piece_are_shifted_and_clipped():
    phones = [Phone("M", 0.5, 1.5), Phone("AA", 1.5, 2.5), Phone("SIL", 2.5, 4.0)]
    got = phones_within(phones, np.zeros(SAMPLE_RATE, dtype=np.float32), 1.0)  # the piece 1-2 s
    assert got == [Phone("M", 0.0, 0.5), Phone("AA", 0.5, 1.0)]


def _read(path) -> list[np.ndarray]:
    reader = read_video_frames(path)
    next(reader)
    return list(reader)


@pytest.mark.slow
def test_stdin_renders_what_the_file_renders_and_stdout_carries_video_and_audio(student_dir, tmp_path):
    common = ["--generator", "student", "--checkpoint", str(student_dir), "--crop", "--size", "128", "-q"]
    subprocess.run(
        [*TM, "render", str(PORTRAIT), str(SPEECH), "-o", str(tmp_path / "file.mp4"), *common],
        check=True,
        timeout=300,
    )
    subprocess.run(
        [*TM, "render", str(PORTRAIT), "-", "-o", str(tmp_path / "stdin.mp4"), *common],
        stdin=open(SPEECH, "rb"),
        check=True,
        timeout=300,
    )
    from_file, from_stdin = _read(tmp_path / "file.mp4"), _read(tmp_path / "stdin.mp4")
    assert len(from_file) == len(from_stdin) == 100
    for a, b in zip(from_file, from_stdin):  # the same audio in pieces: the same video
        np.testing.assert_array_equal(a, b)

    raw = _pcm(load_audio(SPEECH))  # headerless PCM in, a fragmented mp4 out
    proc = subprocess.run(
        [*TM, "render", str(PORTRAIT), "-", "--rate", "16000", "-o", "-", *common],
        input=raw,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "stdout.mp4").write_bytes(proc.stdout)
    assert len(_read(tmp_path / "stdout.mp4")) == 100
    probe = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "stdout.mp4")], capture_output=True
    )
    info = probe.stderr.decode()
    assert "Video: h264" in info and "Audio: aac" in info and "start 0.0" not in info.split("Video:")[1]


@pytest.mark.slow
def test_video_comes_out_before_the_input_ends(student_dir):
    audio = np.concatenate([load_audio(SPEECH), np.zeros(SAMPLE_RATE, dtype=np.float32)] * 3)
    first = int(5.0 * SAMPLE_RATE)  # speech, a pause, the start of the next utterance
    proc = subprocess.Popen(
        [
            *TM,
            "render",
            str(PORTRAIT),
            "-",
            "--rate",
            "16000",
            "-o",
            "-",
            "--generator",
            "student",
            "--checkpoint",
            str(student_dir),
            "--crop",
            "--size",
            "128",
            "-q",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(_pcm(audio[:first]))
        proc.stdin.flush()
        deadline = time.time() + 120
        ready = []
        while not ready and time.time() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        assert ready, "no video before the input ended"
        assert proc.poll() is None  # still running: it is waiting for the rest of the audio
        proc.stdin.write(_pcm(audio[first:]))
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
        assert len(rest) > 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_bad_stdin_audio_is_one_clear_line(student_dir):
    proc = subprocess.run(
        [
            *TM,
            "render",
            str(PORTRAIT),
            "-",
            "-o",
            "-",
            "--generator",
            "student",
            "--checkpoint",
            str(student_dir),
        ],
        input=b"not audio at all",
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode != 0 and proc.stdout == b""
    lines = proc.stderr.decode().strip().splitlines()
    assert "standard input" in lines[0] and "Traceback" not in proc.stderr.decode()
