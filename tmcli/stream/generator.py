"""Learned generators: audio features + controls -> motion, with a trained MotionDiT.

`TeacherGenerator` samples the bidirectional teacher over consecutive windows, each one
conditioned on the last frames of the window before it (VASA-1's sliding windows), with the
flow-matching Euler sampler from diffusers and classifier-free guidance per condition.
`StreamingGenerator` runs the distilled causal student chunk by chunk with a KV cache
(TalkingMachines): 1-4 denoising steps per chunk, audio in, motion out, for ever.
`VideoStreamingGenerator` does the same in the video backend's latent space (video/wan_audio.py),
with the same `denoise_chunk`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tmcli.core.attention import KVCache
from tmcli.core.config import GeneratorSettings, Preset
from tmcli.core.errors import ConfigError, InputError
from tmcli.core.runtime import StageDevices
from tmcli.face.rig import MOTION_DIM
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.controls import GROUPS, Controls
from tmcli.motion.dit import MotionDiT
from tmcli.speech.features import FEATURE_DIM, silence_features
from tmcli.stream.engine import ExportedChunkStep, ExportedModel, GraphedChunkStep, is_export

if TYPE_CHECKING:
    from tmcli.video.wan_audio import WanAudioTransformer

MODEL_CLASSES = {cls.__name__: cls for cls in (MotionDiT, CausalMotionDiT)}


def is_video_checkpoint(path: str | Path) -> bool:
    """Whether `path` holds the video backend's network (WanAudioTransformer), or a `tm export`
    of one, rather than a motion one. Unreadable files say no: the motion loader reports them."""
    config, manifest = Path(path) / "config.json", Path(path) / "manifest.json"
    try:
        if config.is_file():
            return json.loads(config.read_text()).get("_class_name") == "WanAudioTransformer"
        if manifest.is_file():
            return json.loads(manifest.read_text()).get("model", {}).get("class") == "WanAudioTransformer"
    except (ValueError, AttributeError):  # not JSON, or not an object
        pass
    return False


def load_motion_dit(path: str | Path, device: str = "cpu") -> MotionDiT:
    """A teacher or student saved with save_pretrained (config.json + safetensors), with a clear error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path} is not a tm checkpoint (no config.json)", hint="train one with `tm train DATA -o CKPT`"
        )
    try:
        name = json.loads((path / "config.json").read_text()).get("_class_name", "MotionDiT")
        if name not in MODEL_CLASSES:
            raise ValueError(f"unknown model class {name!r}")
        model = MODEL_CLASSES[name].from_pretrained(path)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"cannot load the checkpoint in {path}: {str(exc).splitlines()[0]}") from None
    if model.config.audio_dim != FEATURE_DIM:
        raise InputError(
            f"{path} was trained on {model.config.audio_dim} audio features per frame; "
            f"this tm makes {FEATURE_DIM}",
            hint="train it again with this version of tm",
        )
    return model.to(device).float().eval()  # stored in any dtype (tm export); computed in fp32 or autocast


def split_controls(vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, CONTROL_DIM) -> the model's control groups."""
    out, start = {}, 0
    for name, dim in GROUPS.items():
        out[name] = vector[:, start : start + dim]
        start += dim
    return out


def global_conditions(model: MotionDiT, controls: Controls, neutral: np.ndarray | None) -> dict:
    """The neutral face (normalised) and the controls of one clip, as a batch of one."""
    device = model.motion_mean.device
    neutral_motion = torch.as_tensor(
        neutral if neutral is not None else np.zeros(MOTION_DIM), dtype=torch.float32
    )
    return {
        "neutral": model.normalize(neutral_motion.to(device))[None],
        "controls": split_controls(torch.as_tensor(controls.vector(), device=device)[None]),
    }


def guidance_scales(settings: GeneratorSettings) -> dict[str, float]:
    return {"audio": settings.cfg_audio, **{name: getattr(settings, f"cfg_{name}") for name in GROUPS}}


def guided_velocity(
    model: MotionDiT, x: torch.Tensor, timestep: torch.Tensor, inputs: dict, scales: dict[str, float]
) -> torch.Tensor:
    """Velocity with classifier-free guidance per condition, in one batched call:
    v = v(all) + sum_c (s_c - 1) * (v(all) - v(all but c))."""
    guided = [name for name, s in scales.items() if s != 1.0]
    names = model.condition_names
    b, n = x.shape[0], 1 + len(guided)
    drop = torch.zeros(n, b, len(names), dtype=torch.bool, device=x.device)
    for row, name in enumerate(guided, start=1):
        drop[row, :, names.index(name)] = True

    def repeat(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(n, *([1] * (t.dim() - 1)))

    batch = {
        k: repeat(v) if torch.is_tensor(v) else {c: repeat(t) for c, t in v.items()}
        for k, v in inputs.items()
    }
    v = model(repeat(x), repeat(timestep), drop=drop.flatten(0, 1), **batch).view(n, b, *x.shape[1:])
    out = v[0]
    for row, name in enumerate(guided, start=1):
        out = out + (scales[name] - 1.0) * (v[0] - v[row])
    return out


class TeacherGenerator:
    """Sliding-window sampling of the bidirectional teacher."""

    def __init__(
        self,
        model: MotionDiT,
        settings: GeneratorSettings | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.model, self.autocast = model, autocast
        self.settings = settings or GeneratorSettings()
        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)

    @torch.no_grad()
    def __call__(
        self, features: np.ndarray, controls: Controls, seed: int = 0, neutral: np.ndarray | None = None
    ) -> np.ndarray:
        """features (T, F) from features.generator_features -> motion (T, MOTION_DIM)."""
        model, cfg = self.model, self.model.config
        w, k = cfg.window, cfg.context_frames
        device = model.motion_mean.device
        total = len(features)
        padded = np.concatenate([silence_features(k), features, silence_features(max(0, w - total))])
        generator = torch.Generator().manual_seed(seed)
        const = global_conditions(model, controls, neutral)
        out = torch.zeros(max(total, w), MOTION_DIM, device=device)  # normalised
        done = 0
        while done < total:
            start = min(done, max(total, w) - w)  # the last window ends at the clip's end
            has_context = start >= k  # as in training: a window this close to the start has no full context
            context = out[start - k : start] if has_context else torch.zeros(k, MOTION_DIM, device=device)
            audio = torch.as_tensor(padded[start : start + k + w], device=device)  # padded is offset by k
            inputs = {
                "audio": audio[None],
                "context": context[None],
                "has_context": torch.tensor([has_context], device=device),
                **const,
            }
            noise = torch.randn(1, w, MOTION_DIM, generator=generator).to(device)
            with self.autocast():
                window = self._sample(noise, inputs).float()
            out[done : start + w] = window[0, done - start :]
            done = start + w
        return model.denormalize(out[:total]).cpu().numpy()

    def _sample(self, x: torch.Tensor, inputs: dict) -> torch.Tensor:
        scales = guidance_scales(self.settings)
        self.scheduler.set_timesteps(self.settings.steps, device=x.device)
        for t in self.scheduler.timesteps:
            v = guided_velocity(self.model, x, t.expand(1), inputs, scales)
            x = self.scheduler.step(v, t, x).prev_sample
        return x


def denoise_chunk(
    model,
    inputs: dict,
    cache: KVCache,
    shape: tuple[int, ...],
    generator: torch.Generator,
    exit_step: int | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One chunk in either latent space: few-step sampling against the cache (predict clean,
    re-noise to the next level), then the clean chunk committed to the cache. Normalised, `shape`.

    inputs: the model's `step` arguments besides latents, time and cache (motion: audio, neutral,
    controls; video: cond, audio, cross). exit_step stops early (self-forcing training); where
    gradients are on, they flow through the last step run only, and never into the cache.
    noise: the starting point, if given."""
    b, sigmas = shape[0], model.sigmas
    last = len(sigmas) - 1 if exit_step is None else exit_step
    device = inputs["audio"].device
    x = noise if noise is not None else torch.randn(shape, generator=generator).to(device)
    grad = torch.is_grad_enabled()
    for k in range(last + 1):
        with torch.set_grad_enabled(grad and k == last):
            v = model.step(x, torch.full((b,), sigmas[k] * 1000, device=device), cache=cache, **inputs)
            clean = x - sigmas[k] * v
        if k < last:
            x = (1 - sigmas[k + 1]) * clean + sigmas[k + 1] * torch.randn(x.shape, generator=generator).to(
                device
            )
    with torch.no_grad():
        model.step(clean.detach(), torch.zeros(b, device=device), cache=cache, write=True, **inputs)
    return clean


class StreamingGenerator:
    """The causal student, chunk by chunk: feature rows in, motion chunks out, with a KV cache.

    Rendering a file runs exactly this path, as fast as the features come. A chunk is made
    once the audio past its end (look-ahead and audio context) has arrived; guidance was
    distilled into the student, so each denoising step is one pass of one chunk. The model is
    the student, or its exported or CUDA-graphed chunk step (engine.py) behind the same interface.
    """

    def __init__(
        self,
        model: CausalMotionDiT | ExportedChunkStep | GraphedChunkStep,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        self.model, self.autocast = model, autocast  # autocast: the precision of a GPU run

    @torch.no_grad()
    def stream(
        self,
        features: Iterable[np.ndarray],
        controls: Controls,
        seed: int = 0,
        neutral: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """features: blocks of generator_features rows (any sizes) -> motion (C, MOTION_DIM) blocks.

        Memory holds one chunk's audio span and the KV cache, however long the stream."""
        model, cfg = self.model, self.model.config
        c, r, span = cfg.chunk_frames, cfg.audio_context, model.audio_span
        generator = torch.Generator().manual_seed(seed)
        const = global_conditions(model, controls, neutral)
        cache = model.new_cache()
        pending = silence_features(r)  # audio rows from audio_context frames before the next chunk
        total = 0
        for block in features:
            block = np.asarray(block, dtype=np.float32).reshape(-1, FEATURE_DIM)
            total += len(block)
            pending = np.concatenate([pending, block])
            while len(pending) >= span:
                yield self._chunk(pending[:span], cache, const, generator)
                pending = pending[c:]
        made = cache.chunks * c
        while made < total:  # the end: silence past the last frame
            pending = np.concatenate([pending, silence_features(max(0, span - len(pending)))])
            yield self._chunk(pending[:span], cache, const, generator)[: total - made]
            pending, made = pending[c:], made + c

    def _chunk(
        self, audio: np.ndarray, cache: KVCache, const: dict, generator: torch.Generator
    ) -> np.ndarray:
        audio_t = torch.as_tensor(audio, device=self.model.motion_mean.device)[None]
        with self.autocast():
            shape = (1, self.model.config.chunk_frames, self.model.config.motion_dim)
            clean = denoise_chunk(self.model, {"audio": audio_t, **const}, cache, shape, generator).float()
        return self.model.denormalize(clean[0]).cpu().numpy()

    def __call__(
        self, features: np.ndarray, controls: Controls, seed: int = 0, neutral: np.ndarray | None = None
    ) -> np.ndarray:
        """features (T, F) -> motion (T, MOTION_DIM): the streaming path over a whole clip."""
        chunks = list(self.stream([features], controls, seed, neutral))
        return np.concatenate(chunks) if chunks else np.zeros((0, MOTION_DIM), dtype=np.float32)


class VideoStreamingGenerator:
    """The video backend's causal student, chunk by chunk: feature rows in, latent chunks out.

    The same few-step `denoise_chunk` and KV cache as the motion student's stream; a chunk is
    `chunk_latent_frames` latent frames (1 + 4(c - 1) video frames for the first, 4c after) and
    is made once the audio `audio_context` frames past its last video frame has arrived."""

    def __init__(
        self,
        model: WanAudioTransformer,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        self.model, self.autocast = model, autocast

    @torch.no_grad()
    def stream(
        self,
        features: Iterable[np.ndarray],
        portrait: torch.Tensor,
        seed: int = 0,
        image_embeds: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """features: blocks of generator_features rows (one per video frame, any block sizes);
        portrait: its normalised VAE latent (1, z, 1, h, w) -> normalised latent chunks (1, z, c, h, w)."""
        model, c = self.model, self.model.config.chunk_latent_frames
        device = portrait.device
        generator = torch.Generator().manual_seed(seed)
        cache, cross = model.new_cache(), model.cross_kv(1, image_embeds)
        first_row = model.audio_rows(0, 1)[0]  # rows are video frames; the stream hears silence before 0
        pending, base, total = silence_features(-first_row), first_row, 0  # pending[0] is row `base`

        def chunk(pending: np.ndarray, base: int) -> tuple[torch.Tensor, np.ndarray, int]:
            first = cache.chunks * c
            rows = model.audio_rows(first, c)
            audio = torch.as_tensor(pending[rows[0] - base : rows[-1] + 1 - base], device=device)[None]
            inputs = {"cond": model.condition_latents(portrait, first, c), "audio": audio, "cross": cross}
            with self.autocast():
                latents = denoise_chunk(
                    model, inputs, cache, (1, portrait.shape[1], c, *portrait.shape[-2:]), generator
                )
            keep = model.audio_rows(first + c, c)[0]  # the next chunk's first row
            return latents.float(), pending[keep - base :], keep

        for block in features:
            block = np.asarray(block, dtype=np.float32).reshape(-1, FEATURE_DIM)
            total += len(block)
            pending = np.concatenate([pending, block])
            while base + len(pending) > model.audio_rows(cache.chunks * c, c)[-1]:
                latents, pending, base = chunk(pending, base)
                yield latents
        while model.video_frames(cache.chunks * c)[0] < total:  # the end: silence past the last frame
            need = model.audio_rows(cache.chunks * c, c)[-1] + 1 - (base + len(pending))
            pending = np.concatenate([pending, silence_features(max(0, need))])
            latents, pending, base = chunk(pending, base)
            yield latents


def load_generator(checkpoint: str | Path, preset: Preset, kind: str, devices: StageDevices | None = None):
    """The teacher or student in `checkpoint` on the generator's device, checked against the kind
    and frame rate asked for."""
    devices = devices or StageDevices.cpu()
    if is_export(checkpoint):  # tm export's graphs: the student's chunk step, on the CPU
        if kind != "student" or devices.generator.type != "cpu":
            raise ConfigError(
                "an export runs the student's chunk step on the CPU",
                hint="render it with --generator student and no --device",
            )
        exported = ExportedChunkStep(ExportedModel(checkpoint, graphs=("chunk_step",)))
        if abs(exported.config.fps - preset.output.fps) > 1e-6:
            raise ConfigError(
                f"the export generates {exported.config.fps:g} fps motion; asked for "
                f"{preset.output.fps:g} fps",
                hint=f"render with --fps {exported.config.fps:g}",
            )
        return StreamingGenerator(exported)
    model = load_motion_dit(checkpoint, devices.generator)
    if isinstance(model, CausalMotionDiT) != (kind == "student"):
        made = (
            "a causal student (tm distill)" if isinstance(model, CausalMotionDiT) else "a teacher (tm train)"
        )
        raise ConfigError(
            f"{checkpoint} holds {made}, not a {kind}",
            hint=f"render it with --generator {'student' if kind == 'teacher' else 'teacher'}",
        )
    if abs(model.config.fps - preset.output.fps) > 1e-6:
        raise ConfigError(
            f"the checkpoint generates {model.config.fps:g} fps motion; asked for {preset.output.fps:g} fps",
            hint=f"render with --fps {model.config.fps:g}",
        )
    if kind == "student":
        graphed = devices.generator.type == "cuda" and preset.generator.cuda_graph
        generator = StreamingGenerator(
            GraphedChunkStep(model, devices.autocast) if graphed else model, devices.autocast
        )
    else:
        generator = TeacherGenerator(model, preset.generator, devices.autocast)
    if devices.generator.type == "cuda":  # CUDA starts lazily: pay for it here, not in the first chunk
        generator(silence_features(getattr(model, "audio_span", model.config.window)), Controls())
    return generator
