"""Block-causal attention pieces shared by both latent spaces: the KV cache and sink + band attention.

A streamed chunk attends to the attention sink (the stream's first chunk, kept for ever) and a
rolling band of the chunks before it (TalkingMachines, Self-Forcing). Band keys are kept
before RoPE and rotated when attended, by their place in the window, so the distances a chunk
sees are the true ones and stay bounded however long the stream. The sink is scored without
the temporal rotation (the same at any distance), so it never drifts out of what training saw.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from diffusers.models.embeddings import apply_rotary_emb


@dataclass
class KVCache:
    """Per layer: the sink chunk's keys and values, and a rolling window of the chunks since."""

    num_layers: int
    window_chunks: int
    sink: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    band: list[deque] = field(default_factory=list)
    chunks: int = 0  # chunks written so far

    def __post_init__(self):
        self.sink = [None] * self.num_layers
        self.band = [deque(maxlen=self.window_chunks) for _ in range(self.num_layers)]

    def push(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        if self.sink[layer] is None:
            self.sink[layer] = (k, v)
        else:
            self.band[layer].append((k, v))

    def nbytes(self) -> int:
        tensors = [t for s in self.sink if s for t in s] + [t for b in self.band for kv in b for t in kv]
        return sum(t.numel() * t.element_size() for t in tensors)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_rope, k_rope,
           sink: tuple[torch.Tensor, torch.Tensor] | None, band_mask: torch.Tensor | None = None,
           sink_mask: torch.Tensor | None = None, q_sink: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention over rotated band keys and sink keys together.

    q: (B, H, N, d); k, v: (B, H, M, d) band keys (before RoPE) and values; masks are bool,
    True = may attend, (N, M) and (N, S). Sink keys are used as given and scored against
    q_sink (default: q unrotated); a video model passes both rotated in space only."""
    scale = q.shape[-1] ** -0.5
    scores = apply_rotary_emb(q, q_rope) @ apply_rotary_emb(k, k_rope).transpose(-1, -2) * scale
    if band_mask is not None:
        scores = scores.masked_fill(~band_mask, float("-inf"))
    values = v
    if sink is not None:
        sink_scores = (q if q_sink is None else q_sink) @ sink[0].transpose(-1, -2) * scale
        if sink_mask is not None:
            sink_scores = sink_scores.masked_fill(~sink_mask, float("-inf"))
        scores = torch.cat([sink_scores, scores], dim=-1)
        values = torch.cat([sink[1], v], dim=-2)
    return torch.softmax(scores, dim=-1) @ values
