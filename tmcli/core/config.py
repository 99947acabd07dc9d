"""Presets: TOML files whose tables map one to one onto frozen dataclasses.

Precedence is flag > preset > default. Unknown tables or keys are an error, so a typo in a
preset never passes silently.
"""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from tmcli.core.errors import ConfigError

PRESET_DIR = resources.files("tmcli") / "presets"  # shipped inside the package: works from a wheel


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    lead: float = 0.04  # s the lips move ahead of the sound
    jaw_gain: float = (
        0.95  # how wide the mouth opens (real speakers' 90th percentile: benchmarks/real_motion.py)
    )
    envelope_floor: float = 0.3  # jaw opening at the quietest voiced sound, relative to the loudest
    brow_gain: float = 1.0
    head_turn: float = 0.09  # rad: the yaw of a phrase said higher or lower than usual (roll follows at 0.3x)
    head_nod: float = 0.13  # rad: a nod on a stressed syllable; the head rises half that with the pitch
    head_sway: float = 0.025  # rad: the slow idle sway under it all
    head_settle: float = 0.12  # s: time constant of a turn's move
    blink_hold: float = 0.12  # s the lids stay shut in a blink


@dataclasses.dataclass(frozen=True)
class WarpSettings:
    field_resolution: int = 64  # coarse grid the smooth warp is evaluated on
    border_anchors: int = 16  # fixed points per crop side
    inverse_iterations: int = 12  # damped fixed-point steps inverting it (MeshWarpRenderer._backward_field)
    stiffness: float = 1e-4  # thin-plate regularisation (relative to the crop side)
    cuda_graph: bool = True  # on a GPU, replay the fixed-shape warp as one CUDA graph (GraphedWarp)


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    size: int = 512  # side of the square face crop the renderer works at
    fps: float = 25.0
    crop: bool = False  # write the face crop instead of pasting it back into the portrait
    crf: int = 18  # x264 quality (lower = better, larger files)
    x264_preset: str = "veryfast"

    def validate(self) -> None:
        if self.size < 64 or self.size % 2:
            raise ConfigError(f"size must be an even number >= 64, got {self.size}")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"fps must be between 1 and 120, got {self.fps}")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Size of the MotionDiT (teacher and student share it)."""

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    window: int = 100  # frames generated per window (4 s at 25 fps)
    context_frames: int = 10  # frames of the previous window the next one is conditioned on
    audio_context: int = 2  # each frame hears this many audio frames either side


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    steps: int = 6000
    batch_size: int = 32
    learning_rate: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 25
    # probability of dropping each condition, so classifier-free guidance works per condition
    drop_audio: float = 0.1
    drop_neutral: float = 0.1
    drop_gaze: float = 0.2
    drop_emotion: float = 0.2
    drop_pose_intensity: float = 0.2
    drop_blink_rate: float = 0.2
    drop_context: float = 0.25  # windows trained as if they were a clip's first


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """The causal student and its distillation from the teacher (tm distill)."""

    chunk_frames: int = 5  # frames per streamed chunk (200 ms at 25 fps)
    window_chunks: int = 8  # past chunks each chunk attends to, besides the first (the sink)
    lookahead_frames: int = 3  # audio-only frames past a chunk's end it hears (+ audio_context)
    student_steps: int = 2  # denoising steps per chunk, 1-4
    ode_pairs: int = 1024  # teacher samples (noise -> motion) for stage 1 and the regression term
    ode_steps: int = 400  # stage 1: regression on the teacher's ODE pairs
    self_forcing_steps: int = 0  # stage 2: regression on rollouts, the student's own past in the cache
    dmd_steps: int = (
        0  # stage 3: distribution matching on self-forcing rollouts; off by default (it stopped the blinks)
    )
    fake_updates: int = 5  # fake-score steps per student step
    regression_weight: float = 0.25  # of the ODE-pair regression beside the DMD loss
    velocity_weight: float = 4.0  # of the frame-to-frame change error in the regression (against jitter)
    data_weight: float = (
        4.0  # of a regression onto the data's own mouth motion beside the teacher's pairs (refining level)
    )
    batch_size: int = 16
    learning_rate: float = 1e-4
    fake_learning_rate: float = 2e-4
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10

    def validate(self) -> None:
        if not 1 <= self.student_steps <= 4:
            raise ConfigError(f"student steps must be 1-4, got {self.student_steps}")
        if (
            min(self.chunk_frames, self.window_chunks, self.ode_pairs, self.batch_size) < 1
            or self.lookahead_frames < 0
        ):
            raise ConfigError(
                "[distill] chunk_frames, window_chunks, ode_pairs and batch_size must be positive"
            )
        if min(self.velocity_weight, self.data_weight, self.regression_weight) < 0:
            raise ConfigError(
                "[distill] velocity_weight, data_weight and regression_weight must not be negative"
            )
        if self.data_weight and self.student_steps < 2:
            raise ConfigError(
                "[distill] data_weight needs at least 2 student steps: the data term trains the "
                "refining ones",
                hint="set data_weight = 0 for a 1-step student (tm distill --student-steps 1 does)",
            )


@dataclasses.dataclass(frozen=True)
class ControlSettings:
    """What a user asks of the motion, whichever generator makes it (one table for all)."""

    gaze_x: float = 0.0  # where the eyes rest, [-1, 1], right positive
    gaze_y: float = 0.0  # down positive
    emotion: str = "neutral"  # neutral | happy | sad | surprised, optionally NAME:STRENGTH
    pose_intensity: float = 1.2  # head motion relative to a calm speaker; 0: the head does not move
    blink_rate: float = 15.0  # blinks per minute

    def validate(self) -> None:
        if not (-1 <= self.gaze_x <= 1 and -1 <= self.gaze_y <= 1):
            raise ConfigError(f"gaze must be in [-1, 1], got {self.gaze_x},{self.gaze_y}")
        if not 0 <= self.pose_intensity <= 3:
            raise ConfigError(f"pose intensity must be in [0, 3], got {self.pose_intensity}")
        if not 0 < self.blink_rate <= 120:
            raise ConfigError(f"blink rate must be in (0, 120] per minute, got {self.blink_rate}")


@dataclasses.dataclass(frozen=True)
class GeneratorSettings:
    """How a learned generator samples motion at render time."""

    steps: int = 16  # Euler steps of the flow-matching sampler (teacher)
    cfg_audio: float = 1.5  # guidance scale per condition; 1 = plain conditional sampling
    cfg_gaze: float = 1.0
    cfg_emotion: float = 1.0
    cfg_pose_intensity: float = 1.0
    cfg_blink_rate: float = 1.0
    # on a GPU, the student's chunk step as one CUDA graph (GraphedChunkStep); off until measured there
    cuda_graph: bool = False
    smooth_cutoff: float = (
        1.0  # Hz: One Euro filter's lowest cutoff on head pose, gaze and brows (smoothing.py); 0 = off
    )
    smooth_beta: float = 1.0  # how fast that cutoff rises with the channel's speed (per unit per second)

    def validate(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise ConfigError(f"steps must be between 1 and 1000, got {self.steps}")
        if min(self.smooth_cutoff, self.smooth_beta) < 0:
            raise ConfigError("[generator] smooth_cutoff and smooth_beta must not be negative")


# AutoencoderKLWan settings; "wan2.1" is the published Wan 2.1 VAE (z 16, 8x spatial, 4x temporal)
VAE_CONFIGS = {
    "wan2.1": {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2},
    "small": {"base_dim": 32, "z_dim": 16, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1},
    "tiny": {"base_dim": 8, "z_dim": 4, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1},
}


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """The video backend: an audio-driven block-causal Wan DiT (video/wan_audio.py) and its VAE.

    Defaults are Wan 2.1 1.3B's transformer; presets video-tiny, video-small, wan-1.3b-audio and
    wan-14b-audio set the rest."""

    vae: str = "wan2.1"  # a VAE_CONFIGS name: wan2.1, small, tiny
    size: int = 512  # frame side in pixels (8 per latent cell)
    num_layers: int = 30
    num_heads: int = 12
    head_dim: int = 128
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096  # width of the prompt embeddings (T5 for Wan)
    text_tokens: int = 512
    image_dim: int = 0  # width of CLIP image tokens (Wan I2V: 1280); 0: no image tokens
    image_tokens: int = 257
    added_kv_proj_dim: int = 0  # Wan I2V: 5120 (= the model width); 0 with image_dim 0
    audio_heads: int = 4  # heads of each block's audio cross-attention (head_dim wide)
    audio_context: int = 2  # video frames either side a latent frame hears
    patch_size: int = 2
    chunk_latent_frames: int = 3
    window_chunks: int = 1  # past chunks each chunk attends to, besides the sink
    denoising_steps: int = 2
    window_stride: int = (
        0  # frames between the teacher's training windows (encoded up front); 0: back to back
    )
    vae_window_frames: int = 0  # frames (1 + 4k) of the VAE's training windows; 0: the teacher's
    vae_warmup_windows: int = 3  # windows a VAE training stream may run before the one it learns from
    mouth_weight: float = 1.0  # training losses weigh the data's mouth boxes this much more than the rest

    def validate(self) -> None:
        if self.vae not in VAE_CONFIGS:
            raise ConfigError(f"[video] vae must be one of {', '.join(VAE_CONFIGS)}, got {self.vae!r}")
        if self.size % (8 * self.patch_size):
            raise ConfigError(f"[video] size must be a multiple of {8 * self.patch_size}, got {self.size}")
        if bool(self.image_dim) != bool(self.added_kv_proj_dim):
            raise ConfigError("[video] image_dim and added_kv_proj_dim go together (Wan I2V) or are both 0")
        if not 1 <= self.denoising_steps <= 4:
            raise ConfigError(f"[video] denoising_steps must be 1-4, got {self.denoising_steps}")
        if self.mouth_weight < 1:
            raise ConfigError(f"[video] mouth_weight must be 1 or more, got {self.mouth_weight}")
        if self.vae_window_frames < 0 or (self.vae_window_frames and self.vae_window_frames % 4 != 1):
            raise ConfigError(
                f"[video] vae_window_frames must be 1 + 4k (or 0), got {self.vae_window_frames}"
            )
        if self.vae_warmup_windows < 0:
            raise ConfigError(f"[video] vae_warmup_windows must be 0 or more, got {self.vae_warmup_windows}")

    def model_config(self) -> dict:
        """WanAudioTransformer's arguments (its latent channels: the VAE's)."""
        names = (
            "num_layers",
            "num_heads",
            "head_dim",
            "ffn_dim",
            "freq_dim",
            "text_dim",
            "text_tokens",
            "audio_heads",
            "audio_context",
            "patch_size",
            "chunk_latent_frames",
            "window_chunks",
            "denoising_steps",
        )
        return {
            "latent_channels": VAE_CONFIGS[self.vae]["z_dim"],
            "image_dim": self.image_dim or None,
            "added_kv_proj_dim": self.added_kv_proj_dim or None,
            **{n: getattr(self, n) for n in names},
        }


@dataclasses.dataclass(frozen=True)
class Preset:
    output: OutputSettings = OutputSettings()
    driver: DriverSettings = DriverSettings()
    warp: WarpSettings = WarpSettings()
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    distill: DistillSettings = DistillSettings()
    generator: GeneratorSettings = GeneratorSettings()
    controls: ControlSettings = ControlSettings()
    video: VideoSettings | None = None  # set: the preset is the video backend's

    def with_overrides(self, **tables: dict[str, Any]) -> "Preset":
        """Apply flags: `with_overrides(output={"fps": 30})`; None values are ignored."""
        changes = {}
        for table, values in tables.items():
            values = {k: v for k, v in values.items() if v is not None}
            section = getattr(self, table)
            if section is None and values:
                section = VideoSettings()
            changes[table] = _replace(section, values, table) if values else section
        preset = dataclasses.replace(self, **changes)
        preset.output.validate()
        preset.generator.validate()
        preset.controls.validate()
        preset.distill.validate()
        if preset.video is not None:
            preset.video.validate()
        return preset


def _replace(section, values: dict[str, Any], table: str):
    known = {f.name: f for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting [{table}] {key}", hint=f"known: {', '.join(known)}")
        expected = type(getattr(section, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(values[key], expected):
            raise ConfigError(f"[{table}] {key} must be {expected.__name__}, got {value!r}")
    return dataclasses.replace(section, **values)


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in PRESET_DIR.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str = "default") -> Preset:
    path = (
        PRESET_DIR / f"{name_or_path}.toml"
    )  # a shipped preset's name (names may hold dots: wan-1.3b-audio)
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"preset {name_or_path} not found", hint=f"known presets: {', '.join(preset_names())}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    preset = Preset()
    tables = {f.name for f in dataclasses.fields(Preset)}
    for table in data:
        if table not in tables:
            raise ConfigError(
                f"unknown table [{table}] in {path}", hint=f"known: {', '.join(sorted(tables))}"
            )
    return preset.with_overrides(**{t: dict(v) for t, v in data.items()})
