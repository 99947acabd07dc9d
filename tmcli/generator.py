"""Learned generators: audio features + controls -> motion, with a trained MotionDiT.

`TeacherGenerator` samples the bidirectional teacher over consecutive windows, each one
conditioned on the last frames of the window before it (VASA-1's sliding windows), with the
flow-matching Euler sampler from diffusers and classifier-free guidance per condition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import GeneratorSettings
from .controls import GROUPS, Controls
from .errors import InputError
from .face.motion import MOTION_DIM
from .features import FEATURE_DIM, silence_features
from .nn.motion_dit import MotionDiT


def load_motion_dit(path: str | Path, device: str = "cpu") -> MotionDiT:
    """A MotionDiT saved with save_pretrained (config.json + safetensors), with a clear error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path} is not a tm checkpoint (no config.json)",
                         hint="train one with `tm train DATA -o CKPT`")
    try:
        model = MotionDiT.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"cannot load the checkpoint in {path}: {str(exc).splitlines()[0]}") from None
    if model.config.audio_dim != FEATURE_DIM:
        raise InputError(f"{path} was trained on {model.config.audio_dim} audio features per frame; "
                         f"this tm makes {FEATURE_DIM}", hint="train it again with this version of tm")
    return model.to(device).eval()


def split_controls(vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, CONTROL_DIM) -> the model's control groups."""
    out, start = {}, 0
    for name, dim in GROUPS.items():
        out[name] = vector[:, start: start + dim]
        start += dim
    return out


def guidance_scales(settings: GeneratorSettings) -> dict[str, float]:
    return {"audio": settings.cfg_audio, **{name: getattr(settings, f"cfg_{name}") for name in GROUPS}}


def guided_velocity(model: MotionDiT, x: torch.Tensor, timestep: torch.Tensor, inputs: dict,
                    scales: dict[str, float]) -> torch.Tensor:
    """Velocity with classifier-free guidance per condition, in one batched call:
    v = v(all) + sum_c (s_c - 1) * (v(all) - v(all but c))."""
    guided = [name for name, s in scales.items() if s != 1.0]
    names = model.condition_names
    drop = torch.zeros(1 + len(guided), len(names), dtype=torch.bool, device=x.device)
    for row, name in enumerate(guided, start=1):
        drop[row, names.index(name)] = True
    n = drop.shape[0]
    batch = {k: (v.expand(n, *v.shape[1:]) if torch.is_tensor(v) else {c: t.expand(n, *t.shape[1:]) for c, t in v.items()})
             for k, v in inputs.items()}
    v = model(x.expand(n, *x.shape[1:]), timestep.expand(n), drop=drop, **batch)
    out = v[:1]
    for row, name in enumerate(guided, start=1):
        out = out + (scales[name] - 1.0) * (v[:1] - v[row: row + 1])
    return out


class TeacherGenerator:
    """Sliding-window sampling of the bidirectional teacher."""

    def __init__(self, model: MotionDiT, settings: GeneratorSettings | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.model = model
        self.settings = settings or GeneratorSettings()
        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)

    @torch.no_grad()
    def __call__(self, features: np.ndarray, controls: Controls, seed: int = 0,
                 neutral: np.ndarray | None = None) -> np.ndarray:
        """features (T, F) from features.generator_features -> motion (T, MOTION_DIM)."""
        model, cfg = self.model, self.model.config
        w, k = cfg.window, cfg.context_frames
        device = model.motion_mean.device
        total = len(features)
        padded = np.concatenate([silence_features(k), features, silence_features(max(0, w - total))])
        generator = torch.Generator().manual_seed(seed)
        neutral_motion = torch.as_tensor(neutral if neutral is not None else np.zeros(MOTION_DIM), dtype=torch.float32)
        const = {"neutral": model.normalize(neutral_motion.to(device))[None],
                 "controls": split_controls(torch.as_tensor(controls.vector(), device=device)[None])}
        out = torch.zeros(max(total, w), MOTION_DIM, device=device)  # normalised
        done = 0
        while done < total:
            start = min(done, max(total, w) - w)  # the last window ends at the clip's end
            has_context = start >= k  # as in training: a window this close to the start has no full context
            context = out[start - k: start] if has_context else torch.zeros(k, MOTION_DIM, device=device)
            audio = torch.as_tensor(padded[start: start + k + w], device=device)  # padded is offset by k
            inputs = {"audio": audio[None], "context": context[None],
                      "has_context": torch.tensor([has_context], device=device), **const}
            noise = torch.randn(1, w, MOTION_DIM, generator=generator).to(device)
            window = self._sample(noise, inputs)
            out[done: start + w] = window[0, done - start:]
            done = start + w
        return model.denormalize(out[:total]).cpu().numpy()

    def _sample(self, x: torch.Tensor, inputs: dict) -> torch.Tensor:
        scales = guidance_scales(self.settings)
        self.scheduler.set_timesteps(self.settings.steps, device=x.device)
        for t in self.scheduler.timesteps:
            v = guided_velocity(self.model, x, t.expand(1), inputs, scales)
            x = self.scheduler.step(v, t, x).prev_sample
        return x
