"""CausalMotionDiT: the teacher's network made block-causal over chunks, for streaming (TalkingMachines).

Frames are generated in chunks of `chunk_frames`. A chunk's tokens see each other, plus:
  - the attention sink: the first chunk of the stream, kept for ever;
  - a rolling window of the `window_chunks` chunks before it;
  - `lookahead_frames` audio-only tokens for the frames just past its end (lips move before
    the sound), the teacher's "missing context" kind of token: audio but no motion.
After a chunk is denoised, its clean motion is run once more at time 0 and its keys and values
are kept in the `KVCache`, so every chunk costs the same however long the stream.

Keys are cached before RoPE and rotated when attended, by their place in the window: the
relative distances are the true ones, and the angles stay small however long the stream. The
sink is attended without rotation (its score is the same at any distance), so it never
drifts out of the distances seen in training.

`forward_sequence` computes the same thing for a whole clip in one masked pass (clean chunks
as the cache, noisy chunks as queries): what distillation trains on and what the tests
compare the cache against.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config

from tmcli.core.attention import (
    CACHE_INPUTS,
    CACHE_OUTPUTS,
    KVCache,
    attend,
    commit_chunk,
    empty_cache_inputs,
)
from tmcli.face.rig import MOTION_DIM
from tmcli.motion.controls import CONTROL_DIM, GROUPS
from tmcli.motion.dit import Block, MotionDiT
from tmcli.speech.features import FEATURE_DIM

NOISY, CLEAN, MISSING = 0, 1, 2  # token kinds of the teacher: generated, clean motion, audio without motion


def _block(
    block: Block, x: torch.Tensor, cond: torch.Tensor, attention
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One transformer block with `attention(q, k, v) -> y`; also returns this layer's keys and values."""
    shift1, scale1, gate1, shift2, scale2, gate2 = block.modulate(cond)
    q, k, v = block.attn.project(block.norm1(x) * (1 + scale1) + shift1)
    x = x + gate1 * block.attn.merge(attention(q, k, v))
    return x + gate2 * block.mlp(block.norm2(x) * (1 + scale2) + shift2), k, v


class CausalMotionDiT(MotionDiT):
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
        chunk_frames: int = 5,
        window_chunks: int = 8,
        lookahead_frames: int = 3,
        denoising_steps: int = 2,
    ):
        super().__init__(
            motion_dim,
            audio_dim,
            control_dims,
            hidden_size,
            num_layers,
            num_heads,
            mlp_ratio,
            window,
            context_frames,
            audio_context,
            fps,
        )

    @classmethod
    def from_teacher(cls, teacher: MotionDiT, **student) -> CausalMotionDiT:
        """A student with the teacher's weights (the same parameters; only the attention differs)."""
        config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
        model = cls(**config, **student)
        model.load_state_dict(teacher.state_dict())
        return model

    @property
    def audio_span(self) -> int:
        """Feature frames a chunk hears: its own, the look-ahead, and audio_context either side."""
        cfg = self.config
        return cfg.chunk_frames + cfg.lookahead_frames + 2 * cfg.audio_context

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_layers, self.config.window_chunks)

    @property
    def sigmas(self) -> list[float]:
        """Noise levels of the few-step sampler, from pure noise down."""
        n = self.config.denoising_steps
        return [1.0 - i / n for i in range(n)]

    def chunk_tokens(
        self, motion: torch.Tensor, audio: torch.Tensor, kind: int, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tokens of one chunk: its frames (normalised motion, noisy or clean) then the look-ahead.

        motion: (B, C, D); audio: (B, audio_span, F), from audio_context frames before the chunk.
        """
        r = self.config.audio_context
        windows = torch.cat([audio[:, i : audio.shape[1] - 2 * r + i] for i in range(2 * r + 1)], dim=-1)
        heard = self._drop(self.audio_in(windows), "audio", drop)
        c = motion.shape[1]
        frames = self.motion_in(motion) + self.token_kind.weight[kind] + heard[:, :c]
        return torch.cat([frames, heard[:, c:] + self.token_kind.weight[MISSING]], dim=1)

    def step(
        self,
        motion: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        cache: KVCache,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        drop: torch.Tensor | None = None,
        write: bool = False,
    ) -> torch.Tensor:
        """One pass of one chunk against the cache -> velocity (B, C, D).

        write=False: denoising (motion noisy at `timestep`); write=True: the clean chunk at time 0,
        whose keys and values join the cache."""
        c = motion.shape[1]
        x = self.chunk_tokens(motion, audio, CLEAN if write else NOISY, drop)
        cond = self.condition(timestep, neutral, controls, drop)
        for layer, block in enumerate(self.blocks):
            past = list(cache.band[layer])
            n_past = sum(kv[0].shape[-2] for kv in past)
            rope = self.rope(torch.arange(n_past + x.shape[1], device=x.device))
            q_rope = tuple(r[n_past:] for r in rope)

            def attention(q, k, v, past=past, rope=rope, q_rope=q_rope, layer=layer):
                keys = torch.cat([kv[0] for kv in past] + [k], dim=-2)
                values = torch.cat([kv[1] for kv in past] + [v], dim=-2)
                return attend(q, keys, values, q_rope, rope, cache.sink[layer])

            x, k, v = _block(block, x, cond, attention)
            if write:
                cache.push(layer, k[:, :, :c], v[:, :, :c])
        if write:
            cache.chunks += 1
        return self.output(x[:, :c], cond)

    def forward_sequence(
        self,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """All chunks of a clip at once: velocity of every noisy chunk (B, G * C, D).

        Noisy chunk i sees what it would see streaming with `clean` as the past: the sink
        (clean chunk 0) and the clean chunks of its window. clean, noisy: (B, G * C, D);
        timestep: (B, G) sigma * 1000 of each noisy chunk; audio: (B, G * C + lookahead +
        2 * audio_context, F), starting audio_context frames before the clip.
        """
        cfg = self.config
        b, n, _ = noisy.shape
        c, a, g = cfg.chunk_frames, cfg.lookahead_frames, noisy.shape[1] // cfg.chunk_frames
        span = self.audio_span
        tokens, positions, conds = [], [], []
        cond_clean = self.condition(torch.zeros(b, device=noisy.device), neutral, controls, drop)
        for motion, version in ((clean, 0), (noisy, 1)):
            for i in range(g):
                x = self.chunk_tokens(
                    motion[:, i * c : (i + 1) * c],
                    audio[:, i * c : i * c + span],
                    NOISY if version else CLEAN,
                    drop,
                )
                cond = self.condition(timestep[:, i], neutral, controls, drop) if version else cond_clean
                tokens.append(x)
                positions.append(torch.arange(i * c, (i + 1) * c + a))
                conds.append(cond[:, None].expand(b, c + a, -1))
        x, cond = torch.cat(tokens, dim=1), torch.cat(conds, dim=1)
        pos = torch.cat(positions).to(noisy.device)
        band_mask, sink_mask = self._sequence_masks(g)
        band_mask, sink_mask = band_mask.to(noisy.device), sink_mask.to(noisy.device)
        rope = self.rope(pos)
        sink_cols = torch.arange(c, device=noisy.device)  # clean chunk 0's frame tokens
        for block in self.blocks:

            def attention(q, k, v):
                sink = (k[:, :, sink_cols], v[:, :, sink_cols])
                return attend(q, k, v, rope, rope, sink, band_mask, sink_mask)

            x, _, _ = _block(block, x, cond, attention)
        group = c + a
        start = g * group  # noisy groups follow the clean ones
        frames = torch.cat([x[:, start + i * group : start + i * group + c] for i in range(g)], dim=1)
        cond_noisy = torch.cat([cond[:, start + i * group : start + i * group + c] for i in range(g)], dim=1)
        return self.output(frames, cond_noisy)

    def _sequence_masks(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Who may attend to whom in forward_sequence: (band (L, L), sink (L, C)), bool."""
        cfg = self.config
        c, a, w = cfg.chunk_frames, cfg.lookahead_frames, cfg.window_chunks
        group = c + a
        n = 2 * g * group
        band = torch.zeros(n, n, dtype=torch.bool)
        sink = torch.zeros(n, c, dtype=torch.bool)
        for version in (0, 1):
            for i in range(g):
                rows = slice((version * g + i) * group, (version * g + i + 1) * group)
                band[rows, rows] = True  # the chunk itself, look-ahead included
                for j in range(max(1, i - w), i):  # clean frames of the window (chunk 0 is the sink)
                    band[rows, j * group : j * group + c] = True
                sink[rows] = i > 0
        return band, sink


class FixedShapeStep(torch.nn.Module):
    """`CausalMotionDiT.step` with every shape fixed and the KV cache as tensors in and out: the
    form export (ONNX, torch.export) and graph capture need.

    The cache is `sink_keys`/`sink_values` (L, 1, H, C, d) and `band_keys`/`band_values`
    (L, 1, H, window_chunks * C, d), oldest chunk first, with `sink_valid` (1,) and `band_valid`
    (window_chunks * C,) saying which slots are written; a young stream's band is padded at the
    front and masked. Band keys sit at fixed slot positions before the chunk's own: RoPE scores
    depend only on the distance from query to key, so they score as in `step`. With write=True
    the chunk is clean at time 0 and the returned cache holds it (the sink if there was none,
    else the band's newest slot, the oldest chunk dropped); with write=False the cache comes
    back unchanged. Feed the returned cache to the next call."""

    INPUTS = ("motion", "timestep", "audio", "neutral", "controls", *CACHE_INPUTS)
    OUTPUTS = ("velocity", *CACHE_OUTPUTS)

    def __init__(self, model: CausalMotionDiT):
        super().__init__()
        self.model = model
        cfg = model.config
        self.chunk_frames = cfg.chunk_frames
        self.band_slots = cfg.window_chunks * cfg.chunk_frames
        tokens = cfg.chunk_frames + cfg.lookahead_frames
        cos, sin = model.rope(torch.arange(self.band_slots + tokens))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shapes and dtypes: an empty cache, a noisy chunk."""
        cfg, dtype = self.model.config, self.model.dtype
        c, heads = cfg.chunk_frames, cfg.num_heads
        head_dim = cfg.hidden_size // heads
        return (
            torch.randn(1, c, cfg.motion_dim, dtype=dtype),
            torch.full((1,), 1000.0, dtype=dtype),
            torch.randn(1, self.model.audio_span, cfg.audio_dim, dtype=dtype),
            torch.zeros(1, cfg.motion_dim, dtype=dtype),
            torch.zeros(1, CONTROL_DIM, dtype=dtype),
            *empty_cache_inputs(cfg.num_layers, heads, c, self.band_slots, head_dim, dtype),
        )

    def forward(
        self,
        motion,
        timestep,
        audio,
        neutral,
        controls,
        write,
        sink_keys,
        sink_values,
        band_keys,
        band_values,
        sink_valid,
        band_valid,
    ):
        model, c = self.model, self.chunk_frames
        groups = dict(zip(GROUPS, controls.split(list(GROUPS.values()), dim=-1)))
        x = model.chunk_tokens(motion, audio, write.long())
        cond = model.condition(timestep, neutral, groups)
        rope = (self.rope_cos, self.rope_sin)
        q_rope = (self.rope_cos[self.band_slots :], self.rope_sin[self.band_slots :])
        band_mask = torch.cat([band_valid, torch.ones(x.shape[1], dtype=torch.bool, device=x.device)])[None]
        new_keys, new_values = [], []
        for layer, block in enumerate(model.blocks):

            def attention(q, k, v, layer=layer):
                keys = torch.cat([band_keys[layer], k], dim=-2)
                values = torch.cat([band_values[layer], v], dim=-2)
                return attend(
                    q,
                    keys,
                    values,
                    q_rope,
                    rope,
                    (sink_keys[layer], sink_values[layer]),
                    band_mask,
                    sink_valid[None],
                )

            x, k, v = _block(block, x, cond, attention)
            new_keys.append(k[:, :, :c])
            new_values.append(v[:, :, :c])
        return (
            model.output(x[:, :c], cond),
            *commit_chunk(
                write,
                torch.stack(new_keys),
                torch.stack(new_values),
                sink_keys,
                sink_values,
                band_keys,
                band_values,
                sink_valid,
                band_valid,
            ),
        )
