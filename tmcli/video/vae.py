"""The video backend's renderer: diffusers' `AutoencoderKLWan`, decoded one chunk at a time.

`AutoencoderKLWan.decode` clears its causal-conv feature cache before and after every call,
so decoding a stream chunk by chunk that way would restart the video at each chunk. The
`StreamingVAEDecoder` holds the cache itself across calls and runs the same per-latent-frame
loop: each chunk is decoded once, in order, on the decoder's own device, and the frames equal
those of one `decode` of the whole clip. `StreamingVAEEncoder` does the same for the encoder,
so that training can run the VAE deep into a stream (train/video.py `vae_stream_loss`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, patchify, unpatchify
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from tmcli.core.config import VAE_CONFIGS
from tmcli.core.errors import InputError


class TapSumCausalConv3d(WanCausalConv3d):
    """Wan's causal 3D convolution computed on the CPU as one 2D convolution per temporal tap,
    summed, for rendering. PyTorch runs 3D convolutions on the CPU with slow_conv3d (three
    quarters of the streaming decoder's time) but 2D ones with oneDNN: the video student's
    render ran 2.2x faster (26 -> 12 s for the 4 s sample at 128 px, 2 cores). Training keeps the
    stock convolution: with gradients, at batch 2, this was slower. Same weights, same results to
    float rounding; strided, dilated or grouped convolutions, other devices and graph export
    (onnxruntime has a fast 3D kernel) take the stock path."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or self.stride != (1, 1, 1)
            or self.dilation != (1, 1, 1)
            or self.groups != 1
            or self.padding != (0, 0, 0)
            or torch.compiler.is_exporting()
        ):
            return super()._conv_forward(x, weight, bias)
        b, c, t, h, w = x.shape
        taps = weight.shape[2]
        frames = x.transpose(1, 2)  # (B, T, C, H, W): each tap is a 2D convolution over frames t + k
        out = sum(
            F.conv2d(frames[:, k : t - taps + 1 + k].reshape(-1, c, h, w), weight[:, :, k])
            for k in range(taps)
        )
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        return out.unflatten(0, (b, t - taps + 1)).transpose(1, 2)


def use_tap_sum_convolutions(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """The VAE's causal 3D convolutions as TapSumCausalConv3d (in place; parameters unchanged):
    for rendering."""
    for module in vae.modules():
        if type(module) is WanCausalConv3d:
            module.__class__ = TapSumCausalConv3d
    return vae


def build_vae(name: str) -> AutoencoderKLWan:
    """A randomly initialised VAE of a named size (users load trained weights with from_pretrained)."""
    config = dict(VAE_CONFIGS[name])
    if name != "wan2.1":  # the published statistics are its weights'; train_vae measures a trained VAE's
        config["latents_mean"], config["latents_std"] = [0.0] * config["z_dim"], [1.0] * config["z_dim"]
    return AutoencoderKLWan(**config)


def load_vae(path: str | Path) -> AutoencoderKLWan:
    """A trained VAE folder (`tm train --stage vae`), with one clear line when it is not one."""
    try:
        return AutoencoderKLWan.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(
            f"{path} is not a trained VAE: {str(exc).splitlines()[0]}",
            hint="train one with `tm train VDATA -o VAE --preset video-small --stage vae`",
        ) from None


def _stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's per-channel latent mean and std, shaped to broadcast over (B, z, F, H, W)."""
    return tuple(
        torch.tensor(v, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
        for v in (vae.config.latents_mean, vae.config.latents_std)
    )


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


class StreamingVAEEncoder:
    """Encodes consecutive frame chunks of one stream (1 + 4k frames first, 4k after), holding
    the encoder's causal cache; gradients flow unless the caller turns them off."""

    def __init__(self, vae: AutoencoderKLWan):
        self.vae = vae
        self.feat_cache = [None] * vae._cached_conv_counts["encoder"]
        self.frames = 0

    def posterior(self, frames: torch.Tensor) -> DiagonalGaussianDistribution:
        """Frames (B, 3, T, H, W) -> the distribution of their raw latents, as `vae.encode` gives."""
        vae = self.vae
        if vae.config.patch_size is not None:
            frames = patchify(frames, patch_size=vae.config.patch_size)
        first = 0 if self.frames else 1  # a stream's first frame is coded alone, as an image
        pieces = [frames[:, :, :first], *frames[:, :, first:].split(4, dim=2)]
        out = [vae.encoder(x, feat_cache=self.feat_cache, feat_idx=[0]) for x in pieces if x.shape[2]]
        self.frames += frames.shape[2]
        return DiagonalGaussianDistribution(vae.quant_conv(torch.cat(out, dim=2)))


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
        return self.decode_raw(denormalize(vae, latents.to(device, vae.dtype))).clamp(-1.0, 1.0)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents (as `vae.encode` gives) -> unclamped frames; gradients flow (training)."""
        vae = self.vae
        x = vae.post_quant_conv(z)
        out = []
        for i in range(x.shape[2]):
            out.append(
                vae.decoder(
                    x[:, :, i : i + 1],
                    feat_cache=self.feat_cache,
                    feat_idx=[0],
                    first_chunk=self.latent_frames == 0,
                )
            )
            self.latent_frames += 1
        frames = torch.cat(out, dim=2)
        if vae.config.patch_size is not None:  # Wan 2.2's VAE
            frames = unpatchify(frames, patch_size=vae.config.patch_size)
        return frames


class FixedShapeVAEDecode(torch.nn.Module):
    """One latent frame of `StreamingVAEDecoder` with the causal-conv cache as tensors in and out:
    the form export needs. Normalised latent (1, z, 1, h, w) -> frames in [-1, 1].

    Two instances make a stream: `first=True` decodes the stream's first latent frame (one
    video frame, no cache in), `first=False` every later one (4 frames, cache in). The cache
    always has its steady shape, two frames per entry: where the first frame leaves one, or
    none (the temporal upsamplers, which skip the first frame), it is padded in front with
    zeros, which is what the causal convolutions pad with, so the frames are unchanged."""

    def __init__(self, vae: AutoencoderKLWan, latent_size: int, first: bool):
        super().__init__()
        self.vae, self.first = vae, first
        self.shapes = self.cache_shapes(vae, latent_size)
        self.used = [i for i, shape in enumerate(self.shapes) if shape is not None]
        self.INPUTS = ("latent",) if first else ("latent", *(f"cache_{i}" for i in range(len(self.used))))
        self.OUTPUTS = ("frames", *(f"cache_{i}_out" for i in range(len(self.used))))
        self.latent_size = latent_size

    @staticmethod
    @torch.no_grad()
    def cache_shapes(vae: AutoencoderKLWan, latent_size: int) -> list[tuple[int, ...] | None]:
        """Each cache entry's steady shape (None: an entry this decoder never uses), read off a
        two-frame decode."""
        decoder = StreamingVAEDecoder(vae)
        decoder.decode(torch.zeros(1, vae.config.z_dim, 2, latent_size, latent_size))
        return [tuple(c.shape) if torch.is_tensor(c) else None for c in decoder.feat_cache]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        dtype = self.vae.dtype
        latent = torch.randn(1, self.vae.config.z_dim, 1, self.latent_size, self.latent_size, dtype=dtype)
        return (
            (latent,)
            if self.first
            else (latent, *(torch.zeros(self.shapes[i], dtype=dtype) for i in self.used))
        )

    def forward(self, latent, *cache):
        vae = self.vae
        feat_cache = [None] * len(self.shapes)
        for i, tensor in zip(self.used, cache):
            feat_cache[i] = tensor
        frames = vae.decoder(
            vae.post_quant_conv(denormalize(vae, latent)),
            feat_cache=feat_cache,
            feat_idx=[0],
            first_chunk=self.first,
        )
        out = []
        for i in self.used:
            entry, shape = feat_cache[i], self.shapes[i]
            if not torch.is_tensor(entry):  # "Rep": a temporal upsampler that has seen only the first frame
                entry = latent.new_zeros(shape)
            elif entry.shape[2] < shape[2]:
                entry = torch.cat(
                    [entry.new_zeros(*shape[:2], shape[2] - entry.shape[2], *shape[3:]), entry], dim=2
                )
            out.append(entry)
        return (frames.clamp(-1.0, 1.0), *out)


class PortraitEncode(torch.nn.Module):
    """`encode` of a one-frame video (the portrait), for export: (1, 3, 1, H, W) -> (1, z, 1, h, w)."""

    INPUTS, OUTPUTS = ("frame",), ("latent",)

    def __init__(self, vae: AutoencoderKLWan, size: int):
        super().__init__()
        self.vae, self.size = vae, size

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return (torch.rand(1, 3, 1, self.size, self.size, dtype=self.vae.dtype) * 2 - 1,)

    def forward(self, frame):
        return encode(self.vae, frame)
