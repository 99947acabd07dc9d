"""MotionDiT and the teacher: save/load, guidance per condition, determinism, tiny training."""

import numpy as np
import pytest
import torch

from tmcli.core.config import load_preset
from tmcli.core.errors import InputError
from tmcli.motion.controls import Controls
from tmcli.motion.dit import MotionDiT
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import TeacherGenerator, guided_velocity, load_motion_dit, split_controls


def tiny_model(seed=0) -> MotionDiT:
    torch.manual_seed(seed)
    model = MotionDiT(hidden_size=32, num_layers=2, num_heads=2, window=12, context_frames=3, audio_context=1)
    for p in model.parameters():  # adaLN-zero starts at exactly zero output: make every path matter
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def inputs(model, seed=0, gaze=(0.0, 0.0), emotion=(0.0, 0.0, 0.0)):
    g = torch.Generator().manual_seed(seed)
    k, w = model.config.context_frames, model.config.window
    return {
        "audio": torch.randn(1, k + w, FEATURE_DIM, generator=g),
        "context": torch.randn(1, k, 35, generator=g),
        "has_context": torch.tensor([True]),
        "neutral": torch.zeros(1, 35),
        "controls": split_controls(torch.as_tensor(Controls(gaze, emotion).vector())[None]),
    }


@torch.no_grad()
def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.motion_mean.fill_(0.3)
    model.save_pretrained(tmp_path)
    loaded = load_motion_dit(tmp_path)
    assert (tmp_path / "config.json").is_file() and (
        tmp_path / "diffusion_pytorch_model.safetensors"
    ).is_file()
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name  # the round trip itself is exact
    x, t = (
        torch.randn(1, 12, 35),
        torch.tensor([500.0]),
    )  # outputs to float32 rounding (kernels follow the layout)
    np.testing.assert_allclose(
        model(x, t, **inputs(model)), loaded(x, t, **inputs(loaded)), rtol=1e-5, atol=1e-5
    )
    assert float(loaded.motion_mean[0]) == pytest.approx(0.3)


def test_loading_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a tm checkpoint"):
        load_motion_dit(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="cannot load"):
        load_motion_dit(tmp_path)


@torch.no_grad()
def test_dropping_a_condition_removes_exactly_its_influence():
    model = tiny_model()
    x, t = torch.randn(1, 12, 35), torch.tensor([400.0])
    names = model.condition_names
    drop_gaze = torch.zeros(1, len(names), dtype=torch.bool)
    drop_gaze[0, names.index("gaze")] = True
    a = model(x, t, **inputs(model, gaze=(0.5, 0.0)))
    b = model(x, t, **inputs(model, gaze=(-0.5, 0.0)))
    assert (a - b).abs().max() > 1e-3  # gaze matters when kept
    a = model(x, t, drop=drop_gaze, **inputs(model, gaze=(0.5, 0.0)))
    b = model(x, t, drop=drop_gaze, **inputs(model, gaze=(-0.5, 0.0)))
    torch.testing.assert_close(a, b)  # and not at all when dropped
    c = model(x, t, drop=drop_gaze, **inputs(model, gaze=(0.5, 0.0), emotion=(1.0, 0, 0)))
    assert (a - c).abs().max() > 1e-3  # while the other conditions still act


@torch.no_grad()
def test_guidance_per_condition_matches_its_definition():
    model = tiny_model()
    x, t = torch.randn(1, 12, 35), torch.tensor([300.0])
    names = model.condition_names
    inp = inputs(model, gaze=(0.4, 0.1))

    def drop(name):
        d = torch.zeros(1, len(names), dtype=torch.bool)
        d[0, names.index(name)] = True
        return d

    full = model(x, t, **inp)
    scales = {name: 1.0 for name in ("audio", "gaze", "emotion", "pose_intensity", "blink_rate")}
    torch.testing.assert_close(guided_velocity(model, x, t, inp, scales), full)  # all 1: plain conditional
    scales.update(audio=2.0, gaze=3.0)
    expected = (
        full
        + 1.0 * (full - model(x, t, drop=drop("audio"), **inp))
        + 2.0 * (full - model(x, t, drop=drop("gaze"), **inp))
    )
    torch.testing.assert_close(guided_velocity(model, x, t, inp, scales), expected, atol=1e-4, rtol=1e-4)


def test_teacher_is_deterministic_per_seed_and_covers_every_frame():
    model = tiny_model()
    settings = load_preset("tiny").generator
    features = (
        np.random.default_rng(0).normal(size=(31, FEATURE_DIM)).astype(np.float32)
    )  # 3 windows, the last one short
    gen = TeacherGenerator(model, settings)
    a, b = gen(features, Controls(), seed=3), gen(features, Controls(), seed=3)
    c = gen(features, Controls(), seed=4)
    assert a.shape == (31, 35) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    short = gen(features[:5], Controls(), seed=3)  # shorter than one window
    assert short.shape == (5, 35)
    just_over = gen(features[:14], Controls(), seed=3)  # the last window starts inside the first's context
    assert just_over.shape == (14, 35) and np.isfinite(just_over).all()
    np.testing.assert_array_equal(just_over[:12], gen(features[:12], Controls(), seed=3))


def test_windows_are_conditioned_on_the_previous_window():
    """Changing audio in window 1 changes window 2 only through its context frames."""
    model = tiny_model()
    gen = TeacherGenerator(model, load_preset("tiny").generator)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(24, FEATURE_DIM)).astype(np.float32)
    changed = features.copy()
    changed[:8] = rng.normal(
        size=(8, FEATURE_DIM)
    )  # far from window 2's own audio (frames 12-23, context 9-11)
    a, b = gen(features, Controls(), seed=0), gen(changed, Controls(), seed=0)
    assert np.abs(a[:12] - b[:12]).max() > 1e-3
    assert np.abs(a[12:] - b[12:]).max() > 1e-4  # window 2 still moved: it saw window 1's last frames
