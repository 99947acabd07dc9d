"""The two latent spaces behind one seam: a command asks the space of its preset or checkpoint
to train, distill, check an export's inputs or bench, and never asks which space it has.

Motion (VASA-1's representation: MotionDiT and its causal student, rendered by the mesh warp)
and video (TalkingMachines at paper scale: the Wan audio DiT, decoded by the streaming VAE)
share the streaming core (stream/). `render` and `tools.export.export` take either kind of
checkpoint themselves, so library callers need no seam; what differs between the spaces for
the other commands is here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError

# (step, total, loss) while training; (stage, step, total, loss) while distilling
OnStep = Callable[[int, int, float], None]
OnProgress = Callable[[str, int, int, float], None]


@dataclass(frozen=True)
class BenchOptions:
    """What `tm bench` asks for; each space reads the fields that concern it."""

    preset_name: str
    device: str | None = None
    devices: str | None = None
    dtype: str = "fp32"
    disaggregate: bool = False  # motion: the generator in a process of its own
    seconds: float = 20.0  # motion: speech rendered (espeak-ng voices unless audio)
    generator: str = "student"
    checkpoint: Path | None = None
    portrait: Path | None = None
    audio: Path | None = None
    size: int | None = None  # motion: the face crop's side; video: the frame's
    crop: bool | None = None
    chunks: int = 8  # video: chunks streamed (the first is timed apart)


class MotionSpace:
    """Motion latents: a teacher trained on `tm data synth`/`extract` sets, a student distilled
    in three stages, exports with the face rig and the warp, `tm bench` over a real render."""

    name = "motion"

    def train(
        self,
        data_dir: Path,
        out: Path,
        preset: Preset,
        device: str,
        on_step: OnStep,
        *,
        init: Path | None = None,
        stage: str = "teacher",
        vae: Path | None = None,
    ):
        from tmcli.train.trainer import train

        return train(data_dir, out, preset.model, preset.train, device=device, on_step=on_step, init=init)

    def check_distill(self, teacher: Path, data_dir: Path, preset: Preset) -> None:
        """A bad checkpoint or a folder that is not a data set fails here, in one line."""
        from tmcli.stream.generator import load_motion_dit
        from tmcli.train.shards import read_manifest

        load_motion_dit(teacher)
        read_manifest(data_dir)

    def distill(
        self, teacher: Path, data_dir: Path, out: Path, preset: Preset, device: str, on_progress: OnProgress
    ):
        from tmcli.train.distill import distill

        return distill(teacher, data_dir, out, preset.distill, preset.generator, on_progress=on_progress)

    def export_face_size(self, checkpoint: Path) -> int | None:
        """None: the export is checked on a portrait's rig and warp, not on a face crop."""
        from tmcli.stream.generator import load_motion_dit

        load_motion_dit(checkpoint)  # a bad checkpoint fails here, in one line
        return None

    def bench(self, preset: Preset, o: BenchOptions) -> tuple[list, object]:
        """A real render of `o.seconds` of speech, timed stage by stage -> (rich tables, report)."""
        from tmcli.core.runtime import StageDevices
        from tmcli.tools.bench import bench, report_table

        if o.seconds <= 0:
            raise ConfigError(f"--seconds must be positive, got {o.seconds}")
        preset = preset.with_overrides(output={"size": o.size, "crop": o.crop})
        devices = StageDevices.parse(o.device, o.devices, o.dtype, o.disaggregate)
        report = bench(
            preset, devices, o.seconds, o.generator, o.checkpoint, o.portrait, o.audio, o.preset_name
        )
        return report_table(report), report


class VideoSpace:
    """Video latents: a VAE then a teacher trained on a `tm data video` set, a student distilled
    on ODE pairs, exports of the chunk step and the VAE, `tm bench` over random weights."""

    name = "video"

    def train(
        self,
        data_dir: Path,
        out: Path,
        preset: Preset,
        device: str,
        on_step: OnStep,
        *,
        init: Path | None = None,
        stage: str = "teacher",
        vae: Path | None = None,
    ):
        from tmcli.train.vae import train_vae
        from tmcli.train.video import train_teacher

        if stage not in ("vae", "teacher"):
            raise ConfigError(f"--stage must be vae or teacher, got {stage!r}")
        if stage == "teacher" and vae is None:
            raise ConfigError(
                "--stage teacher needs --vae DIR",
                hint="train one first: tm train DATA -o VAE_DIR --stage vae, with the same --preset",
            )
        if stage == "vae":
            return train_vae(data_dir, out, preset, device, init=vae, on_step=on_step)
        return train_teacher(data_dir, vae, out, preset, device, on_step=on_step)

    def check_distill(self, teacher: Path, data_dir: Path, preset: Preset) -> None:
        from tmcli.train.video_data import read_video_manifest

        if preset.distill.self_forcing_steps or preset.distill.dmd_steps:
            raise ConfigError(
                "the video backend distils with the ODE stage only",
                hint="leave out --self-forcing-steps and --dmd-steps",
            )
        read_video_manifest(data_dir)

    def distill(
        self, teacher: Path, data_dir: Path, out: Path, preset: Preset, device: str, on_progress: OnProgress
    ):
        from tmcli.train.video import distill_video

        return distill_video(teacher, data_dir, out, preset.distill, preset.generator, device, on_progress)

    def export_face_size(self, checkpoint: Path) -> int | None:
        """The face crop's side the student was trained on: the export is checked on it."""
        from tmcli.core.runtime import StageDevices
        from tmcli.stream.video import VideoStudent

        return VideoStudent(checkpoint, StageDevices.cpu()).size  # a bad student fails here, in one line

    def bench(self, preset: Preset, o: BenchOptions) -> tuple[list, object]:
        """The causal Wan DiT and the streaming VAE decoder, with random weights, chunk by chunk."""
        from tmcli.core.runtime import StageDevices
        from tmcli.tools.bench_video import bench_video, report_table

        if o.seconds <= 0:
            raise ConfigError(f"--seconds must be positive, got {o.seconds}")
        if o.chunks < 2:
            raise ConfigError(f"--chunks must be at least 2 (the first is timed apart), got {o.chunks}")
        preset = preset.with_overrides(video={"size": o.size})  # --size is the frame side here
        report = bench_video(
            preset, StageDevices.parse(o.device, o.devices, o.dtype), o.chunks, o.preset_name
        )
        return [report_table(report)], report


LatentSpace = MotionSpace | VideoSpace
MOTION, VIDEO = MotionSpace(), VideoSpace()


def of_checkpoint(path: str | Path) -> LatentSpace:
    """The space of a checkpoint folder (a `tm export` of one included)."""
    from tmcli.stream.generator import is_video_checkpoint

    return VIDEO if is_video_checkpoint(path) else MOTION


def of_preset(preset: Preset) -> LatentSpace:
    """The space a preset trains: video presets have a [video] table."""
    return MOTION if preset.video is None else VIDEO
