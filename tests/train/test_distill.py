"""Distillation on the toy data set: the student learns from the teacher, resumes exactly, and streams."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from tmcli.core.config import load_preset
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.controls import Controls
from tmcli.stream.generator import StreamingGenerator, load_motion_dit
from tmcli.train.distill import distill
from tmcli.train.objectives import clips_of, new_student, teacher_ode
from tmcli.train.trainer import train


@pytest.fixture(scope="module")
def tiny_teacher(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    preset = load_preset("tiny")
    train(toy_data, out, preset.model, dataclasses.replace(preset.train, steps=60))
    return out


@pytest.mark.slow
def test_distillation_runs_both_stages_and_the_student_streams(toy_data, tiny_teacher, tmp_path):
    preset = load_preset("tiny")
    report = distill(tiny_teacher, toy_data, tmp_path, preset.distill, preset.generator)
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert report.steps == 20 and [r["stage"] for r in rows] == ["ode"] * 5 + ["dmd"] * 5
    regression = [float(r["regression"]) for r in rows]
    assert np.mean(regression[3:5]) < np.mean(regression[:2])  # stage 1 fits the teacher's pairs
    assert all(np.isfinite(float(r["fake"])) for r in rows[5:])
    student = load_motion_dit(tmp_path)
    assert isinstance(student, CausalMotionDiT) and student.config.denoising_steps == 2
    features = np.random.default_rng(0).normal(size=(37, student.config.audio_dim)).astype(np.float32)
    motion = StreamingGenerator(student)(features, Controls(), seed=0)
    assert motion.shape == (37, 35) and np.isfinite(motion).all()


def test_the_self_forcing_stage_regresses_on_the_students_own_rollouts(toy_data, tiny_teacher, tmp_path):
    preset = load_preset("tiny")
    settings = dataclasses.replace(preset.distill, ode_steps=4, self_forcing_steps=6, dmd_steps=0)
    report = distill(tiny_teacher, toy_data, tmp_path, settings, preset.generator)
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert report.steps == 10 and [r["stage"] for r in rows] == ["ode"] * 2 + ["self"] * 3
    assert all(np.isfinite(float(r["regression"])) for r in rows)
    saved = json.loads((tmp_path / "distill.json").read_text())["distill"]
    assert saved["self_forcing_steps"] == 6


@pytest.mark.slow
def test_resumed_distillation_equals_an_uninterrupted_run(toy_data, tiny_teacher, tmp_path):
    preset = load_preset("tiny")
    whole, split = tmp_path / "whole", tmp_path / "split"
    distill(tiny_teacher, toy_data, whole, preset.distill, preset.generator)

    def stop_at_15(stage, step, total, loss):
        if stage == "dmd" and step == 15:
            raise KeyboardInterrupt  # the last checkpoint is at step 10, the end of stage 1

    with pytest.raises(KeyboardInterrupt):
        distill(tiny_teacher, toy_data, split, preset.distill, preset.generator, on_progress=stop_at_15)
    distill(tiny_teacher, toy_data, split, preset.distill, preset.generator)
    a, b = CausalMotionDiT.from_pretrained(whole), CausalMotionDiT.from_pretrained(split)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_the_teacher_ode_passes_through_the_students_noise_levels(toy_data, tiny_teacher):
    from tmcli.train.windows import WindowStream

    preset = load_preset("tiny")
    teacher = load_motion_dit(tiny_teacher)
    student = new_student(teacher, preset.distill)
    batch = next(WindowStream(toy_data, teacher.config.window, teacher.config.context_frames, 2)())
    noise = torch.randn(2, teacher.config.window, 35)
    states, clean = teacher_ode(
        teacher, clips_of(batch, teacher, student), noise, student.sigmas, preset.generator
    )
    assert states.shape == (2, 2, teacher.config.window, 35)
    torch.testing.assert_close(states[:, 0], noise)  # sigma 1 is the noise itself
    assert not torch.allclose(states[:, 1], noise) and not torch.allclose(clean, states[:, 1])


def test_velocity_term_penalises_jitter_that_the_per_frame_error_cannot_tell_apart():
    """Two students with the same per-frame error: one off by a constant, one jittering around the
    teacher. Only the velocity term tells them apart."""
    from types import SimpleNamespace

    from tmcli.speech.features import FEATURE_DIM
    from tmcli.train.objectives import regression_loss

    b, w, d, e = 2, 10, 35, 0.1
    clean = torch.randn(b, w, d, generator=torch.Generator().manual_seed(0))
    states = torch.randn(b, 2, w, d, generator=torch.Generator().manual_seed(1))
    pairs = {
        "states": states,
        "clean": clean,
        "teacher_audio": torch.zeros(b, 1, FEATURE_DIM),
        "student_audio": torch.zeros(b, 1, FEATURE_DIM),
        "neutral": torch.zeros(b, d),
        "controls": torch.zeros(b, 7),
    }

    def student(error: torch.Tensor):
        def forward_sequence(clean, noisy, timestep, **_):  # v such that noisy - sigma v = clean + error
            sigma = (timestep / 1000).repeat_interleave(5, dim=1)[..., None]
            return (noisy - clean - error) / sigma

        return SimpleNamespace(
            sigmas=[1.0, 0.5], config=SimpleNamespace(chunk_frames=5), forward_sequence=forward_sequence
        )

    offset = torch.full((b, w, d), e)
    jitter = e * (-1.0) ** torch.arange(w)[None, :, None].expand(b, w, d)
    index = torch.arange(b)
    losses = {
        name: [
            regression_loss(student(err), pairs, index, torch.Generator().manual_seed(2), weight).item()
            for weight in (0.0, 1.0)
        ]
        for name, err in (("offset", offset), ("jitter", jitter))
    }
    assert (
        losses["offset"][0] == pytest.approx(e**2, rel=1e-4) == pytest.approx(losses["jitter"][0], rel=1e-4)
    )
    assert losses["offset"][1] == pytest.approx(e**2, rel=1e-4)  # a steady error moves nothing
    assert losses["jitter"][1] == pytest.approx(e**2 + (2 * e) ** 2, rel=1e-4)


def test_data_regression_counts_the_mouth_on_valid_frames_only():
    """The data term pulls the student's articulation towards the data's own motion at its
    refining level; head pose, blinks and gaze stay the teacher's, and padded frames count for
    nothing."""
    from types import SimpleNamespace

    from tmcli.face.rig import ARTICULATION, INDEX
    from tmcli.speech.features import FEATURE_DIM
    from tmcli.train.objectives import data_regression_loss

    b, w, d, e = 2, 10, 35, 0.3
    data = torch.randn(b, w, d, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(b, w, dtype=torch.bool)
    pairs = {
        "data": data,
        "valid": valid,
        "teacher_audio": torch.zeros(b, 1, FEATURE_DIM),
        "student_audio": torch.zeros(b, 1, FEATURE_DIM),
        "neutral": torch.zeros(b, d),
        "controls": torch.zeros(b, 7),
    }

    def student(error: torch.Tensor):
        def forward_sequence(clean, noisy, timestep, **_):  # v such that noisy - sigma v = the data + error
            sigma = (timestep / 1000).repeat_interleave(5, dim=1)[..., None]
            torch.testing.assert_close(clean, data)  # the data is the past it is teacher-forced on
            assert (timestep == 500).all()  # the refining level only: pure noise is where blinks come from
            return (noisy - data - error) / sigma

        return SimpleNamespace(
            sigmas=[1.0, 0.5], config=SimpleNamespace(chunk_frames=5), forward_sequence=forward_sequence
        )

    def loss(channel: str, frames: slice = slice(None), pairs: dict = pairs) -> float:
        error = torch.zeros(b, w, d)
        error[:, frames, INDEX[channel]] = e
        return data_regression_loss(
            student(error), pairs, torch.arange(b), torch.Generator().manual_seed(1)
        ).item()

    assert loss("jawOpen") == pytest.approx(e**2 / len(ARTICULATION), rel=1e-4)
    assert loss("mouthClose", slice(0, 5)) == pytest.approx(e**2 / len(ARTICULATION) / 2, rel=1e-4)
    for channel in ("headYaw", "eyeBlinkLeft", "gazeX"):
        assert loss(channel) == pytest.approx(0.0, abs=1e-10)
    padded = {**pairs, "valid": torch.arange(w).expand(b, w) < 5}
    assert loss("jawOpen", slice(5, None), padded) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="predate"):
        loss("jawOpen", pairs={k: v for k, v in pairs.items() if k != "data"})
    one_step = SimpleNamespace(sigmas=[1.0], config=SimpleNamespace(chunk_frames=5))
    with pytest.raises(ValueError, match="at least 2 student steps"):
        data_regression_loss(one_step, pairs, torch.arange(b), torch.Generator())


def test_the_data_term_is_weighted_into_the_first_stage(toy_data, tiny_teacher, tmp_path):
    preset = load_preset("tiny")
    settings = dataclasses.replace(preset.distill, ode_steps=6, dmd_steps=0, data_weight=2.0, log_every=1)
    distill(tiny_teacher, toy_data, tmp_path, settings, preset.generator)
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert [r["stage"] for r in rows] == ["ode"] * 6
    for r in rows:
        assert float(r["data"]) > 0
        assert float(r["loss"]) == pytest.approx(float(r["regression"]) + 2.0 * float(r["data"]), abs=2e-5)


def test_a_one_step_student_leaves_the_presets_data_term_out(
    toy_data, tiny_teacher, tmp_path, monkeypatch, capsys
):
    import sys

    from tmcli.cli.app import main
    from tmcli.core.config import PRESET_DIR

    preset = tmp_path / "with_data.toml"
    preset.write_text(
        (PRESET_DIR / "tiny.toml").read_text() + "data_weight = 4.0\n"
    )  # [distill] is the last table
    assert load_preset(str(preset)).distill.data_weight == 4.0

    def distill_cli(out, *args):
        monkeypatch.setattr(
            sys,
            "argv",
            [
                "tm",
                "distill",
                str(tiny_teacher),
                str(toy_data),
                "-o",
                str(out),
                "--preset",
                str(preset),
                "--steps",
                "2",
                "--dmd-steps",
                "0",
                *args,
            ],
        )
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code, capsys.readouterr()

    code, printed = distill_cli(tmp_path / "one", "--student-steps", "1")
    assert code == 0 and "data term is left out" in " ".join(printed.err.split())
    saved = json.loads((tmp_path / "one" / "distill.json").read_text())["distill"]
    assert saved["student_steps"] == 1 and saved["data_weight"] == 0.0
    code, printed = distill_cli(tmp_path / "two")
    assert code == 0 and "left out" not in printed.err
    assert json.loads((tmp_path / "two" / "distill.json").read_text())["distill"]["data_weight"] == 4.0
