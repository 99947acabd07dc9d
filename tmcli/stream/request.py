"""What `tm render` asks for, checked as a whole before any work: one render, or a batch.

The fields are tm render's options, one for one; `RenderRequest` turns them into a preset, the
stage devices and the checkpoint to load, and says whether they make one render (`single`) or
a batch (`batch()`). Everything that involves several options is checked in `check`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tmcli.core.config import Preset, load_preset
from tmcli.core.errors import ConfigError
from tmcli.core.media import is_video
from tmcli.core.runtime import StageDevices
from tmcli.stream.batch import RenderBatch, jobs_from_arguments, preset_for, read_jobs
from tmcli.stream.dub import check_loop
from tmcli.stream.engine import ENGINES, ExportedModel

RATES = (1000, 384000)  # Hz: what --rate accepts for headerless PCM


@dataclass
class RenderRequest:
    portrait: Path | None = None  # with --manifest: the portrait of rows that name none
    audio: list[Path] = field(default_factory=list)  # one, several (a batch), or [] with --motion-in
    output: Path | None = None  # a video, "-", or with several inputs a folder
    motion_out: Path | None = None
    video: bool = True  # False: only the motion_out file
    motion_in: Path | None = None
    manifest: Path | None = None
    skip_existing: bool = False
    num_processes: int = 1
    device: str | None = None
    devices: str | None = None
    dtype: str = "fp32"
    disaggregate: bool = False
    preset: str = "default"
    seed: int = 0
    transcript: str | None = None
    fps: float | None = None
    size: int | None = None
    crop: bool | None = None
    face_index: int = 0
    generator: str = "student"
    checkpoint: Path | None = None
    engine: str = "torch"
    model: Path | None = None  # with engine onnx|torch-export: the export folder
    rate: int | None = None  # the audio is headerless 16-bit mono PCM at this rate
    cfg_scale: float | None = None
    steps: int | None = None
    gaze: str | None = None
    emotion: str | None = None
    pose_intensity: float | None = None
    blink_rate: float | None = None
    loop: str | None = None  # a video face shorter than the audio: pingpong, loop or freeze
    motion_from: Path | None = None  # a video whose head, eyes and brows a portrait takes

    def __post_init__(self) -> None:
        self.audio = list(self.audio or [])
        self.checkpoint = engine_checkpoint(self.engine, self.model, self.checkpoint, self.generator)
        self.settings: Preset = preset_for(load_preset(self.preset), self.job_options)  # bad flags fail here
        self.check()

    @property
    def job_options(self) -> dict:
        """The options a manifest row may also set (its own win)."""
        names = (
            "seed",
            "transcript",
            "face_index",
            "generator",
            "checkpoint",
            "gaze",
            "emotion",
            "pose_intensity",
            "blink_rate",
            "cfg_scale",
            "steps",
            "fps",
            "size",
            "crop",
            "loop",
        )
        return {name: getattr(self, name) for name in names}

    @property
    def launched(self) -> bool:
        """Inside `accelerate launch` or torchrun: every process renders part of a batch."""
        return int(os.environ.get("WORLD_SIZE", "1")) > 1

    @property
    def single(self) -> bool:
        """One render in this process, rather than a batch."""
        one_input = len(self.audio) == 1 or (self.motion_in is not None and not self.audio)
        return self.manifest is None and one_input and self.num_processes == 1 and not self.launched

    def check(self) -> None:
        if self.rate is not None and not RATES[0] <= self.rate <= RATES[1]:
            raise ConfigError(f"--rate must be a sample rate in Hz ({RATES[0]}-{RATES[1]}), got {self.rate}")
        if self.num_processes < 1:
            raise ConfigError(f"--num-processes must be at least 1, got {self.num_processes}")
        self.stage_devices = StageDevices.parse(self.device, self.devices, self.dtype, self.disaggregate)
        if not self.video and self.motion_out is None:
            raise ConfigError(
                "--no-video leaves nothing to write", hint="add --motion-out FILE.json|FILE.csv"
            )
        if self.motion_in is not None:
            if self.manifest is not None or len(self.audio) > 1 or self.num_processes > 1 or self.launched:
                raise ConfigError(
                    "--motion-in renders one video",
                    hint="give PORTRAIT, the motion file and at most one AUDIO",
                )
            if self.audio and str(self.audio[0]) == "-":
                raise ConfigError("--motion-in takes its audio from a file, not standard input")
        if self.single and self.portrait is None:
            raise ConfigError("give PORTRAIT and AUDIO")
        if self.loop is not None:
            check_loop(self.loop)
        if self.single and is_video(self.portrait):
            self.check_dub()
        elif self.motion_from is not None and not is_video(self.motion_from):
            raise ConfigError(f"--motion-from {self.motion_from}: not a video", hint="give a video of a face")

    def check_dub(self) -> None:
        """A video as the face keeps its frame rate, size and frames: only its mouth is re-made."""
        kept = {"--fps": self.fps, "--size": self.size, "--crop/--paste-back": self.crop}
        given = [name for name, value in kept.items() if value is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: a dubbed video keeps the source's frame rate, size and framing",
                hint="leave them out",
            )

    def video_output(self) -> Path | None:
        """A single render's video: -o, else AUDIO's (or the motion file's) name with .mp4 here,
        standard output for standard input; None with --no-video."""
        if not self.video:
            return None
        track = self.audio[0] if self.audio else None
        name = track.stem if track is not None else self.motion_in.stem
        return self.output or Path("-" if str(track) == "-" else name + ".mp4")

    def batch(self) -> RenderBatch:
        """The jobs of a batch: one per AUDIO, or one per manifest row."""
        if self.motion_out is not None or not self.video:
            raise ConfigError(
                "--motion-out and --no-video are for one render", hint="give one PORTRAIT and AUDIO"
            )
        if self.manifest is not None:
            if self.audio:
                raise ConfigError("give AUDIO files or --manifest, not both")
            jobs = read_jobs(self.manifest, self.portrait, self.output)
        else:
            if self.portrait is None or not self.audio:
                raise ConfigError("give PORTRAIT and AUDIO (or --manifest)")
            if any(str(a) == "-" for a in self.audio):
                raise ConfigError("standard input can be the only AUDIO")
            jobs = jobs_from_arguments(self.portrait, self.audio, self.output)
        if self.output is not None and str(self.output) == "-":
            raise ConfigError("many videos cannot all go to standard output", hint="give -o a folder")
        options = {k: v for k, v in self.job_options.items() if v is not None}
        return RenderBatch(
            jobs,
            load_preset(self.preset),
            options,
            self.skip_existing,
            self.device,
            self.devices,
            self.dtype,
            self.disaggregate,
        )


def engine_checkpoint(
    engine: str, model: Path | None, checkpoint: Path | None, generator: str
) -> Path | None:
    """--engine/--model -> the folder the generator loads (an export folder is a checkpoint to it)."""
    if engine == "torch":
        if model is not None:
            raise ConfigError(
                "--model is for --engine onnx or torch-export", hint="use --checkpoint for tm's models"
            )
        return checkpoint
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint=f"use torch, {' or '.join(ENGINES)}")
    if model is None or checkpoint is not None:
        raise ConfigError(f"--engine {engine} needs --model EXPORT_DIR (and no --checkpoint)")
    if generator != "student":
        raise ConfigError("an export holds the streaming student", hint="drop --generator")
    ExportedModel(model, engine, graphs=())  # a missing, damaged or other-format export fails here
    return model
