"""Training the video backend on a `tm data video` set, with the motion backend's loop (trainer.fit).

Two stages, each a checkpoint folder that `tm train` resumes:
  1. `--stage vae`: the preset's `AutoencoderKLWan` on windows of 1 + 4k frames (L1
     reconstruction + a small KL term), so latents decode back to faces;
  2. `--stage teacher --vae DIR`: the bidirectional `WanAudioTransformer` by flow matching on the
     frozen VAE's latents of each clip's opening window, the portrait condition being the
     clip's first frame, the audio dropped at random (for classifier-free guidance).
Windows start at each clip's first frame, as a stream does; a clip shorter than a window is
skipped. The data set is held in memory (frames of 128 px: 49 KB each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from ..config import Preset
from ..data.video import read_video_clips, read_video_manifest
from ..errors import InputError
from ..features import silence_features
from ..nn.wan_audio import WanAudioTransformer
from ..render.vae_stream import build_vae, encode
from .trainer import TrainReport, fit, resumed_settings, start_run

KL_WEIGHT = 1e-6  # of the mean KL beside the mean L1: a nearly deterministic autoencoder, as Wan's


class OpeningWindows:
    """Each long-enough clip's first `frames` frames ((N, 3, T, S, S) in [-1, 1]) and its feature rows."""

    def __init__(self, root: str | Path, frames: int, rows_before: int, rows_after: int):
        clips = [(f, a) for f, a, _ in read_video_clips(root) if len(f) >= frames]
        if not clips:
            raise InputError(f"{root} has no clip of {frames} frames or more")
        self.frames = torch.from_numpy(np.stack([f[:frames] for f, _ in clips])).permute(0, 4, 1, 2, 3)
        pad = silence_features(rows_before)
        self.audio = torch.from_numpy(np.stack([
            np.concatenate([pad, a[:frames + rows_after], silence_features(max(0, frames + rows_after - len(a)))])
            for _, a in clips]))

    def __len__(self) -> int:
        return len(self.frames)

    def batches(self, batch_size: int, seed: int, step: int) -> Iterator[torch.Tensor]:
        """Indices of the clips of each step from `step` on, drawn from (seed, step)."""
        while True:
            g = torch.Generator().manual_seed(seed * 7919 + step)
            yield torch.randint(0, len(self), (batch_size,), generator=g)
            step += 1

    def pixels(self, index: torch.Tensor) -> torch.Tensor:
        return self.frames[index].float() / 127.5 - 1.0


def vae_loss(vae, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    posterior = vae.encode(frames).latent_dist
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(frames.device)
    kl = 0.5 * (posterior.mean ** 2 + posterior.var - 1.0 - posterior.logvar).mean()
    return (vae.decode(z).sample - frames).abs().mean() + KL_WEIGHT * kl


def train_vae(data_dir: str | Path, out_dir: str | Path, preset: Preset, device: str = "cpu",
              window: int = 5, on_step: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Stage 1: the VAE on opening windows of `window` (1 + 4k) frames."""
    out, video = Path(out_dir), preset.video
    manifest = read_video_manifest(data_dir)
    saved, settings = resumed_settings(out, preset.train)
    name = saved["vae"] if saved else video.vae
    clips = OpeningWindows(data_dir, window, 0, 0)
    record = {"stage": "vae", "vae": name, "window": window,
              "data": {"path": str(Path(data_dir).resolve()), "clips": len(clips), "size": manifest["size"]}}
    run = start_run(out, AutoencoderKLWan, lambda: build_vae(name), settings, record, device)
    return fit(run, clips.batches(settings.batch_size, settings.seed, run.step),
               lambda index, g: vae_loss(run.model, clips.pixels(index).to(device), g), settings, on_step)


@torch.no_grad()
def encode_windows(vae, clips: OpeningWindows, device: str, batch: int = 4) -> torch.Tensor:
    """Normalised latents of every window: (N, z, 1 + (T - 1) / 4, S / 8, S / 8)."""
    vae = vae.to(device).eval()
    return torch.cat([encode(vae, clips.pixels(torch.arange(i, min(i + batch, len(clips)))).to(device)).cpu()
                      for i in range(0, len(clips), batch)])


def teacher_loss(model: WanAudioTransformer, latents: torch.Tensor, audio: torch.Tensor, drop_audio: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Flow matching (velocity noise - clean) at a logit-normal sigma, the clip's first latent frame as the portrait."""
    b, device = len(latents), latents.device
    noise = torch.randn(latents.shape, generator=generator).to(device)
    sigma = torch.sigmoid(torch.randn(b, generator=generator)).to(device)
    s = sigma.view(b, 1, 1, 1, 1)
    noisy = (1 - s) * latents + s * noise
    dropped = (torch.rand(b, generator=generator) < drop_audio).to(device)
    silence = torch.as_tensor(silence_features(audio.shape[1]), device=device)
    audio = torch.where(dropped.view(b, 1, 1), silence, audio)
    cond = model.condition_latents(latents[:, :, :1], 0, latents.shape[2])
    v = model(noisy, sigma * 1000, cond, audio, model.cross_kv(b))
    return ((v - (noise - latents)) ** 2).mean()


def train_teacher(data_dir: str | Path, vae_dir: str | Path, out_dir: str | Path, preset: Preset,
                  device: str = "cpu", on_step: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Stage 2: the bidirectional DiT on the VAE's latents of each clip's opening window."""
    out, video = Path(out_dir), preset.video
    manifest = read_video_manifest(data_dir)
    vae = AutoencoderKLWan.from_pretrained(vae_dir)
    config = video.model_config()
    if vae.config.z_dim != config["latent_channels"]:
        raise InputError(f"{vae_dir} has {vae.config.z_dim} latent channels; preset's VAE {video.vae!r} has "
                         f"{config['latent_channels']}", hint="train the VAE with the same preset")
    latent_frames = 3 * config["chunk_latent_frames"]  # three chunks: the sink, a window chunk, one more
    r = config["audio_context"]  # feature rows heard before the first frame and past the last
    clips = OpeningWindows(data_dir, 1 + 4 * (latent_frames - 1), r, r)
    latents = encode_windows(vae, clips, device)
    _, settings = resumed_settings(out, preset.train)
    record = {"stage": "teacher", "model": config, "vae": str(Path(vae_dir).resolve()),
              "data": {"path": str(Path(data_dir).resolve()), "clips": len(clips), "size": manifest["size"]}}
    run = start_run(out, WanAudioTransformer, lambda: WanAudioTransformer(**config), settings, record, device)
    return fit(run, clips.batches(settings.batch_size, settings.seed, run.step),
               lambda index, g: teacher_loss(run.model, latents[index].to(device), clips.audio[index].to(device),
                                             settings.drop_audio, g), settings, on_step)
