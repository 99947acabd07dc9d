"""Wan attention processors for streaming: block-causal self-attention over a KV cache (chunks see
themselves, the window before them and the sink), and cross-attention whose prompt keys and
values are projected once per stream. `AttentionPlan` says which of the three plans a call runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_wan import WanAttention

from tmcli.core.attention import KVCache, attend, attend_blocks


@dataclass
class AttentionPlan:
    """What the attention processors do in one pass; handed to every block (see module doc)."""

    rope: tuple[torch.Tensor, torch.Tensor]  # queries' (N, d) cos/sin, full 3D rotation
    key_rope: tuple[torch.Tensor, torch.Tensor] | None = None  # band + own keys' (step); None: = rope
    space_rope: tuple[torch.Tensor, torch.Tensor] | None = None  # queries', spatial only (for the sink)
    sink_rope: tuple[torch.Tensor, torch.Tensor] | None = None  # sink keys', spatial only
    band_mask: torch.Tensor | None = None  # (N, M) and (N, S) bool
    sink_mask: torch.Tensor | None = None
    blocks: list | None = None  # forward_sequence: the masks as blocks (attention.attend_blocks)
    sink_tokens: slice | None = None  # forward_sequence: where the sink's keys are among the tokens
    cache: KVCache | None = None  # step
    write: bool = False  # step: keep this pass's keys and values
    cross: list = field(default_factory=list)  # per layer: prompt (and image) keys and values


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    return x.unflatten(2, (heads, -1)).transpose(1, 2)


class CausalSelfAttnProcessor:
    """Self-attention for one layer under an `AttentionPlan` (bidirectional, cached or masked)."""

    def __init__(self, layer: int):
        self.layer = layer

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        rotary_emb: AttentionPlan | None = None,
    ) -> torch.Tensor:
        plan = rotary_emb  # WanTransformerBlock hands attn1 its rotary_emb argument: the plan
        q = split_heads(attn.norm_q(attn.to_q(hidden_states)), attn.heads)
        k = split_heads(attn.norm_k(attn.to_k(hidden_states)), attn.heads)
        v = split_heads(attn.to_v(hidden_states), attn.heads)
        sink, q_sink = None, None
        if plan.cache is not None:
            cached = plan.cache.sink[self.layer]
            if cached is not None:
                sink = (apply_rotary_emb(cached[0], plan.sink_rope), cached[1])
            past = list(plan.cache.band[self.layer])
            keys = torch.cat([kv[0] for kv in past] + [k], dim=-2)
            values = torch.cat([kv[1] for kv in past] + [v], dim=-2)
            if plan.write:
                plan.cache.push(self.layer, k, v)
        else:
            keys, values = k, v
            if plan.sink_tokens is not None:
                sink = (
                    apply_rotary_emb(k[:, :, plan.sink_tokens], plan.sink_rope),
                    v[:, :, plan.sink_tokens],
                )
        if sink is not None:
            q_sink = apply_rotary_emb(q, plan.space_rope)
        if plan.blocks is not None:
            y = attend_blocks(
                q, keys, values, plan.rope, plan.key_rope or plan.rope, sink, q_sink, plan.blocks
            )
        else:
            y = attend(
                q,
                keys,
                values,
                plan.rope,
                plan.key_rope or plan.rope,
                sink,
                plan.band_mask,
                plan.sink_mask,
                q_sink,
            )
        return attn.to_out[0](y.transpose(1, 2).flatten(2)).type_as(hidden_states)


class CachedCrossAttnProcessor:
    """Cross-attention to the prompt (and CLIP image tokens) with their keys and values from the plan."""

    def __init__(self, layer: int):
        self.layer = layer

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: AttentionPlan,
        attention_mask=None,
        rotary_emb=None,
    ) -> torch.Tensor:
        q = split_heads(attn.norm_q(attn.to_q(hidden_states)), attn.heads)
        kv = encoder_hidden_states.cross[self.layer]  # the block hands attn2 the plan as its context
        y = F.scaled_dot_product_attention(q, kv["k"], kv["v"])
        if "k_img" in kv:
            y = y + F.scaled_dot_product_attention(q, kv["k_img"], kv["v_img"])
        return attn.to_out[0](y.transpose(1, 2).flatten(2)).type_as(hidden_states)
