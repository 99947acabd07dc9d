"""A pretrained Wan as the video backend's start: diffusers' Wan transformer (text- or
image-to-video) with tm's audio modules, and those modules saved alone to ship beside it."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from safetensors.torch import load_file, save_file
from torch import nn

from tmcli.video.wan_audio import MASK_CHANNELS, WanAudioTransformer


def save_audio_modules(model: WanAudioTransformer, path: str | Path) -> None:
    """tm's part alone (audio modules and prompt), to ship beside a Wan checkpoint."""
    state = {
        k: v.contiguous() for k, v in model.state_dict().items() if k.split(".")[0] in model.AUDIO_MODULES
    }
    save_file(state, str(path))


def from_wan(
    wan_dir: str | Path,
    audio_modules: str | Path | None = None,
    torch_dtype: torch.dtype | None = None,
    **settings,
) -> WanAudioTransformer:
    """A diffusers Wan transformer (the `transformer/` folder of a Wan diffusers checkpoint) with
    tm's audio modules: from `audio_modules` (save_audio_modules), else new ones whose output
    starts at zero. A text-to-video Wan (16 input channels) gets the image-condition channels
    with zero weights. settings: the streaming ones (chunk_latent_frames, audio_heads, ...)."""
    wan = WanTransformer3DModel.from_pretrained(wan_dir, torch_dtype=torch_dtype)
    c = wan.config
    z = c.out_channels
    if c.in_channels == z:
        old = wan.patch_embedding
        wan.patch_embedding = nn.Conv3d(
            2 * z + MASK_CHANNELS,
            old.out_channels,
            old.kernel_size,
            old.stride,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        with torch.no_grad():
            wan.patch_embedding.weight.zero_()
            wan.patch_embedding.weight[:, :z] = old.weight
            wan.patch_embedding.bias.copy_(old.bias)
        wan.register_to_config(in_channels=2 * z + MASK_CHANNELS)
    elif c.in_channels != 2 * z + MASK_CHANNELS:
        raise ValueError(
            f"a Wan transformer with {c.in_channels} input channels is neither T2V ({z}) nor I2V "
            f"({2 * z + MASK_CHANNELS})"
        )
    with torch.device("meta"):
        model = WanAudioTransformer(
            latent_channels=z,
            num_layers=c.num_layers,
            num_heads=c.num_attention_heads,
            head_dim=c.attention_head_dim,
            ffn_dim=c.ffn_dim,
            freq_dim=c.freq_dim,
            text_dim=c.text_dim,
            image_dim=c.image_dim,
            added_kv_proj_dim=c.added_kv_proj_dim,
            rope_max_seq_len=c.rope_max_seq_len,
            **settings,
        )
    model.wan = wan
    model.install_processors()
    device, dtype = wan.proj_out.weight.device, wan.proj_out.weight.dtype
    model.prompt = nn.Parameter(torch.empty(model.prompt.shape, device=device))
    for name in ("audio_in", "audio_norm", "audio_attn"):
        getattr(model, name).to_empty(device=device)
    model.init_audio_modules()
    if audio_modules is not None:
        state = load_file(str(audio_modules), device=str(device))
        expected = {k for k in model.state_dict() if k.split(".")[0] in model.AUDIO_MODULES}
        if set(state) != expected:
            raise ValueError(
                f"{audio_modules} does not hold this model's audio modules "
                f"({len(set(state) ^ expected)} tensors differ)"
            )
        model.load_state_dict(state, strict=False)
    model.prompt.data = model.prompt.data.to(dtype)
    for name in ("audio_in", "audio_norm", "audio_attn"):
        getattr(model, name).to(dtype)
    return model
