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
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb

# a fixed-shape chunk step's cache, as graph inputs (whether to commit the chunk, then the sink's and
# the band's keys, values and validity) and outputs (the same, updated): motion and video alike
CACHE_INPUTS = ("write", "sink_keys", "sink_values", "band_keys", "band_values", "sink_valid", "band_valid")
CACHE_OUTPUTS = tuple(f"{name}_out" for name in CACHE_INPUTS[1:])


def empty_cache_inputs(
    layers: int, heads: int, sink_tokens: int, band_slots: int, head_dim: int, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """A fixed-shape step's cache inputs in CACHE_INPUTS order, empty: no write, nothing valid."""
    sink = torch.zeros(layers, 1, heads, sink_tokens, head_dim, dtype=dtype)
    band = torch.zeros(layers, 1, heads, band_slots, head_dim, dtype=dtype)
    write, sink_valid = torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
    band_valid = torch.zeros(band_slots, dtype=torch.bool)
    return write, sink, sink.clone(), band, band.clone(), sink_valid, band_valid


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


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_rope,
    k_rope,
    sink: tuple[torch.Tensor, torch.Tensor] | None,
    band_mask: torch.Tensor | None = None,
    sink_mask: torch.Tensor | None = None,
    q_sink: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention over rotated band keys and sink keys together, in one fused SDPA call.

    q: (B, H, N, d); k, v: (B, H, M, d) band keys (before RoPE) and values; masks are bool,
    True = may attend, (N, M) and (N, S). Sink keys are used as given and scored against
    q_sink (default: q unrotated); a video model passes both rotated in space only. The two
    kinds of score share one softmax by stacking the two query versions along the head
    dimension, [q_sink, q_rotated], against [sink key, 0] and [0, rotated band key]."""
    q_band, k_band = apply_rotary_emb(q, q_rope), apply_rotary_emb(k, k_rope)
    if sink is None:
        return F.scaled_dot_product_attention(q_band, k_band, v, attn_mask=band_mask)
    sink_keys, sink_values = sink
    queries = torch.cat([q if q_sink is None else q_sink, q_band], dim=-1)
    keys = torch.cat(
        [
            torch.cat([sink_keys, torch.zeros_like(sink_keys)], dim=-1),
            torch.cat([torch.zeros_like(k_band), k_band], dim=-1),
        ],
        dim=-2,
    )
    mask = None
    if band_mask is not None or sink_mask is not None:
        n, s, m = q.shape[-2], sink_keys.shape[-2], k.shape[-2]
        ones = torch.ones(n, s + m, dtype=torch.bool, device=q.device)
        mask = torch.cat(
            [
                ones[:, :s] if sink_mask is None else sink_mask.expand(n, s),
                ones[:, s:] if band_mask is None else band_mask.expand(n, m),
            ],
            dim=-1,
        )
    return F.scaled_dot_product_attention(
        queries, keys, torch.cat([sink_values, v], dim=-2), attn_mask=mask, scale=q.shape[-1] ** -0.5
    )


def attend_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_rope,
    k_rope,
    sink: tuple[torch.Tensor, torch.Tensor] | None,
    q_sink: torch.Tensor | None,
    blocks: list[tuple[slice, list[slice], bool]],
) -> torch.Tensor:
    """`attend` under a block-structured mask, one block of queries at a time and unmasked.

    blocks: per block of query tokens, the blocks of keys it sees and whether it sees the sink;
    together they cover every query once, in order. A bool mask makes SDPA leave its fused
    kernel for the math path (three quarters of a video student's training step on the CPU)."""

    def rows(table, parts):
        return tuple(torch.cat([t[part] for part in parts]) for t in table)

    out = []
    for queries, keys, sees_sink in blocks:
        out.append(
            attend(
                q[:, :, queries],
                torch.cat([k[:, :, part] for part in keys], dim=-2),
                torch.cat([v[:, :, part] for part in keys], dim=-2),
                rows(q_rope, [queries]),
                rows(k_rope, keys),
                sink if sees_sink else None,
                q_sink=None if q_sink is None or not sees_sink else q_sink[:, :, queries],
            )
        )
    return torch.cat(out, dim=-2)


def commit_chunk(
    write: torch.Tensor,
    new_keys: torch.Tensor,
    new_values: torch.Tensor,
    sink_keys: torch.Tensor,
    sink_values: torch.Tensor,
    band_keys: torch.Tensor,
    band_values: torch.Tensor,
    sink_valid: torch.Tensor,
    band_valid: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """A fixed-shape cache (the tensors export takes and gives) after one chunk step.

    With write (1,) true, the chunk's keys and values (L, B, H, n, d) become the sink if there
    is none yet, else the band's newest n slots, its oldest n dropped; otherwise the cache
    comes back as it was. -> sink keys, sink values, band keys, band values, sink_valid, band_valid."""
    n = new_keys.shape[-2]
    first, later = write & ~sink_valid, write & sink_valid  # (1,): the sink now, or the band

    def roll(band, new):
        return torch.where(later, torch.cat([band[..., n:, :], new], dim=-2), band)

    rolled_valid = torch.cat([band_valid[n:], torch.ones_like(band_valid[:n])])
    return (
        torch.where(first, new_keys, sink_keys),
        torch.where(first, new_values, sink_values),
        roll(band_keys, new_keys),
        roll(band_values, new_values),
        sink_valid | write,
        (later & rolled_valid) | (~later & band_valid),
    )
