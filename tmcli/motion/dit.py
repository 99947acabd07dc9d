"""MotionDiT: a diffusion transformer over motion tokens, one token per video frame (VASA-1).

Each frame's token carries its noisy motion and the audio it hears (its own feature frame and
`audio_context` frames either side). A window of `window` frames is generated at once,
preceded by `context_frames` clean frames of the previous window so windows join without seams.
Global conditions - the diffusion time, the face's neutral motion and the controls (gaze,
emotion, head-motion intensity, blink rate) - modulate every block (adaLN-zero, as in DiT).
Every condition, and the audio, can be swapped for a learned "null" per sample: training drops
each at random, and sampling uses that for classifier-free guidance per condition.

The network predicts the flow-matching velocity (noise - clean) in normalised motion units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import (
    TimestepEmbedding,
    Timesteps,
    apply_rotary_emb,
    get_1d_rotary_pos_embed,
)
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from tmcli.face.rig import MOTION_DIM
from tmcli.motion.controls import GROUPS
from tmcli.speech.features import FEATURE_DIM


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, dim) -> queries, keys, values (B, heads, N, dim / heads), before RoPE."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, dim / heads) attention output -> (B, N, dim)."""
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = self.project(x)
        q, k = apply_rotary_emb(q, rope), apply_rotary_emb(k, rope)
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


class Block(nn.Module):
    """Pre-norm transformer block whose norms are shifted, scaled and gated by the conditions."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def modulate(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """shift, scale, gate for attention then MLP; cond is (B, dim), or (B, N, dim) per token."""
        mod = self.modulation(cond)
        return (mod.unsqueeze(1) if mod.dim() == 2 else mod).chunk(6, dim=-1)

    def forward(self, x, cond, rope, mask=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulate(cond)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rope, mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class MotionDiT(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        motion_dim: int = MOTION_DIM,
        audio_dim: int = FEATURE_DIM,
        control_dims: dict[str, int] | None = None,
        hidden_size: int = 192,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        window: int = 100,
        context_frames: int = 10,
        audio_context: int = 2,
        fps: float = 25.0,
    ):
        super().__init__()
        control_dims = dict(sorted((control_dims or GROUPS).items()))  # one order, however it was saved
        self.register_to_config(control_dims=control_dims)  # saved explicitly: the default may change
        d = hidden_size
        self.motion_in = nn.Linear(motion_dim, d)
        self.audio_in = nn.Sequential(
            nn.Linear(audio_dim * (2 * audio_context + 1), d), nn.SiLU(), nn.Linear(d, d)
        )
        self.token_kind = nn.Embedding(3, d)  # 0 generated, 1 context, 2 missing context
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, d)
        self.neutral_in = nn.Linear(motion_dim, d)
        self.control_in = nn.ModuleDict({name: nn.Linear(dim, d) for name, dim in control_dims.items()})
        self.null = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(d)) for name in ("audio", "neutral", *control_dims)}
        )
        self.blocks = nn.ModuleList(Block(d, num_heads, mlp_ratio) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, motion_dim)
        for layer in (self.out_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # motion is modelled in per-channel standardised units; the statistics travel with the weights
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))

    @property
    def condition_names(self) -> tuple[str, ...]:
        return ("audio", "neutral", *self.config.control_dims)

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    def audio_windows(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, F * (2r + 1)): each frame with its neighbours (zeros past the ends)."""
        r = self.config.audio_context
        padded = F.pad(audio, (0, 0, r, r))
        return torch.cat([padded[:, i : i + audio.shape[1]] for i in range(2 * r + 1)], dim=-1)

    def _drop(self, emb: torch.Tensor, name: str, drop: torch.Tensor | None) -> torch.Tensor:
        if drop is None:
            return emb
        mask = drop[:, self.condition_names.index(name)].view(-1, *([1] * (emb.dim() - 1)))
        return torch.where(mask, self.null[name].to(emb.dtype), emb)

    def condition(
        self,
        timestep: torch.Tensor,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, hidden): the diffusion time and the global conditions, ready to modulate blocks."""
        cond = self.time_embed(self.time_proj(timestep).to(self.dtype))
        cond = cond + self._drop(self.neutral_in(neutral), "neutral", drop)
        for name, layer in self.control_in.items():
            cond = cond + self._drop(layer(controls[name]), name, drop)
        return F.silu(cond)

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return get_1d_rotary_pos_embed(
            self.config.hidden_size // self.config.num_heads,
            positions,
            use_real=True,
            repeat_interleave_real=True,
        )

    def output(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Final modulated norm and projection of the generated tokens -> velocity; cond (B, d) or per
        token."""
        mod = self.out_modulation(cond)
        shift, scale = (mod.unsqueeze(1) if mod.dim() == 2 else mod).chunk(2, dim=-1)
        return self.out(self.norm_out(x) * (1 + scale) + shift)

    def forward(
        self,
        noisy: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        context: torch.Tensor,
        has_context: torch.Tensor,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        drop: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity for `noisy` (B, W, D), normalised units.

        audio: (B, K + W, F) features of the context frames then the window's frames;
        context: (B, K, D) normalised clean motion of the previous frames; has_context: (B,) bool,
        False where there are none (a clip's first window: the context tokens are "missing");
        timestep: (B,) sigma * 1000; drop: (B, len(condition_names)) bool, True = use the null.
        """
        b, w, _ = noisy.shape
        k = self.config.context_frames
        ctx = torch.where(
            has_context.view(b, 1, 1),
            self.motion_in(context) + self.token_kind.weight[1],
            self.token_kind.weight[2],
        )
        x = torch.cat([ctx, self.motion_in(noisy) + self.token_kind.weight[0]], dim=1)
        x = x + self._drop(self.audio_in(self.audio_windows(audio)), "audio", drop)
        cond = self.condition(timestep, neutral, controls, drop)
        rope = self.rope(torch.arange(k + w, device=x.device))
        for block in self.blocks:
            x = block(x, cond, rope, mask)
        return self.output(x[:, k:], cond)
