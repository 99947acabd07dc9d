"""The video student's chunk step in fixed shapes: the KV cache as explicit inputs and outputs (the
motion student's layout), the graph `tm export` writes for the video backend."""

from __future__ import annotations

import torch
from torch import nn

from tmcli.core.attention import CACHE_INPUTS, CACHE_OUTPUTS, commit_chunk, empty_cache_inputs
from tmcli.video.processors import AttentionPlan
from tmcli.video.wan_audio import MASK_CHANNELS, WanAudioTransformer


class _TensorCache:
    """The processors' view of FixedShapeVideoStep's cache tensors: per layer the sink and the
    whole band as one past entry; `push` collects the chunk's keys and values."""

    def __init__(self, sink_keys, sink_values, band_keys, band_values):
        self.sink = list(zip(sink_keys, sink_values))
        self.band = [[kv] for kv in zip(band_keys, band_values)]
        self.new: list[tuple[torch.Tensor, torch.Tensor]] = []

    def push(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.new.append((k, v))


class FixedShapeVideoStep(nn.Module):
    """`WanAudioTransformer.step` with every shape fixed and the KV cache as tensors in and out:
    the form export needs (the video twin of causal_dit.FixedShapeStep, same cache layout).

    The cache is `sink_keys`/`sink_values` (L, 1, H, N, d) for a chunk of N tokens and
    `band_keys`/`band_values` (L, 1, H, window_chunks * N, d), with `sink_valid` (1,) and
    `band_valid` (window_chunks * N,). Band slots sit at fixed positions before the chunk, so
    RoPE scores them by their true distance while the band fills. `audio` always has the rows
    of a later chunk (4c + 2 * audio_context); the stream's first chunk hears 3 rows fewer
    (its first latent frame is one video frame) and is padded at the front with any rows: the
    mask chosen by `sink_valid` ignores them. The prompt's keys and values are constants."""

    INPUTS = ("latents", "timestep", "cond", "audio", *CACHE_INPUTS)
    OUTPUTS = ("velocity", *CACHE_OUTPUTS)

    def __init__(self, model: WanAudioTransformer, latent_size: int):
        super().__init__()
        cfg = model.config
        if cfg.image_dim:
            raise ValueError(
                "a model with CLIP image tokens (Wan I2V's image_dim) takes them per portrait; "
                "its chunk step is not exported"
            )
        self.model = model
        c, p = cfg.chunk_latent_frames, cfg.patch_size
        self.latent_size, self.per_frame = latent_size, (latent_size // p) ** 2
        self.tokens = c * self.per_frame
        self.band_slots = cfg.window_chunks * self.tokens
        self.audio_rows = len(model.audio_rows(c, c))
        self.first_chunk_pad = self.audio_rows - len(model.audio_rows(0, c))
        hp = latent_size // p
        for name, table in (
            ("rope", model._rope(torch.arange((cfg.window_chunks + 1) * c), hp, hp)),
            ("space_rope", model._rope(torch.zeros(c, dtype=torch.long), hp, hp)),
        ):
            self.register_buffer(f"{name}_cos", table[0].clone(), persistent=False)
            self.register_buffer(f"{name}_sin", table[1].clone(), persistent=False)
        first = model._audio_mask(
            torch.arange(c), model.audio_rows(0, c)[0] - self.first_chunk_pad, self.audio_rows, self.per_frame
        )
        later = model._audio_mask(
            torch.arange(c, 2 * c), model.audio_rows(c, c)[0], self.audio_rows, self.per_frame
        )
        self.register_buffer("first_audio_mask", first, persistent=False)
        self.register_buffer("later_audio_mask", later, persistent=False)
        with torch.no_grad():
            cross = model.cross_kv(1)
        self.cross_names = [(layer, key) for layer, kv in enumerate(cross) for key in kv]
        for layer, key in self.cross_names:
            self.register_buffer(f"cross_{layer}_{key}", cross[layer][key].clone(), persistent=False)

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shapes and dtypes: an empty cache, a noisy chunk."""
        cfg, dtype, s = self.model.config, self.model.dtype, self.latent_size
        z, c = cfg.latent_channels, cfg.chunk_latent_frames
        cache = empty_cache_inputs(
            cfg.num_layers, cfg.num_heads, self.tokens, self.band_slots, cfg.head_dim, dtype
        )
        return (
            torch.randn(1, z, c, s, s, dtype=dtype),
            torch.full((1,), 1000.0, dtype=dtype),
            torch.zeros(1, MASK_CHANNELS + z, c, s, s, dtype=dtype),
            torch.randn(1, self.audio_rows, cfg.audio_dim, dtype=dtype),
            *cache,
        )

    def forward(
        self,
        latents,
        timestep,
        cond,
        audio,
        write,
        sink_keys,
        sink_values,
        band_keys,
        band_values,
        sink_valid,
        band_valid,
    ):
        model, n = self.model, self.tokens
        cache = _TensorCache(sink_keys, sink_values, band_keys, band_values)
        rope = (self.rope_cos, self.rope_sin)
        space = (self.space_rope_cos, self.space_rope_sin)
        cross = [{} for _ in range(model.config.num_layers)]
        for layer, key in self.cross_names:
            cross[layer][key] = getattr(self, f"cross_{layer}_{key}")
        plan = AttentionPlan(
            rope=(rope[0][self.band_slots :], rope[1][self.band_slots :]),
            key_rope=rope,
            space_rope=space,
            sink_rope=space,
            cache=cache,
            write=True,
            cross=cross,
            band_mask=torch.cat([band_valid, torch.ones(n, dtype=torch.bool, device=band_valid.device)])[
                None
            ],
            sink_mask=sink_valid[None],
        )
        audio_mask = (sink_valid & self.later_audio_mask) | (
            ~sink_valid & self.first_audio_mask
        )  # no bool Where in onnxruntime
        c, s = model.config.chunk_latent_frames, self.latent_size
        velocity = model._unpatchify(model._run(latents, cond, timestep, audio, audio_mask, plan), c, s, s)
        new_keys = torch.stack([k for k, _ in cache.new])
        new_values = torch.stack([v for _, v in cache.new])
        return (
            velocity,
            *commit_chunk(
                write,
                new_keys,
                new_values,
                sink_keys,
                sink_values,
                band_keys,
                band_values,
                sink_valid,
                band_valid,
            ),
        )
