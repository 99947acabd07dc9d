"""Training the video backend on a `tm data video` set, with the motion backend's loop (trainer.fit).

Two training stages, each a checkpoint folder that `tm train` resumes, then distillation:
  1. `--stage vae`: the preset's `AutoencoderKLWan` on streams along each clip, one window
     of each at a random depth (L1 reconstruction + a small KL term), so latents decode back to
     faces however long a stream runs; then its latents' per-channel mean and std, which
     normalise what the DiT sees;
  2. `--stage teacher --vae DIR`: the bidirectional `WanAudioTransformer` by flow matching on the
     frozen VAE's latents of windows of three chunks, the portrait condition being the
     window's first frame, the audio dropped at random (for classifier-free guidance).
  3. `tm distill TEACHER DATA`: the causal few-step student (distill_video).
Windows are cut one after another along each clip, each a video of its own whose first frame
stands for the portrait, as a stream's; a clip shorter than a window is skipped. The data set
is held in memory (frames of 128 px: 49 KB each).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from tmcli.core.config import DistillSettings, GeneratorSettings, Preset, TrainSettings
from tmcli.core.errors import InputError
from tmcli.core.media import save_pretrained
from tmcli.speech.features import silence_features
from tmcli.train.distill import PAIRS
from tmcli.train.objectives import ode_states
from tmcli.train.trainer import TrainReport, fit, resumed_settings, start_run
from tmcli.train.video_data import read_video_clips, read_video_manifest
from tmcli.video.vae import encode, load_vae
from tmcli.video.wan_audio import WanAudioTransformer


def window_frames(chunk_latent_frames: int) -> int:
    """Video frames of a training window: three chunks (the sink, a window chunk, one more)."""
    return 1 + 4 * (3 * chunk_latent_frames - 1)


class ClipWindows:
    """Windows of `frames` frames from every clip: at its first frame and every `stride` frames
    after (None: the first only), with their feature rows (`rows_before` / `rows_after` more).

    Each window is a video of its own, as a stream is: its first frame stands for the portrait.
    Clips stay whole in memory (uint8) and windows are cut when a batch asks for them."""

    def __init__(
        self, root: str | Path, frames: int, rows_before: int, rows_after: int, stride: int | None = None
    ):
        self.size = frames
        self.clips, self.audio, self.starts, portraits = [], [], [], []
        for f, a, p in read_video_clips(root):
            if len(f) < frames:
                continue
            self.clips.append(f)
            portraits.append(p)
            self.audio.append(
                np.concatenate([silence_features(rows_before), a, silence_features(rows_after)])
            )
            last = len(f) - frames
            self.starts += [(len(self.clips) - 1, s) for s in range(0, last + 1, stride or last + 1)]
        if not self.starts:
            raise InputError(f"{root} has no clip of {frames} frames or more")
        self.rows = frames + rows_before + rows_after
        boxes = read_video_manifest(root).get("mouth_boxes")  # data sets made before them: the whole frame
        self.boxes = torch.tensor([boxes[p] if boxes else [0.0, 0.0, 1.0, 1.0] for p in portraits])

    def __len__(self) -> int:
        return len(self.starts)

    def pixels(self, index: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, S, S) in [-1, 1]."""
        frames = np.stack(
            [self.clips[c][s : s + self.size] for c, s in (self.starts[i] for i in index.tolist())]
        )
        return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0

    def mouth_boxes(self, index: torch.Tensor) -> torch.Tensor:
        """(N, 4): each window's portrait's mouth box (x0, y0, x1, y1, fractions of the frame)."""
        return self.boxes[torch.as_tensor([self.starts[i][0] for i in index.tolist()], dtype=torch.long)]

    def features(self, index: torch.Tensor) -> torch.Tensor:
        """(N, rows_before + T + rows_after, F): the window's rows, silence beyond its clip."""
        return torch.from_numpy(
            np.stack([self.audio[c][s : s + self.rows] for c, s in (self.starts[i] for i in index.tolist())])
        )


def draws(n: int, batch_size: int, seed: int, step: int) -> Iterator[torch.Tensor]:
    """Indices (of n windows or pairs) of each step's batch from `step` on, drawn from (seed, step)."""
    while True:
        g = torch.Generator().manual_seed(seed * 7919 + step)
        yield torch.randint(0, n, (batch_size,), generator=g)
        step += 1


@torch.no_grad()
def latent_statistics(
    vae: AutoencoderKLWan, streams: ClipWindows, window: int, count: int = 32
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the VAE's latents over the first `window` frames of `count`
    streams spread over the data (train_vae: the teacher's window, as much of it as its streams
    hold): the normalisation the DiT sees (Wan publishes its VAE's; a VAE trained here has its
    own: video-small's, means -3.8 to +2.4 and stds 2.8-9.7)."""
    picks = torch.linspace(0, len(streams) - 1, min(count, len(streams))).round().long().unique()
    device = next(vae.parameters()).device
    latents = torch.cat(
        [
            vae.encode(streams.pixels(i[None])[:, :, :window].to(device))
            .latent_dist.mode()
            .transpose(0, 1)
            .flatten(1)
            for i in picks
        ],
        dim=1,
    )  # (z, every position)
    return latents.mean(1).tolist(), latents.std(1).clamp(min=1e-3).tolist()


@torch.no_grad()
def encode_windows(vae, windows: ClipWindows, device: str, batch: int = 4) -> torch.Tensor:
    """Normalised latents of every window: (N, z, 1 + (T - 1) / 4, S / 8, S / 8)."""
    vae = vae.to(device).eval()
    return torch.cat(
        [
            encode(vae, windows.pixels(torch.arange(i, min(i + batch, len(windows)))).to(device)).cpu()
            for i in range(0, len(windows), batch)
        ]
    )


def teacher_loss(
    model: WanAudioTransformer,
    latents: torch.Tensor,
    audio: torch.Tensor,
    drop_audio: float,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flow matching (velocity noise - clean) at a logit-normal sigma, the clip's first latent
    frame as the portrait; squared errors weighted per latent cell by `weights` if given."""
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
    error = (v - (noise - latents)) ** 2
    return (error if weights is None else error * weights).mean()


def train_teacher(
    data_dir: str | Path,
    vae_dir: str | Path,
    out_dir: str | Path,
    preset: Preset,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainReport:
    """Stage 2: the bidirectional DiT on the VAE's latents of three-chunk windows."""
    out, video = Path(out_dir), preset.video
    manifest = read_video_manifest(data_dir)
    vae = load_vae(vae_dir)
    config = video.model_config()
    if vae.config.z_dim != config["latent_channels"]:
        raise InputError(
            f"{vae_dir} has {vae.config.z_dim} latent channels; preset's VAE {video.vae!r} has "
            f"{config['latent_channels']}",
            hint="train the VAE with the same preset",
        )
    r = config["audio_context"]  # feature rows heard before the first frame and past the last
    frames = window_frames(config["chunk_latent_frames"])
    windows = ClipWindows(data_dir, frames, r, r, stride=video.window_stride or frames)
    latents = encode_windows(vae, windows, device)
    _, settings = resumed_settings(out, preset.train)
    record = {
        "stage": "teacher",
        "model": config,
        "vae": str(Path(vae_dir).resolve()),
        "data": {"path": str(Path(data_dir).resolve()), "windows": len(windows), "size": manifest["size"]},
    }
    run = start_run(out, WanAudioTransformer, lambda: WanAudioTransformer(**config), settings, record, device)

    def loss(index, g):
        weights = mouth_weights(windows.mouth_boxes(index), *latents.shape[-2:], video.mouth_weight)
        return teacher_loss(
            run.model,
            latents[index].to(device),
            windows.features(index).to(device),
            settings.drop_audio,
            g,
            weights.to(device),
        )

    return fit(
        run, draws(len(windows), settings.batch_size, settings.seed, run.step), loss, settings, on_step
    )


# ---- stage 3: the causal few-step student ------------------------------------------------------


def audio_guided_velocity(
    model: WanAudioTransformer,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    audio: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """The teacher's velocity with classifier-free guidance on the audio (silence as the
    unconditional input, as it was dropped in training), both in one batched pass."""
    b = len(x)
    silence = torch.as_tensor(silence_features(audio.shape[1]), device=x.device).expand_as(audio)
    v = model(
        torch.cat([x, x]),
        torch.cat([t, t]),
        torch.cat([cond, cond]),
        torch.cat([audio, silence]),
        model.cross_kv(2 * b),
    )
    return v[b:] + scale * (v[:b] - v[b:])


@torch.no_grad()
def make_video_pairs(
    teacher: WanAudioTransformer,
    vae,
    windows: ClipWindows,
    student_sigmas: list[float],
    settings: DistillSettings,
    generator_settings: GeneratorSettings,
    device: str,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict:
    """`ode_pairs` teacher samples on random windows: the portrait latent (the window's first frame
    encoded alone, as a stream's portrait), its feature rows, the ODE states and the clean latents."""
    config = teacher.config
    f = 3 * config.chunk_latent_frames  # latent frames of a window
    g = torch.Generator().manual_seed(settings.seed + 1)
    chosen = torch.randperm(len(windows), generator=g)[: settings.ode_pairs]
    parts, batches = [], math.ceil(len(chosen) / settings.batch_size)
    for i in range(batches):
        index = chosen[i * settings.batch_size : (i + 1) * settings.batch_size]
        portrait = encode(vae, windows.pixels(index)[:, :, :1].to(device))
        audio = windows.features(index).to(device)
        b, z, _, h, w = portrait.shape
        noise = torch.randn(b, z, f, h, w, generator=g).to(device)
        cond = teacher.condition_latents(portrait, 0, f)
        states, clean = ode_states(
            lambda x, t: audio_guided_velocity(teacher, x, t, cond, audio, generator_settings.cfg_audio),
            noise,
            student_sigmas,
            generator_settings.steps,
        )
        parts.append(
            {"portrait": portrait.cpu(), "audio": audio.cpu(), "states": states.cpu(), "clean": clean.cpu()}
        )
        if on_batch:
            on_batch(i + 1, batches)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def student_regression_loss(
    student: WanAudioTransformer, pairs: dict, generator: torch.Generator
) -> torch.Tensor:
    """Teacher forcing in one masked pass (forward_sequence): each chunk, from the teacher's ODE
    state at one of the student's sigmas, to the teacher's clean latents, the past being the
    teacher's clean chunks."""
    states, clean = pairs["states"], pairs["clean"]
    b, s, _, f = states.shape[:4]
    c = student.config.chunk_latent_frames
    level = torch.randint(0, s, (b, f // c), generator=generator).to(states.device)  # a noise level per chunk
    sigma = torch.tensor(student.sigmas, device=states.device)[level]
    per_frame = level.repeat_interleave(c, dim=1)  # (B, F)
    noisy = states.permute(0, 3, 1, 2, 4, 5)[torch.arange(b)[:, None], torch.arange(f)[None], per_frame]
    noisy = noisy.permute(0, 2, 1, 3, 4)  # (B, z, F, H, W)
    cond = student.condition_latents(pairs["portrait"], 0, f)
    v = student.forward_sequence(clean, noisy, sigma * 1000, cond, pairs["audio"], student.cross_kv(b))
    predicted = noisy - sigma.repeat_interleave(c, dim=1)[:, None, :, None, None] * v
    return ((predicted - clean) ** 2).mean()


def distill_video(
    teacher_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: DistillSettings,
    generator_settings: GeneratorSettings,
    device: str = "cpu",
    on_progress: Callable[[str, int, int, float], None] | None = None,
) -> TrainReport:
    """The teacher in `teacher_dir` -> a causal `student_steps`-step student in `out_dir` (resumed if begun).

    Stage 1 of tm distill (ODE pairs, teacher forcing), on trainer.fit. The student is the same
    network as the teacher, its weights the starting point; what makes it causal is the attention
    plan it is trained and run with (forward_sequence / step). The output folder is what `tm
    render --checkpoint` streams: the student, its VAE (vae/) and the pairs it learned from."""
    out = Path(out_dir)
    manifest = read_video_manifest(data_dir)
    teacher = WanAudioTransformer.from_pretrained(teacher_dir).to(device).eval().requires_grad_(False)
    vae_dir = json.loads((Path(teacher_dir) / "train.json").read_text())["vae"]
    vae = load_vae(vae_dir).to(device).eval()
    config = teacher.config
    train = TrainSettings(
        steps=settings.ode_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=0,
        weight_decay=0.0,
        seed=settings.seed,
        checkpoint_every=settings.checkpoint_every,
        log_every=settings.log_every,
    )
    _, train = resumed_settings(out, train)

    def make_student() -> WanAudioTransformer:  # a new run only: a resumed one loads its own
        student = WanAudioTransformer.from_config({**config, "denoising_steps": settings.student_steps})
        student.load_state_dict(teacher.state_dict())
        return student

    record = {
        "stage": "student",
        "teacher": str(Path(teacher_dir).resolve()),
        "vae": "vae",
        "distill": dataclasses.asdict(settings),
        "generator": dataclasses.asdict(generator_settings),
        "data": {"path": str(Path(data_dir).resolve()), "size": manifest["size"]},
    }
    run = start_run(out, WanAudioTransformer, make_student, train, record, device)
    if not (out / "vae" / "config.json").is_file():
        save_pretrained(vae, out / "vae")
    if (out / PAIRS).is_file():
        pairs = torch.load(out / PAIRS, weights_only=True)
    else:  # the data set is read only for the pairs (a resumed run has them)
        frames = window_frames(config.chunk_latent_frames)
        windows = ClipWindows(data_dir, frames, config.audio_context, config.audio_context, stride=frames)
        pairs = make_video_pairs(
            teacher,
            vae,
            windows,
            run.model.sigmas,
            settings,
            generator_settings,
            device,
            lambda i, n: on_progress and on_progress("teacher ODE pairs", i, n, float("nan")),
        )
        torch.save(pairs, out / PAIRS)
    n = len(pairs["clean"])
    return fit(
        run,
        draws(n, train.batch_size, train.seed, run.step),
        lambda index, g: student_regression_loss(
            run.model, {k: v[index].to(device) for k, v in pairs.items()}, g
        ),
        train,
        on_progress and (lambda step, total, loss: on_progress("ode", step, total, loss)),
    )


def mouth_weights(boxes: torch.Tensor, height: int, width: int, weight: float) -> torch.Tensor:
    """(N, 1, 1, H, W) loss weights on an H x W grid: `weight` where a cell's centre lies in the
    sample's mouth box, 1 elsewhere, scaled to a mean of 1 so the loss keeps its size.

    Lip sync is a few cells of a frame: with a uniform loss the video teacher drew a mouth that
    suits any audio (its error there twice the frame's, the right audio lowering it 1-2%)."""
    ys = (torch.arange(height, device=boxes.device) + 0.5) / height
    xs = (torch.arange(width, device=boxes.device) + 0.5) / width
    rows = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])  # (N, H)
    cols = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])  # (N, W)
    w = 1.0 + (weight - 1.0) * (rows[:, :, None] & cols[:, None, :]).float()
    return (w / w.mean((1, 2), keepdim=True))[:, None, None]
