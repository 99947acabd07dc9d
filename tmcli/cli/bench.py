"""tm bench: per-device, per-stage latency of the render pipeline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tmcli import spaces
from tmcli.cli import options
from tmcli.core.config import load_preset
from tmcli.core.console import console

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
    given = {name: value for name, value in locals().items() if name not in ("preset", "json_path")}
    settings = load_preset(preset)
    tables, report = spaces.of_preset(settings).bench(settings, spaces.BenchOptions(preset, **given))
    _show(tables, report, json_path)


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
