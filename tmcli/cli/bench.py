"""tm bench: per-device, per-stage latency of the render pipeline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tmcli.cli import options
from tmcli.core.config import load_preset
from tmcli.core.console import console
from tmcli.core.errors import ConfigError

Device = Annotated[
    Optional[str], typer.Option(help="Where every stage runs: cpu, cuda or cuda:N (default cpu).")
]
Devices = Annotated[Optional[str], typer.Option(help="GENERATOR,RENDERER devices, e.g. cuda:0,cuda:1.")]
Dtype = Annotated[str, typer.Option(help="Generator precision on a GPU: fp32, bf16 or fp16.")]
Disaggregate = Annotated[
    bool,
    typer.Option(
        help="Run the generator in a process of its own, sending motion to the renderer's over "
        "torch.distributed (gloo; nccl between GPUs)."
    ),
]
Seconds = Annotated[float, typer.Option(help="Seconds of speech to render (espeak-ng voices).")]
Generator = Annotated[str, typer.Option(help="student, teacher or phonetic.")]
Checkpoint = Annotated[
    Optional[Path], typer.Option(help="Generator folder; default: the one shipped with tm.")
]
Portrait = Annotated[
    Optional[Path], typer.Option(help="Portrait (default: scikit-image's 512x512 astronaut).")
]
Audio = Annotated[
    Optional[Path],
    typer.Option(help="Speech to render instead of espeak-ng's (--seconds is then ignored)."),
]
Size = Annotated[
    Optional[int],
    typer.Option(
        help="Side of the face crop the renderer works at (preset: 512); video presets: the frame side."
    ),
]
Crop = Annotated[
    Optional[bool],
    typer.Option(
        "--crop/--paste-back",
        help="Write only the face square (rendered at --size), or paste it back into the portrait.",
    ),
]
Chunks = Annotated[int, typer.Option(help="Video presets: chunks to stream (the first is timed apart).")]


def bench(
    preset: options.Preset = "default",
    device: Device = None,
    devices: Devices = None,
    dtype: Dtype = "fp32",
    disaggregate: Disaggregate = False,
    seconds: Seconds = 20.0,
    generator: Generator = "student",
    checkpoint: Checkpoint = None,
    portrait: Portrait = None,
    audio: Audio = None,
    size: Size = None,
    crop: Crop = None,
    chunks: Chunks = 8,
    json_path: options.Json = None,
) -> None:
    """Time every stage of a render (load, first frame, chunks, frames/s, memory) on the devices given."""
    from tmcli.core.runtime import StageDevices
    from tmcli.tools.bench import bench as run_bench
    from tmcli.tools.bench import report_table

    if seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {seconds}")
    settings = load_preset(preset)
    if settings.video is not None:  # --size is the frame side of the video backend
        settings = settings.with_overrides(video={"size": size})
        _bench_video(settings, StageDevices.parse(device, devices, dtype), chunks, preset, json_path)
        return
    settings = settings.with_overrides(output={"size": size, "crop": crop})
    report = run_bench(
        settings,
        StageDevices.parse(device, devices, dtype, disaggregate),
        seconds,
        generator,
        checkpoint,
        portrait,
        audio,
        preset,
    )
    _show(report_table(report), report, json_path)


def _show(tables, report, json_path) -> None:
    """The tables, the machine line, and the JSON (to a file, or stdout for '-')."""
    for table in tables:
        console.print(table)
    console.print(f"[dim]{report.machine}; commit {report.commit}; {report.date}[/]")
    if json_path:
        text = json.dumps(dataclasses.asdict(report), indent=1)
        if json_path == "-":
            print(text)
        else:
            Path(json_path).write_text(text + "\n")


def _bench_video(settings, devices, chunks: int, preset: str, json_path) -> None:
    """The video backend's bench: the causal Wan DiT and the streaming VAE decoder, per chunk."""
    from rich.table import Table

    from tmcli.tools.bench_video import bench_video

    if chunks < 2:
        raise ConfigError(f"--chunks must be at least 2 (the first is timed apart), got {chunks}")
    report = bench_video(settings, devices, chunks, preset)
    table = Table(title=f"tm bench --preset {preset} on {report.devices}, {report.dtype}, random weights")
    table.add_column("measure")
    table.add_column("value")
    for row in report.rows():
        table.add_row(*row)
    _show([table], report, json_path)
