"""The video backend's renderer: diffusers' `AutoencoderKLWan`, decoded one chunk at a time.

`AutoencoderKLWan.decode` clears its causal-conv feature cache before and after every call,
so decoding a stream chunk by chunk that way would restart the video at each chunk. The
`StreamingVAEDecoder` holds the cache itself across calls and runs the same per-latent-frame
loop: each chunk is decoded once, in order, on the decoder's own device, and the frames equal
those of one `decode` of the whole clip.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

from ..config import VAE_CONFIGS

def build_vae(name: str) -> AutoencoderKLWan:
    """A randomly initialised VAE of a named size (users load trained weights with from_pretrained)."""
    config = dict(VAE_CONFIGS[name])
    if config["z_dim"] != 16:  # the published statistics are for 16 channels
        config["latents_mean"], config["latents_std"] = [0.0] * config["z_dim"], [1.0] * config["z_dim"]
    return AutoencoderKLWan(**config)


def _stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's per-channel latent mean and std, shaped to broadcast over (B, z, F, H, W)."""
    return tuple(torch.tensor(v, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
                 for v in (vae.config.latents_mean, vae.config.latents_std))


def normalize(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the unit-scale latents the DiT works in."""
    mean, std = _stats(vae, latents)
    return (latents - mean) / std


def denormalize(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(vae, latents)
    return latents * std + mean


@torch.no_grad()
def encode(vae: AutoencoderKLWan, frames: torch.Tensor) -> torch.Tensor:
    """Video (B, 3, T, H, W) in [-1, 1], T = 1 + 4k -> normalised latents (B, z, 1 + k, H / 8, W / 8)."""
    return normalize(vae, vae.encode(frames).latent_dist.mode())


class StreamingVAEDecoder:
    """Decodes consecutive latent chunks of one stream; call `reset` before another stream."""

    def __init__(self, vae: AutoencoderKLWan):
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        self.feat_cache = [None] * self.vae._cached_conv_counts["decoder"]
        self.latent_frames = 0

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, z, F, h, w) -> frames (B, 3, T, 8h, 8w) in [-1, 1]: 1 + 4(F - 1)
        frames for the stream's first chunk, 4F after."""
        vae = self.vae
        device = next(vae.parameters()).device
        x = vae.post_quant_conv(denormalize(vae, latents.to(device, vae.dtype)))
        out = []
        for i in range(x.shape[2]):
            out.append(vae.decoder(x[:, :, i: i + 1], feat_cache=self.feat_cache, feat_idx=[0],
                                   first_chunk=self.latent_frames == 0))
            self.latent_frames += 1
        frames = torch.cat(out, dim=2)
        if vae.config.patch_size is not None:  # Wan 2.2's VAE
            frames = unpatchify(frames, patch_size=vae.config.patch_size)
        return frames.clamp(-1.0, 1.0)
