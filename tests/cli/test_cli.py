"""The command line: bad input gets one clear line, a non-zero exit, no traceback, no file."""

import numpy as np
import pytest
from PIL import Image

from conftest import PORTRAIT, SPEECH, run_tm


def test_help_lists_the_commands(monkeypatch, capsys):
    code, out, _ = run_tm(monkeypatch, capsys, "--help")
    assert code == 0 and "render" in out and "eval" in out


def test_render_help_groups_its_options_in_panels(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_tm(monkeypatch, capsys, "render", "--help")
    assert code == 0
    panels = {
        "Input and output": "--motion-out",
        "Generator": "--cfg-scale",
        "Controls": "--pose-intensity",
        "Devices": "--disaggregate",
        "Batch": "--num-processes",
    }
    boxes = [box.split("╰")[0] for box in out.split("╭─ ")[1:]]  # "TITLE ───╮ ... ╰"
    for panel, option in panels.items():
        assert any(box.startswith(panel + " ") and option in box for box in boxes), panel


@pytest.mark.parametrize(
    "args",
    [("render", PORTRAIT), ("render", "--fps", "fast"), ("render", PORTRAIT, SPEECH, "--num-processes", "x")],
)
def test_usage_errors_are_reported_by_typer(monkeypatch, capsys, args):
    code, _, err = run_tm(monkeypatch, capsys, *args)
    assert (
        code == 2 and "Usage: tm render" in err and "Traceback" not in err and "error: unexpected" not in err
    )


@pytest.fixture()
def bad_inputs(tmp_path):
    (tmp_path / "notimage.png").write_text("not an image")
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.mp3").write_bytes(b"\xff\xfb\x90\x00" + b"\x13" * 400)
    return tmp_path


@pytest.mark.parametrize(
    "portrait,audio,out,message",
    [
        ("missing.png", SPEECH, "o.mp4", "portrait not found"),
        ("notimage.png", SPEECH, "o.mp4", "cannot read"),
        ("wall.png", SPEECH, "o.mp4", "no face found"),
        (PORTRAIT, "missing.wav", "o.mp4", "audio file not found"),
        (PORTRAIT, "empty.wav", "o.mp4", "audio"),
        (PORTRAIT, "corrupt.mp3", "o.mp4", "audio"),
        (PORTRAIT, SPEECH, "notimage.png/o.mp4", "a file of that name is in the way"),
    ],
)
def test_bad_input_is_one_clear_line(monkeypatch, capsys, bad_inputs, portrait, audio, out, message):
    monkeypatch.chdir(bad_inputs)
    code, stdout, err = run_tm(monkeypatch, capsys, "render", portrait, audio, "-o", out, "-q")
    assert code != 0
    assert message in err.splitlines()[0]
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # the error, maybe a hint
    assert not (bad_inputs / out).exists()
    assert not list(bad_inputs.glob("*.partial.mp4"))


def test_unknown_preset_and_bad_size(monkeypatch, capsys, tmp_path):
    code, _, err = run_tm(
        monkeypatch, capsys, "render", PORTRAIT, SPEECH, "--preset", "nope", "-o", tmp_path / "o.mp4"
    )
    assert code == 2 and "preset nope not found" in err
    code, _, err = run_tm(
        monkeypatch, capsys, "render", PORTRAIT, SPEECH, "--size", "63", "-o", tmp_path / "o.mp4"
    )
    assert code == 2 and "size" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--generator", "teacher", "--checkpoint", "nowhere"), "not a tm checkpoint"),
        (("--generator", "oracle"), "unknown generator"),
        (("--emotion", "angry"), "unknown emotion"),
        (("--emotion", "happy:x"), "must be a number"),
        (("--gaze", "3,0"), "gaze must be in"),
        (("--gaze", "left"), "--gaze takes two numbers"),
        (("--blink-rate", "0"), "blink rate"),
    ],
)
def test_bad_generator_options(monkeypatch, capsys, tmp_path, extra, message):
    out = tmp_path / "o.mp4"
    code, _, err = run_tm(monkeypatch, capsys, "render", PORTRAIT, SPEECH, "-o", out, "-q", *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_training_and_data_commands(monkeypatch, capsys, tmp_path):
    code, _, err = run_tm(monkeypatch, capsys, "train", tmp_path, "-o", tmp_path / "ckpt", "-q")
    assert code == 2 and "not a tm data set" in err
    code, _, err = run_tm(monkeypatch, capsys, "data", "synth", tmp_path / "d", "--languages", "xx", "-q")
    assert code == 2 and "unknown language" in err
    code, _, err = run_tm(monkeypatch, capsys, "data", "synth", tmp_path / "d", "--minutes", "0", "-q")
    assert code == 2 and "--minutes must be positive" in err


def test_data_commands_write_a_data_set(monkeypatch, capsys, tmp_path):
    code, _, err = run_tm(
        monkeypatch,
        capsys,
        "data",
        "synth",
        tmp_path / "d",
        "--minutes",
        "0.05",
        "--languages",
        "en-us",
        "--workers",
        "1",
    )
    assert code in (0, None), err
    from tmcli.train.shards import read_manifest

    assert read_manifest(tmp_path / "d")["frames"] >= 0.05 * 60 * 25
    code, _, err = run_tm(monkeypatch, capsys, "data", "extract", tmp_path / "d2")
    assert code == 2 and "at least one video" in err


def test_a_forked_worker_dies_of_sigterm_quietly():
    """Workers forked by tm (tm data synth's pool) inherit main()'s handler: a pool terminating
    them must not raise Interrupted and print a traceback in each; they die as by default."""
    import functools
    import multiprocessing
    import os
    import signal
    import time

    from tmcli.cli.app import _interrupt

    previous = signal.signal(signal.SIGTERM, functools.partial(_interrupt, os.getpid()))
    try:
        worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
        worker.start()
        time.sleep(0.5)  # CPython drops a signal that lands between fork and the child's start
        worker.terminate()
        worker.join(10)
        assert worker.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
