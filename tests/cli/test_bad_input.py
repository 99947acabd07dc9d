"""Bad input, kind by kind (issue 27): each either works, or ends with one clear line (and a
hint), a non-zero exit, no traceback and nothing at the output path.

Inputs are made here, small, in a session folder; renders use the phonetic generator on a 128 px
crop. The two signal tests and the full-disk test run `python -m tmcli` in a process of its own."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmcli.core.audio import ffmpeg_exe

from conftest import PORTRAIT, SPEECH, run_tm

FAST = ("--generator", "phonetic", "--size", "128", "--crop")


def ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def write_png(path: Path, width: int, height: int, bit_depth: int, colour: int, idat: bytes) -> Path:
    """A PNG from its parts, so that a huge one never has to be held whole."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    """Every odd input, made once (about 10 s, most of it the 3-hour FLAC)."""
    d = tmp_path_factory.mktemp("bad_inputs")
    face = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    # faces
    Image.fromarray(face).save(
        d / "animated.gif",
        save_all=True,
        append_images=[Image.fromarray(face[:, ::-1])],
        duration=100,
        loop=0,
    )
    Image.fromarray(face).save(d / "still.gif")
    Image.fromarray(face).save(d / "face.pdf")
    ffmpeg("-loop", "1", "-i", PORTRAIT, "-t", "1", "-pix_fmt", "yuv420p", d / "face.mp4")
    Image.fromarray(face).convert("CMYK").save(d / "cmyk.jpg")
    ffmpeg("-i", PORTRAIT, "-pix_fmt", "rgb48le", d / "deep.tif")  # 16 bits a channel
    Image.new("RGB", (1, 1)).save(d / "dot.png")
    rows = zlib.compressobj(9)  # a real 20000 x 20000 picture (1 bit a pixel: 40 kB)
    write_png(
        d / "huge.png",
        20000,
        20000,
        1,
        0,
        b"".join(rows.compress(b"\0" * 2501) for _ in range(20000)) + rows.flush(),
    )
    write_png(d / "bomb.png", 100000, 100000, 8, 2, zlib.compress(b"\0" * 300001))  # 200 bytes, 10^10 pixels
    write_png(d / "80mp.png", 10000, 8000, 8, 2, zlib.compress(b"\0" * 30001))  # under PIL's limit, over tm's
    Image.fromarray(face[40:, 200:]).save(d / "cut.png")  # the face's left quarter outside the picture
    Image.fromarray(face[:, 225:]).save(d / "half.png")  # half a face: the stand-in for a profile
    (d / "text.png").write_text("not an image")
    (d / "empty.png").write_bytes(b"")
    (d / "folder").mkdir()
    # audio
    import soundfile as sf

    sr = 16000
    t = np.arange(3 * sr) / sr
    sf.write(d / "blip.wav", (0.3 * np.sin(2 * np.pi * 200 * t[: sr // 20])).astype(np.float32), sr)  # 0.05 s
    ffmpeg("-i", SPEECH, "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw", d / "phone.wav")
    ffmpeg("-i", SPEECH, "-ar", "96000", "-ac", "6", d / "surround.wav")
    sf.write(
        d / "music.wav",
        (
            0.2 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))
            + 0.1 * np.sin(2 * np.pi * 659 * t)
        ).astype(np.float32),
        sr,
    )
    sf.write(d / "noise.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 3 * sr).astype(np.float32), sr)
    sf.write(d / "silence.wav", np.zeros(2 * sr, np.float32), sr)
    nan = (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    nan[100], nan[200] = np.nan, np.inf
    sf.write(d / "nan.wav", nan, sr, subtype="FLOAT")
    ffmpeg("-i", SPEECH, d / "speech.mp3")
    mp3 = (d / "speech.mp3").read_bytes()
    (d / "cut.mp3").write_bytes(mp3[: len(mp3) // 2])
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1", d / "mute.mp4")
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=64x64:d=4",
        "-i",
        SPEECH,
        "-shortest",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        d / "talk.mp4",
    )
    (d / "empty.wav").write_bytes(b"")
    # 3 hours: the speech, then silence (FLAC keeps it at 2 MB)
    ffmpeg("-i", SPEECH, "-af", "apad=whole_dur=10800", "-c:a", "flac", d / "3h.flac")
    return d


# kind, portrait, audio, -o, extra args, exit code, the first line holds
REFUSED = [
    # the face
    (
        "animated GIF with --size/--crop",
        "animated.gif",
        SPEECH,
        "o.mp4",
        (),
        2,
        "a dubbed video keeps the source's frame rate, size and framing",
    ),
    ("PDF", "face.pdf", SPEECH, "o.mp4", (), 2, "is a PDF document, not an image"),
    (
        "video face with --size/--crop",
        "face.mp4",
        SPEECH,
        "o.mp4",
        (),
        2,
        "a dubbed video keeps the source's frame rate, size and framing",
    ),
    ("1x1 image", "dot.png", SPEECH, "o.mp4", (), 2, "is too small (1x1) to hold a face"),
    ("20000x20000 image", "huge.png", SPEECH, "o.mp4", (), 2, "is too large to be a portrait"),
    ("PNG bomb (200 B, 10^10 px)", "bomb.png", SPEECH, "o.mp4", (), 2, "is too large to be a portrait"),
    ("10000x8000 image", "80mp.png", SPEECH, "o.mp4", (), 2, "is too large: 10000x8000 (80 megapixels"),
    ("half a face (profile stand-in)", "half.png", SPEECH, "o.mp4", (), 2, "no face found"),
    ("not an image", "text.png", SPEECH, "o.mp4", (), 2, "cannot read"),
    ("empty image file", "empty.png", SPEECH, "o.mp4", (), 2, "is empty (0 bytes)"),
    ("missing portrait", "nowhere.png", SPEECH, "o.mp4", (), 2, "portrait not found"),
    ("folder as the face", "folder", SPEECH, "o.mp4", (), 2, "is a folder, not an image"),
    ("audio as the face", SPEECH, PORTRAIT, "o.mp4", (), 2, "is audio, not an image"),
    # the audio
    ("NaN/inf float WAV", PORTRAIT, "nan.wav", "o.mp4", (), 2, "has non-finite samples"),
    ("video without audio", PORTRAIT, "mute.mp4", "o.mp4", (), 2, "it has no audio track"),
    ("image as AUDIO", PORTRAIT, "cut.png", "o.mp4", (), 2, "is an image, not audio"),
    ("empty audio file", PORTRAIT, "empty.wav", "o.mp4", (), 2, "is empty (0 bytes)"),
    ("missing audio", PORTRAIT, "nowhere.wav", "o.mp4", (), 2, "audio file not found"),
    ("folder as AUDIO", PORTRAIT, "folder", "o.mp4", (), 2, "is a folder, not audio"),
    ("3 h, read whole (phonetic)", PORTRAIT, "3h.flac", "o.mp4", (), 2, "is longer than 20 minutes"),
    # the output
    ("-o in /proc", PORTRAIT, SPEECH, "/proc/o.mp4", (), 3, "cannot write to /proc"),
    ("-o under a file", PORTRAIT, SPEECH, "text.png/o.mp4", (), 3, "a file of that name is in the way"),
    ("-o .avi", PORTRAIT, SPEECH, "o.avi", (), 3, "tm writes H.264 + AAC in an .mp4 file, not .avi"),
    ("-o without extension", PORTRAIT, SPEECH, "o", (), 3, "not a file without extension"),
    (
        "--no-video, motion file .txt",
        PORTRAIT,
        SPEECH,
        "o.mp4",
        ("--no-video", "--motion-out", "m.txt"),
        2,
        "m.txt",
    ),
    # manifests
    ("manifest without audio column", None, None, "o.mp4", ("--manifest", "jobs.csv"), 2, "row 2: no audio"),
    (
        "manifest with unknown column",
        None,
        None,
        "o.mp4",
        ("--manifest", "odd.csv"),
        2,
        "unknown column 'colour'",
    ),
    ("empty manifest", None, None, "o.mp4", ("--manifest", "void.csv"), 2, "lists no jobs"),
    ("missing manifest", None, None, "o.mp4", ("--manifest", "nowhere.csv"), 2, "no manifest at"),
]


def assert_one_clear_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert lines and fragment in lines[0], err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), err
    assert "Traceback" not in err and "unexpected" not in err


def written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "kind, portrait, audio, out, extra, code, fragment", REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused_with_one_clear_line_and_nothing_written(
    monkeypatch, capsys, inputs, tmp_path, kind, portrait, audio, out, extra, code, fragment
):
    (tmp_path / "text.png").write_text("a file")
    (tmp_path / "jobs.csv").write_text(f"portrait,output\n{PORTRAIT},a.mp4\n")
    (tmp_path / "odd.csv").write_text(f"audio,colour\n{SPEECH},red\n")
    (tmp_path / "void.csv").write_text("")
    before = written(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = [inputs / p for p in (portrait, audio) if p is not None]
    got, _, err = run_tm(monkeypatch, capsys, "render", *args, "-o", out, *extra, *FAST, "-q")
    assert got == code, err
    assert_one_clear_line(err, fragment)
    assert written(tmp_path) == before  # no video, no motion file, no temporary file


def test_output_equal_to_an_input_is_refused_before_it_is_touched(monkeypatch, capsys, inputs, tmp_path):
    talk = tmp_path / "talk.mp4"  # a video with sound is a valid AUDIO, and an .mp4 output name
    talk.write_bytes((inputs / "talk.mp4").read_bytes())
    before = talk.read_bytes()
    for args in ((PORTRAIT, talk, "-o", talk), (PORTRAIT, talk, "-o", tmp_path / "." / "talk.mp4")):
        code, _, err = run_tm(monkeypatch, capsys, "render", *args, *FAST, "-q")
        assert code == 3
        assert_one_clear_line(err, "is the input")
    assert talk.read_bytes() == before and written(tmp_path) == ["talk.mp4"]


def mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


def test_read_only_file_system(monkeypatch, capsys, tmp_path):
    """Root ignores permissions; a read-only mount stops it."""
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=64k")
    try:
        code, _, err = run_tm(
            monkeypatch, capsys, "render", PORTRAIT, SPEECH, "-o", ro / "o.mp4", *FAST, "-q"
        )
        assert code == 3
        assert_one_clear_line(err, "Read-only file system")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.slow
def test_disk_full_mid_render(monkeypatch, capsys, tmp_path):
    """A 300 kB tmpfs with 40 kB free: the check passes, ffmpeg runs out of space while writing."""
    small = tmp_path / "small"
    mount_tmpfs(small, "size=300k")
    try:
        (small / "filler").write_bytes(b"\0" * 260_000)
        code, _, err = run_tm(
            monkeypatch, capsys, "render", PORTRAIT, SPEECH, "-o", small / "o.mp4", *FAST, "-q"
        )
        assert code == 3
        assert_one_clear_line(err, "No space left on device")
        assert written(small) == ["filler"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


# kind, portrait, audio: each renders (or, for PORTRAIT, finds the face and renders)
WORKS = [
    ("CMYK JPEG", "cmyk.jpg", SPEECH),
    ("16-bit TIFF", "deep.tif", SPEECH),
    ("one-frame GIF", "still.gif", SPEECH),
    ("face cut by the border", "cut.png", SPEECH),
    ("0.05 s of audio", PORTRAIT, "blip.wav"),
    ("8 kHz telephone audio", PORTRAIT, "phone.wav"),
    ("96 kHz 6-channel", PORTRAIT, "surround.wav"),
    ("music without speech", PORTRAIT, "music.wav"),
    ("white noise", PORTRAIT, "noise.wav"),
    ("silence", PORTRAIT, "silence.wav"),
    ("truncated mp3", PORTRAIT, "cut.mp3"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind, portrait, audio", WORKS, ids=[w[0] for w in WORKS])
def test_renders(monkeypatch, capsys, inputs, tmp_path, kind, portrait, audio):
    out = tmp_path / "o.mp4"
    code, _, err = run_tm(
        monkeypatch, capsys, "render", inputs / portrait, inputs / audio, "-o", out, *FAST, "-q"
    )
    assert code == 0, err
    assert written(tmp_path) == ["o.mp4"]
    info = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True
    ).stderr
    assert "Video: h264" in info and "Audio: aac" in info


@pytest.mark.slow
def test_spaces_and_non_ascii_in_paths_and_a_missing_output_folder(monkeypatch, capsys, tmp_path):
    here = tmp_path / "mes entrées"
    here.mkdir()
    face, speech = here / "portrait de Zoë.png", here / "voix ü 1.wav"
    face.write_bytes(PORTRAIT.read_bytes())
    speech.write_bytes(SPEECH.read_bytes())
    out = tmp_path / "nouveau dossier" / "sous-dossier" / "vidéo finale.mp4"
    code, _, err = run_tm(monkeypatch, capsys, "render", face, speech, "-o", out, *FAST, "-q")
    assert code == 0, err
    assert out.is_file() and written(out.parent) == ["vidéo finale.mp4"]


def start_render(tmp_path: Path, audio: Path, *extra: str) -> subprocess.Popen:
    """`python -m tmcli render` in a session of its own (its own process group, as a shell's job)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tmcli",
            "render",
            str(PORTRAIT),
            str(audio),
            "-o",
            str(tmp_path / "o.mp4"),
            "--size",
            "128",
            "--crop",
            "-q",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_partial(proc: subprocess.Popen, folder: Path, min_bytes: int, timeout: float = 150) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        sizes = [p.stat().st_size for p in folder.glob("*.partial.mp4")]
        if sizes and sizes[0] >= min_bytes:
            return sizes[0]
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no partial video of {min_bytes} bytes came: {proc.communicate()[1][-2000:]}")


def assert_stopped(proc: subprocess.Popen, folder: Path, code: int, name: str) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert_one_clear_line(err, f"stopped by {name}")
    assert written(folder) == []  # the partial video is gone
    end = (
        time.monotonic() + 10
    )  # and ffmpeg, the phones worker, multiprocessing's resource tracker soon after
    while time.monotonic() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    left = subprocess.run(
        ["ps", "-o", "pid,args", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"processes left in the render's group:\n{left}")


@pytest.mark.slow
def test_ctrl_c_while_3_hours_of_audio_stream(inputs, tmp_path):
    """The student (the default generator) streams 3 hours: encoded frames reach the file once it
    has started, with the audio far from read. Ctrl-C (SIGINT to the whole process group) then
    stops it: exit 130, nothing left."""
    proc = start_render(tmp_path, inputs / "3h.flac")
    wait_for_partial(proc, tmp_path, 1000)  # past the header: encoded frames
    os.killpg(proc.pid, signal.SIGINT)
    assert_stopped(proc, tmp_path, 130, "SIGINT")


@pytest.mark.slow
def test_sigterm_mid_render(inputs, tmp_path):
    """SIGTERM to the tm process alone (as `kill`, systemd or docker stop send it): exit 143, the
    partial video removed, the worker process stopped with it."""
    proc = start_render(tmp_path, inputs / "3h.flac")
    wait_for_partial(proc, tmp_path, 1)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert_stopped(proc, tmp_path, 143, "SIGTERM")


@pytest.mark.slow
def test_a_bad_row_among_good_ones(monkeypatch, capsys, inputs, tmp_path):
    """A manifest's bad rows (a missing file, a PDF face, an .avi output) are reported; the good rows
    render; exit 1."""
    (tmp_path / "jobs.csv").write_text(
        "portrait,audio,output\n"
        f"{PORTRAIT},{SPEECH},good1.mp4\n"
        f"{PORTRAIT},{inputs / 'nowhere.wav'},bad1.mp4\n"
        f"{inputs / 'face.pdf'},{SPEECH},bad2.mp4\n"
        f"{PORTRAIT},{SPEECH},bad3.avi\n"
        f"{PORTRAIT},{inputs / 'silence.wav'},good2.mp4\n"
    )
    code, _, err = run_tm(monkeypatch, capsys, "render", "--manifest", tmp_path / "jobs.csv", *FAST)
    assert code == 1, err
    assert "2 rendered, 0 skipped, 3 failed" in err and "Traceback" not in err
    assert "audio file not found" in err and "is a PDF document" in err and "not .avi" in err
    assert written(tmp_path) == ["good1.mp4", "good2.mp4", "jobs.csv"]
