"""What the student is distilled with: the teacher's ODE pairs, regression on them and on the
student's own rollouts (self forcing), a data term on the mouth, and distribution matching (DMD)
against a fake score network. distill.py runs them in stages."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch

from tmcli.core.attention import KVCache
from tmcli.core.config import DistillSettings, GeneratorSettings
from tmcli.face.rig import ARTICULATION, INDEX
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.dit import MotionDiT
from tmcli.speech.features import silence_features
from tmcli.stream.generator import denoise_chunk, guidance_scales, guided_velocity, split_controls
from tmcli.train.windows import Batch, WindowStream

MOUTH = [INDEX[name] for name in ARTICULATION]


@dataclasses.dataclass
class Clips:
    """Conditions of a batch of clips, in the forms the teacher and the student take them."""

    teacher_audio: torch.Tensor  # (B, K + W, F): silent context, as a clip's first window
    student_audio: torch.Tensor  # (B, W + lookahead + 2 r, F)
    neutral: torch.Tensor  # (B, D) normalised
    controls: torch.Tensor  # (B, CONTROL_DIM)

    def teacher_inputs(self, teacher: MotionDiT) -> dict:
        b, k = len(self.neutral), teacher.config.context_frames
        return {
            "audio": self.teacher_audio,
            "context": torch.zeros(b, k, self.neutral.shape[-1]),
            "has_context": torch.zeros(b, dtype=torch.bool),
            "neutral": self.neutral,
            "controls": split_controls(self.controls),
        }

    def student_inputs(self) -> dict:
        return {
            "audio": self.student_audio,
            "neutral": self.neutral,
            "controls": split_controls(self.controls),
        }

    def select(self, index: torch.Tensor) -> Clips:
        return Clips(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def clips_of(batch: Batch, teacher: MotionDiT, student: CausalMotionDiT) -> Clips:
    k, r = teacher.config.context_frames, student.config.audio_context
    b, w = batch.motion.shape[:2]
    after = student.config.lookahead_frames + r
    teacher_audio = batch.audio.clone()
    teacher_audio[:, :k] = torch.as_tensor(silence_features(k))
    student_audio = torch.cat(
        [
            torch.as_tensor(silence_features(r)).expand(b, r, -1),
            batch.audio[:, k:],
            torch.as_tensor(silence_features(after)).expand(b, after, -1),
        ],
        dim=1,
    )
    return Clips(teacher_audio, student_audio, teacher.normalize(batch.neutral), batch.controls)


def new_student(teacher: MotionDiT, settings: DistillSettings) -> CausalMotionDiT:
    if teacher.config.window % settings.chunk_frames:
        raise ValueError(
            f"the teacher's window ({teacher.config.window} frames) is not a whole number of "
            f"{settings.chunk_frames}-frame chunks"
        )
    return CausalMotionDiT.from_teacher(
        teacher,
        chunk_frames=settings.chunk_frames,
        window_chunks=settings.window_chunks,
        lookahead_frames=settings.lookahead_frames,
        denoising_steps=settings.student_steps,
    )


@torch.no_grad()
def ode_states(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    student_sigmas: list[float],
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's Euler ODE from `noise` (velocity(x, t) guided as the teacher samples), on a grid of
    about `steps` that passes through the student's sigmas: (its states there (B, S, ...), clean)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    n = len(student_sigmas)
    steps = math.ceil(steps / n) * n
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    scheduler.set_timesteps(sigmas=[1.0 - i / steps for i in range(steps)])
    x, states = noise, []
    for i, t in enumerate(scheduler.timesteps):
        if i % (steps // n) == 0:
            states.append(x)
        x = scheduler.step(velocity(x, t.expand(len(x))), t, x).prev_sample
    return torch.stack(states, dim=1), x


def teacher_ode(
    teacher: MotionDiT,
    clips: Clips,
    noise: torch.Tensor,
    student_sigmas: list[float],
    generator_settings: GeneratorSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The motion teacher's guided ODE: (states at the student's sigmas (B, S, W, D), clean)."""
    inputs, scales = clips.teacher_inputs(teacher), guidance_scales(generator_settings)
    return ode_states(
        lambda x, t: guided_velocity(teacher, x, t, inputs, scales),
        noise,
        student_sigmas,
        generator_settings.steps,
    )


def make_ode_pairs(
    teacher: MotionDiT,
    student: CausalMotionDiT,
    data_dir: Path,
    settings: DistillSettings,
    generator_settings: GeneratorSettings,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict:
    """`ode_pairs` teacher samples: the clips' conditions, ODE states and clean motion, and the
    windows' own (normalised) motion with the frames it counts."""
    w = teacher.config.window
    stream = WindowStream(data_dir, w, teacher.config.context_frames, settings.batch_size, settings.seed + 1)
    parts = []
    batches = math.ceil(settings.ode_pairs / settings.batch_size)
    for i, batch in zip(range(batches), stream()):
        clips = clips_of(batch, teacher, student)
        g = torch.Generator().manual_seed(settings.seed * 1_000_003 + i)
        noise = torch.randn(len(batch.motion), w, teacher.config.motion_dim, generator=g)
        states, clean = teacher_ode(teacher, clips, noise, student.sigmas, generator_settings)
        parts.append(
            {
                **dataclasses.asdict(clips),
                "states": states,
                "clean": clean,
                "data": teacher.normalize(batch.motion),
                "valid": batch.valid,
            }
        )
        if on_batch:
            on_batch(i + 1, batches)
    return {k: torch.cat([p[k] for p in parts])[: settings.ode_pairs] for k in parts[0]}


def regression_loss(
    student: CausalMotionDiT,
    pairs: dict,
    index: torch.Tensor,
    g: torch.Generator,
    velocity_weight: float = 0.0,
) -> torch.Tensor:
    """Teacher forcing: each chunk from the ODE state at one of the student's sigmas -> the teacher's motion.

    velocity_weight adds the error of frame-to-frame changes: a few-step student that lets some
    of its input noise through jitters in place, which the per-frame error barely sees."""
    clips = pairs_clips(pairs, index)
    states, clean = pairs["states"][index], pairs["clean"][index]
    b, s, w, d = states.shape
    c = student.config.chunk_frames
    level, sigma = chunk_levels(student, b, w, g)
    pick = level.repeat_interleave(c, dim=1)[:, None, :, None].expand(b, 1, w, d)
    noisy = states.gather(1, pick)[:, 0]
    v = student.forward_sequence(clean, noisy, sigma * 1000, **clips.student_inputs())
    predicted = noisy - sigma.repeat_interleave(c, dim=1)[..., None] * v
    return regression_error(predicted, clean, velocity_weight)


def data_regression_loss(
    student: CausalMotionDiT, pairs: dict, index: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Teacher forcing on the data itself: each chunk of the window's own motion, noised to one of
    the student's refining sigmas (below 1, where its later steps re-noise), -> that motion; the
    mouth's channels only.

    The teacher hedges on short, weak vowels (some of its samples open them, some do not); the
    data, the phonetic driver on the true phones, opens each one. Head motion and blinks are
    random given the audio: regressing them onto the data would average them away, so they are
    left to the teacher's pairs. For the same reason the first level, pure noise, is left out:
    there the data's mouth can only be predicted by ignoring the noise, and the shared network
    then ignores it everywhere, but the noise is where the blinks come from."""
    if "data" not in pairs:
        raise ValueError("these ODE pairs predate data regression; delete ode_pairs.pt to remake them")
    if len(student.sigmas) < 2:
        raise ValueError("data regression needs at least 2 student steps: it trains the refining ones")
    clips = pairs_clips(pairs, index)
    data, valid = pairs["data"][index], pairs["valid"][index]
    _, sigma = chunk_levels(student, len(data), data.shape[1], g, first=1)
    frame_sigma = sigma.repeat_interleave(student.config.chunk_frames, dim=1)[..., None]
    noisy = (1 - frame_sigma) * data + frame_sigma * torch.randn(data.shape, generator=g)
    v = student.forward_sequence(data, noisy, sigma * 1000, **clips.student_inputs())
    error = ((noisy - frame_sigma * v - data)[..., MOUTH] ** 2) * valid[..., None]
    return error.sum() / (valid.sum() * len(MOUTH)).clamp(min=1)


def chunk_levels(
    student: CausalMotionDiT, b: int, w: int, g: torch.Generator, first: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random one of the student's noise levels (from level `first` on) per chunk of each clip:
    (index, sigma), (B, W // C)."""
    level = torch.randint(first, len(student.sigmas), (b, w // student.config.chunk_frames), generator=g)
    return level, torch.tensor(student.sigmas)[level]


def pairs_clips(pairs: dict, index: torch.Tensor) -> Clips:
    return Clips(*(pairs[f.name][index] for f in dataclasses.fields(Clips)))


def regression_error(predicted: torch.Tensor, clean: torch.Tensor, velocity_weight: float) -> torch.Tensor:
    loss = ((predicted - clean) ** 2).mean()
    if velocity_weight:
        loss = loss + velocity_weight * ((predicted.diff(dim=1) - clean.diff(dim=1)) ** 2).mean()
    return loss


def rollout_regression(
    student: CausalMotionDiT,
    pairs: dict,
    index: torch.Tensor,
    g: torch.Generator,
    velocity_weight: float = 0.0,
) -> torch.Tensor:
    """Self forcing with the regression target: the pairs streamed chunk by chunk with the KV cache.

    Each chunk is predicted from the teacher's ODE state at a random student sigma (with
    gradient), then sampled from the pair's own starting noise as at inference and committed to
    the cache (without), so later chunks attend to the student's samples, not the teacher's."""
    clips = pairs_clips(pairs, index)
    states, clean = pairs["states"][index], pairs["clean"][index]
    b, s, w, _ = states.shape
    c = student.config.chunk_frames
    inputs = clips.student_inputs()
    const = {"neutral": inputs["neutral"], "controls": inputs["controls"]}
    cache = KVCache(student.config.num_layers, student.config.window_chunks)
    rows, predicted = torch.arange(b), []
    for i in range(w // c):
        frames = slice(i * c, (i + 1) * c)
        audio = inputs["audio"][:, i * c : i * c + student.audio_span]
        level = torch.randint(0, s, (b,), generator=g)
        sigma = torch.tensor(student.sigmas)[level]
        noisy = states[rows, level, frames]
        v = student.step(noisy, sigma * 1000, audio, cache, **const)
        predicted.append(noisy - sigma.view(b, 1, 1) * v)
        with torch.no_grad():
            denoise_chunk(
                student, {"audio": audio, **const}, cache, noisy.shape, g, noise=states[:, 0, frames]
            )
    return regression_error(torch.cat(predicted, dim=1), clean, velocity_weight)


def rollout(student: CausalMotionDiT, clips: Clips, g: torch.Generator) -> torch.Tensor:
    """Self forcing: a whole clip streamed chunk by chunk with the KV cache, normalised (B, W, D).

    Each chunk stops at a random denoising step (the same across the batch), the only one the
    gradient flows through; the cache is written without gradient, as at inference."""
    cfg = student.config
    c = cfg.chunk_frames
    w = clips.student_audio.shape[1] - student.audio_span + c
    inputs = clips.student_inputs()
    cache = KVCache(cfg.num_layers, cfg.window_chunks)
    out = []
    const = {"neutral": inputs["neutral"], "controls": inputs["controls"]}
    for i in range(w // c):
        audio = inputs["audio"][:, i * c : i * c + student.audio_span]
        exit_step = int(torch.randint(0, len(student.sigmas), (1,), generator=g))
        out.append(
            denoise_chunk(
                student, {"audio": audio, **const}, cache, (len(audio), c, cfg.motion_dim), g, exit_step
            )
        )
    return torch.cat(out, dim=1)


def dmd_loss(
    student_clip: torch.Tensor,
    teacher: MotionDiT,
    fake: MotionDiT,
    clips: Clips,
    generator_settings: GeneratorSettings,
    g: torch.Generator,
) -> torch.Tensor:
    """DMD: move the student's clip along (fake - real) denoised predictions at a random noise level."""
    b = len(student_clip)
    sigma = (0.02 + 0.96 * torch.rand(b, generator=g)).view(b, 1, 1)
    noisy = (1 - sigma) * student_clip.detach() + sigma * torch.randn(student_clip.shape, generator=g)
    with torch.no_grad():
        inputs = clips.teacher_inputs(teacher)
        real = noisy - sigma * guided_velocity(
            teacher, noisy, sigma.view(b) * 1000, inputs, guidance_scales(generator_settings)
        )
        fake_pred = noisy - sigma * fake(noisy, sigma.view(b) * 1000, **inputs)
        weight = (student_clip.detach() - real).abs().mean(dim=(1, 2), keepdim=True).clamp(min=1e-4)
        grad = (fake_pred - real) / weight
    return 0.5 * ((student_clip - (student_clip - grad).detach()) ** 2).mean()


def fake_loss(fake: MotionDiT, student_clip: torch.Tensor, clips: Clips, g: torch.Generator) -> torch.Tensor:
    """Flow matching of the fake-score network on the student's clips: it learns what the student makes."""
    x0 = student_clip.detach()
    b = len(x0)
    sigma = torch.sigmoid(torch.randn(b, generator=g)).view(b, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    v = fake((1 - sigma) * x0 + sigma * noise, sigma.view(b) * 1000, **clips.teacher_inputs(fake))
    return ((v - (noise - x0)) ** 2).mean()
