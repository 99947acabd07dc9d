"""Teacher training on the toy data set: the loss falls, resuming equals not stopping, and
the CLI wires data -> train -> render."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tmcli.core.config import load_preset
from tmcli.train.trainer import train


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "diffusion_pytorch_model.safetensors"))


def test_tiny_training_lowers_the_loss(toy_data, tmp_path):
    preset = load_preset("tiny")
    settings = dataclasses.replace(preset.train, steps=80, log_every=10)
    report = train(toy_data, tmp_path, preset.model, settings)
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert report.steps == 80 and len(rows) == 8
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "config.json").is_file()


def test_resumed_training_equals_an_uninterrupted_run(toy_data, tmp_path):
    preset = load_preset("tiny")
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(toy_data, whole, preset.model, preset.train)  # 40 steps, checkpoints at 20 and 40

    def stop_at_25(step, total, loss):
        if step == 25:
            raise KeyboardInterrupt  # Ctrl-C: the last checkpoint is at step 20

    with pytest.raises(KeyboardInterrupt):
        train(toy_data, split, preset.model, preset.train, on_step=stop_at_25)
    report = train(toy_data, split, preset.model, preset.train)  # resumes at 20
    assert report.steps == 40
    a, b = _weights(whole), _weights(split)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    steps = [int(r["step"]) for r in csv.DictReader(open(split / "loss.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 40


def test_fine_tuning_starts_from_the_given_teacher(toy_data, tmp_path):
    """--init: the weights begin as the given teacher's (a near-zero learning rate keeps them
    there), train.json names it, and a rerun resumes the fine-tune."""
    preset = load_preset("tiny")
    first = tmp_path / "first"
    train(toy_data, first, preset.model, dataclasses.replace(preset.train, steps=20))
    settings = dataclasses.replace(preset.train, steps=2, learning_rate=1e-12, warmup_steps=0)
    tuned = tmp_path / "tuned"
    train(toy_data, tuned, preset.model, settings, init=first)
    a, b = _weights(first), _weights(tuned)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    scratch = tmp_path / "scratch"
    train(toy_data, scratch, preset.model, settings)
    assert any(not torch.allclose(a[n], _weights(scratch)[n]) for n in a if "motion_" not in n)
    record = json.loads((tuned / "train.json").read_text())
    assert record["init"] == str(first.resolve())
    report = train(toy_data, tuned, preset.model, dataclasses.replace(settings, steps=3))  # resumed
    assert report.steps == 3


@pytest.mark.slow
def test_cli_train_then_render_with_the_teacher(toy_data, tmp_path):
    from tmcli.cli.app import app
    from tmcli.core.media import read_video_frames

    from conftest import PORTRAIT, SPEECH

    runner = CliRunner()
    ckpt = tmp_path / "ckpt"
    result = runner.invoke(
        app, ["train", str(toy_data), "-o", str(ckpt), "--preset", "tiny", "--steps", "10", "-q"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "teacher.mp4"
    result = runner.invoke(
        app,
        [
            "render",
            str(PORTRAIT),
            str(SPEECH),
            "-o",
            str(out),
            "--generator",
            "teacher",
            "--checkpoint",
            str(ckpt),
            "--size",
            "128",
            "--crop",
            "--emotion",
            "happy",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    frames = read_video_frames(out)
    assert next(frames) == 25 and sum(1 for _ in frames) == 100
