"""Training the video backend's VAE (tm train on a video preset, its first stage): Wan's VAE
fitted to the face crops of a `tm data video` set, the loss weighted on the mouth and taken
through the streaming decoder, so what is trained is what renders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from tmcli.core.config import VAE_CONFIGS, Preset
from tmcli.core.errors import InputError
from tmcli.core.media import save_pretrained
from tmcli.train.trainer import TrainReport, fit, resumed_settings, start_run
from tmcli.train.video import ClipWindows, draws, latent_statistics, mouth_weights, window_frames
from tmcli.train.video_data import read_video_manifest
from tmcli.video.vae import StreamingVAEDecoder, StreamingVAEEncoder, build_vae, load_vae

KL_WEIGHT = 1e-6  # of the mean KL beside the mean L1: a nearly deterministic autoencoder, as Wan's


def vae_stream_loss(
    vae,
    frames: torch.Tensor,
    window: int,
    warmup: int,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """L1 (weighted per pixel by `weights`, (N, 1, 1, H, W), if given) + KL on one window of a
    stream, after `warmup` windows coded without gradient.

    `frames` holds the stream from its first frame: a first window of `window` (1 + 4k) frames,
    then windows of window - 1. A causal VAE learns what it sees of a stream's length (its
    temporal receptive field lets it count frames from the zero padding before frame 0); it
    must learn the deep states it streams in, not only a stream's opening."""
    encoder, decoder = StreamingVAEEncoder(vae), StreamingVAEDecoder(vae)
    ends = [window + k * (window - 1) for k in range(warmup + 1)]
    starts = [0, *ends[:-1]]
    with torch.no_grad():
        for a, b in zip(starts[:-1], ends[:-1]):
            decoder.decode_raw(encoder.posterior(frames[:, :, a:b]).mode())
    target = frames[:, :, starts[-1] : ends[-1]]
    posterior = encoder.posterior(target)
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(
        frames.device
    )
    kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean()
    error = (decoder.decode_raw(z) - target).abs()
    return (error if weights is None else error * weights).mean() + KL_WEIGHT * kl


def train_vae(
    data_dir: str | Path,
    out_dir: str | Path,
    preset: Preset,
    device: str = "cpu",
    init: str | Path | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainReport:
    """Stage 1: the VAE on streams along each clip, trained on one window of each (vae_stream_loss)
    after 0 to `[video] vae_warmup_windows` windows (drawn each step); from `init`'s weights if
    given (a fine-tune).

    Windows are `[video] vae_window_frames` long (0: the teacher's, window_frames). Trained on
    9-frame windows from each stream's start only, the VAE reconstructed frames 0-11 of a
    33-frame stream and turned every later one into coloured noise; trained on 33, it blurred
    from frame ~35 on and lost the face by ~70. Streams of 9-frame windows after 0-3 others
    (33 frames deep) kept 129-frame streams' L1 flat."""
    out, video = Path(out_dir), preset.video
    manifest = read_video_manifest(data_dir)
    saved, settings = resumed_settings(out, preset.train)
    name = saved["vae"] if saved else video.vae
    teacher_window = window_frames(video.chunk_latent_frames)
    window, warmup = (
        (saved["stream"]["window"], saved["stream"]["warmup_windows"])
        if saved
        else (video.vae_window_frames or teacher_window, video.vae_warmup_windows)
    )
    length = window + warmup * (window - 1)
    streams = ClipWindows(data_dir, length, 0, 0, stride=length)
    start = load_vae(init) if init is not None and not saved else None  # a resumed run loads its own
    if start is not None and start.config.z_dim != VAE_CONFIGS[name]["z_dim"]:
        raise InputError(
            f"{init} is not a {name!r} VAE (latent channels differ)",
            hint="fine-tune a VAE of the preset's size",
        )
    record = {
        "stage": "vae",
        "vae": name,
        "init": str(Path(init).resolve()) if init else None,
        "stream": {"window": window, "warmup_windows": warmup},
        "data": {"path": str(Path(data_dir).resolve()), "streams": len(streams), "size": manifest["size"]},
    }
    run = start_run(
        out,
        AutoencoderKLWan,
        lambda: start if start is not None else build_vae(name),
        settings,
        record,
        device,
    )

    def loss(index, g):
        frames = streams.pixels(index).to(device)
        weights = mouth_weights(streams.mouth_boxes(index), *frames.shape[-2:], video.mouth_weight).to(device)
        return vae_stream_loss(
            run.model, frames, window, int(torch.randint(0, warmup + 1, (), generator=g)), g, weights
        )

    report = fit(
        run, draws(len(streams), settings.batch_size, settings.seed, run.step), loss, settings, on_step
    )
    mean, std = latent_statistics(run.model, streams, min(length, teacher_window))
    run.model.register_to_config(latents_mean=mean, latents_std=std)
    save_pretrained(run.model, out)
    return report
