"""WanAudioTransformer: diffusers' Wan video DiT made audio-driven and block-causal (TalkingMachines).

The video backend generates VAE latents (B, z, F, H, W) of the talking face instead of motion.
It is diffusers' `WanTransformer3DModel`, used as is (patch embedding, time and text embedders,
`WanTransformerBlock`s, 3D RoPE tables, output head), plus what Wan lacks:

- per-block audio cross-attention (a stock `WanAttention`, output zero-initialised so a
  pretrained Wan starts unchanged) in which each latent frame's queries see only the audio of
  its own video frames, `audio_context` frames either side (a local mask);
- the portrait as an image condition, as Wan I2V: 4 mask channels and the portrait's latent on
  the first latent frame, concatenated to the noisy latents;
- a block-causal self-attention processor with a KV cache: chunks of `chunk_latent_frames`
  latent frames attend to themselves, the `window_chunks` chunks before them and the stream's
  first chunk (the sink, which holds the portrait's frame);
- a cross-attention processor whose prompt (and CLIP image) keys and values are projected once
  per stream, not once per pass.

tm has no text encoder: the prompt is a learned table of `text_tokens` embeddings in T5 space
(a user's own Wan weights come with whatever prompt embeddings they choose to load into it).

Attention runs in one of three plans, chosen per call: the whole clip bidirectionally (the
teacher), one chunk against the cache (`step`, streaming), or every chunk of a clip at once
with the cache's masks (`forward_sequence`, distillation and tests). RoPE follows
`attention.py`: band keys are cached before rotation and rotated by their place in the
window; the sink is scored with spatial rotation only.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanTransformer3DModel,
)
from torch import nn

from tmcli.core.attention import KVCache
from tmcli.speech.features import FEATURE_DIM
from tmcli.video.processors import (
    AttentionPlan,
    CachedCrossAttnProcessor,
    CausalSelfAttnProcessor,
    split_heads,
)

MASK_CHANNELS = 4  # Wan I2V: which of a latent frame's 4 video frames are given


class WanAudioTransformer(ModelMixin, ConfigMixin):
    _no_split_modules = ["WanTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 16,
        num_layers: int = 30,
        num_heads: int = 12,
        head_dim: int = 128,
        ffn_dim: int = 8960,
        freq_dim: int = 256,
        text_dim: int = 4096,
        text_tokens: int = 512,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        audio_dim: int = FEATURE_DIM,
        audio_heads: int = 4,
        audio_context: int = 2,
        patch_size: int = 2,
        temporal_compression: int = 4,
        chunk_latent_frames: int = 3,
        window_chunks: int = 1,
        denoising_steps: int = 2,
        rope_max_seq_len: int = 1024,
        fps: float = 25.0,
    ):
        super().__init__()
        dim = num_heads * head_dim
        self.wan = WanTransformer3DModel(
            patch_size=(1, patch_size, patch_size),
            num_attention_heads=num_heads,
            attention_head_dim=head_dim,
            in_channels=2 * latent_channels + MASK_CHANNELS,
            out_channels=latent_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
        )
        self.install_processors()
        self._rope_tables: dict = {}  # _rope's, by positions, size and device
        self.prompt = nn.Parameter(torch.empty(text_tokens, text_dim))
        self.audio_in = nn.Sequential(
            nn.Linear(audio_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.audio_norm = nn.ModuleList(
            FP32LayerNorm(dim, 1e-6, elementwise_affine=True) for _ in range(num_layers)
        )
        self.audio_attn = nn.ModuleList(
            WanAttention(
                dim,
                heads=audio_heads,
                dim_head=head_dim,
                eps=1e-6,
                cross_attention_dim_head=head_dim,
                processor=WanAttnProcessor(),
            )
            for _ in range(num_layers)
        )
        self.init_audio_modules()

    def init_audio_modules(self) -> None:
        """Fresh tm modules: default initialisation, the audio attention's output at zero."""
        with torch.no_grad():
            self.prompt.normal_(0.0, 0.02)
            for module in [*self.audio_in.modules(), *self.audio_norm.modules(), *self.audio_attn.modules()]:
                if hasattr(module, "reset_parameters") and module is not self:
                    module.reset_parameters()
            for attn in self.audio_attn:
                nn.init.zeros_(attn.to_out[0].weight)
                nn.init.zeros_(attn.to_out[0].bias)

    def install_processors(self) -> None:
        for layer, block in enumerate(self.wan.blocks):
            block.attn1.set_processor(CausalSelfAttnProcessor(layer))
            block.attn2.set_processor(CachedCrossAttnProcessor(layer))

    AUDIO_MODULES = ("prompt", "audio_in", "audio_norm", "audio_attn")  # what tm adds to Wan

    # ---- geometry -------------------------------------------------------------------------
    @property
    def sigmas(self) -> list[float]:
        """Noise levels of the few-step sampler, from pure noise down."""
        n = self.config.denoising_steps
        return [1.0 - i / n for i in range(n)]

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_layers, self.config.window_chunks)

    def video_frames(self, latent_frame: int) -> range:
        """The video frames one latent frame stands for (Wan's VAE: 1, then 4 per latent frame)."""
        s = self.config.temporal_compression
        return range(0, 1) if latent_frame == 0 else range(s * latent_frame - s + 1, s * latent_frame + 1)

    def audio_rows(self, first_latent: int, latent_frames: int) -> range:
        """Feature rows (video frames) latent frames [first, first + n) hear, audio_context either side."""
        r = self.config.audio_context
        return range(
            self.video_frames(first_latent)[0] - r,
            self.video_frames(first_latent + latent_frames - 1)[-1] + r + 1,
        )

    def _rope(self, frames: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin (len(frames) * h * w, head_dim) from Wan's RoPE tables, for these temporal positions.

        Kept per (positions, size, device): a stream asks for the same few tables every pass."""
        rope = self.wan.rope
        device = self.wan.proj_out.weight.device
        key = (tuple(frames.tolist()), h, w, device)
        cache = self._rope_tables
        if key not in cache:
            tables = []
            for freqs in (rope.freqs_cos, rope.freqs_sin):
                t, hh, ww = freqs.split([rope.t_dim, rope.h_dim, rope.w_dim], dim=1)
                n = len(frames)
                parts = [
                    t[frames.cpu()].view(n, 1, 1, -1).expand(n, h, w, -1),
                    hh[:h].view(1, h, 1, -1).expand(n, h, w, -1),
                    ww[:w].view(1, 1, w, -1).expand(n, h, w, -1),
                ]
                tables.append(torch.cat(parts, dim=-1).reshape(n * h * w, -1).to(device, torch.float32))
            cache[key] = (tables[0], tables[1])
        return cache[key]

    # ---- conditions -----------------------------------------------------------------------
    def cross_kv(self, batch: int, image_embeds: torch.Tensor | None = None) -> list[dict]:
        """Per layer, the prompt's (and CLIP image tokens') keys and values: computed once per stream."""
        wan, emb = self.wan, self.wan.condition_embedder
        if (emb.image_embedder is None) != (image_embeds is None):
            raise ValueError("image_embeds are required exactly when the model has image_dim")
        text = emb.text_embedder(self.prompt[None].expand(batch, -1, -1).to(self.dtype))
        image = emb.image_embedder(image_embeds) if image_embeds is not None else None
        out = []
        for block in wan.blocks:
            a, kv = block.attn2, {}
            kv["k"], kv["v"] = (
                split_heads(a.norm_k(a.to_k(text)), a.heads),
                split_heads(a.to_v(text), a.heads),
            )
            if image is not None:
                kv["k_img"] = split_heads(a.norm_added_k(a.add_k_proj(image)), a.heads)
                kv["v_img"] = split_heads(a.add_v_proj(image), a.heads)
            out.append(kv)
        return out

    def condition_latents(
        self, portrait: torch.Tensor, first_latent: int, latent_frames: int
    ) -> torch.Tensor:
        """Wan I2V's condition for latent frames [first, first + n): mask + the portrait's latent on frame 0.

        portrait: (B, z, 1, H, W), the VAE latent of the portrait as a one-frame video."""
        b, z, _, h, w = portrait.shape
        cond = portrait.new_zeros(b, MASK_CHANNELS + z, latent_frames, h, w)
        if first_latent == 0:
            cond[:, :MASK_CHANNELS, 0] = 1.0
            cond[:, MASK_CHANNELS:, 0] = portrait[:, :, 0]
        return cond

    def _time(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wan's time embedding; timestep (B,) or per token (B, N) -> temb and its 6 block modulations."""
        emb = self.wan.condition_embedder
        shape = timestep.shape
        t = emb.timesteps_proj(timestep.flatten()).unflatten(0, shape)
        temb = emb.time_embedder(t.to(emb.time_embedder.linear_1.weight.dtype))
        proj = emb.time_proj(emb.act_fn(temb)).unflatten(-1, (6, -1))
        return temb, proj

    def _audio_mask(
        self, latent_index: torch.Tensor, first_row: int, rows: int, tokens_per_frame: int
    ) -> torch.Tensor:
        """(N, rows) bool: token n (of latent frame latent_index[n]) may hear feature row first_row + j."""
        r = self.config.audio_context
        starts = torch.tensor([self.video_frames(int(f))[0] - r for f in latent_index]) - first_row
        ends = torch.tensor([self.video_frames(int(f))[-1] + r for f in latent_index]) - first_row
        j = torch.arange(rows)
        mask = (j[None] >= starts[:, None]) & (j[None] <= ends[:, None])
        return mask.repeat_interleave(tokens_per_frame, dim=0)

    # ---- the network ------------------------------------------------------------------------
    def _run(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        plan: AttentionPlan,
    ) -> torch.Tensor:
        """Patchify, the blocks (each followed by its audio cross-attention), the output head.

        x, cond: (B, z, F, H, W) and (B, 4 + z, F, H, W); timestep (B,) or (B, tokens);
        audio: (B, rows, audio_dim) features; audio_mask (tokens, rows). -> (B, tokens, z * p * p)."""
        wan = self.wan
        h = (
            wan.patch_embedding(torch.cat([x, cond], dim=1).to(self.dtype))
            .flatten(2)
            .transpose(1, 2)
            .contiguous()
        )
        temb, proj = self._time(timestep)
        heard = self.audio_in(audio.to(self.dtype))
        mask = audio_mask.to(h.device)[None, None]
        for block, norm, attn in zip(wan.blocks, self.audio_norm, self.audio_attn):
            h = block(h, plan, proj, plan)
            h = h + attn(norm(h.float()).type_as(h), heard, attention_mask=mask)
        if temb.dim() == 2:  # one time for all tokens: (B, 1, dim) each
            shift, scale = (wan.scale_shift_table + temb[:, None]).chunk(2, dim=1)
        else:  # a time per token: (B, N, dim) each
            shift, scale = (wan.scale_shift_table[None] + temb[:, :, None]).unbind(2)
        h = (wan.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
        return wan.proj_out(h)

    def _unpatchify(self, out: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
        p, z = self.config.patch_size, self.config.latent_channels
        out = out.reshape(out.shape[0], frames, h // p, w // p, p, p, z)
        return out.permute(0, 6, 1, 2, 4, 3, 5).reshape(out.shape[0], z, frames, h, w)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        audio: torch.Tensor,
        cross: list[dict],
    ) -> torch.Tensor:
        """The whole clip bidirectionally (the teacher): velocity (B, z, F, H, W).

        audio: (B, audio_rows(0, F), audio_dim), from audio_context frames before the first;
        cross: `cross_kv(B)`."""
        _, _, f, h, w = latents.shape
        p = self.config.patch_size
        plan = AttentionPlan(rope=self._rope(torch.arange(f), h // p, w // p), cross=cross)
        audio_mask = self._audio_mask(
            torch.arange(f), self.audio_rows(0, 1)[0], audio.shape[1], (h // p) * (w // p)
        )
        return self._unpatchify(self._run(latents, cond, timestep, audio, audio_mask, plan), f, h, w)

    def step(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        audio: torch.Tensor,
        cache: KVCache,
        cross: list[dict],
        write: bool = False,
    ) -> torch.Tensor:
        """One chunk against the cache -> velocity (B, z, chunk, H, W).

        The chunk is the cache's next (`cache.chunks`); audio: its `audio_rows` features; cond:
        `condition_latents` for it. write=True: the clean chunk at time 0, kept in the cache."""
        cfg = self.config
        _, _, c, h, w = latents.shape
        p, first = cfg.patch_size, cache.chunks * cfg.chunk_latent_frames
        hp, wp = h // p, w // p
        past = len(cache.band[0]) * c
        rope = self._rope(torch.arange(past + c), hp, wp)
        space = self._rope(torch.zeros(c, dtype=torch.long), hp, wp)
        plan = AttentionPlan(
            rope=tuple(t[past * hp * wp :] for t in rope),
            key_rope=rope,
            space_rope=space,
            sink_rope=space,
            cache=cache,
            write=write,
            cross=cross,
        )
        audio_mask = self._audio_mask(
            torch.arange(first, first + c), self.audio_rows(first, c)[0], audio.shape[1], hp * wp
        )
        out = self._unpatchify(self._run(latents, cond, timestep, audio, audio_mask, plan), c, h, w)
        if write:
            cache.chunks += 1
        return out

    def forward_sequence(
        self,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        audio: torch.Tensor,
        cross: list[dict],
    ) -> torch.Tensor:
        """Every chunk of a clip at once, each noisy chunk seeing what it would see streaming with
        `clean` as the past -> velocity of every noisy chunk (B, z, F, H, W).

        clean, noisy: (B, z, F, H, W), F a multiple of the chunk; timestep (B, G): sigma * 1000 of
        each noisy chunk; cond: `condition_latents(portrait, 0, F)`; audio: `audio_rows(0, F)`."""
        cfg = self.config
        b, _, f, h, w = noisy.shape
        c, p = cfg.chunk_latent_frames, cfg.patch_size
        g, per_frame = f // c, (h // p) * (w // p)
        per_chunk = c * per_frame
        frames = torch.arange(f)
        rope = self._rope(torch.cat([frames, frames]), h // p, w // p)
        space = self._rope(torch.zeros(2 * f, dtype=torch.long), h // p, w // p)
        band, sink = self._sequence_masks(g)
        tokens = [slice(i * per_chunk, (i + 1) * per_chunk) for i in range(2 * g)]
        blocks = [
            (tokens[i], [tokens[j] for j in range(2 * g) if band[i, j]], bool(sink[i])) for i in range(2 * g)
        ]
        plan = AttentionPlan(
            rope=rope,
            space_rope=space,
            sink_rope=tuple(t[:per_chunk] for t in space),
            blocks=blocks,
            sink_tokens=slice(0, per_chunk),
            cross=cross,
        )
        t = torch.cat([torch.zeros(b, g, device=noisy.device), timestep], dim=1).repeat_interleave(
            per_chunk, 1
        )
        x = torch.cat([clean, noisy], dim=2)
        audio_mask = self._audio_mask(
            torch.cat([frames, frames]), self.audio_rows(0, 1)[0], audio.shape[1], per_frame
        )
        out = self._run(x, torch.cat([cond, cond], dim=2), t, audio, audio_mask, plan)
        return self._unpatchify(out[:, g * per_chunk :], f, h, w)

    def _sequence_masks(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-level masks of forward_sequence: band (2G, 2G) and sink (2G, 1), clean chunks first."""
        w = self.config.window_chunks
        band = torch.zeros(2 * g, 2 * g, dtype=torch.bool)
        sink = torch.zeros(2 * g, 1, dtype=torch.bool)
        for version in (0, 1):
            for i in range(g):
                row = version * g + i
                band[row, row] = True
                band[row, max(1, i - w) : i] = True  # the clean chunks of its window (chunk 0 is the sink)
                sink[row] = i > 0
        return band, sink
