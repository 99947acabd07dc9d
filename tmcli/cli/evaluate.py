"""tm eval: lip-sync figures for a rendered video, with no downloaded judge."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..console import console
from . import options


def evaluate(
    video: Annotated[Path, typer.Argument(help="Rendered video (mp4).")],
    audio: Annotated[Path, typer.Argument(help="The speech it should follow.")],
    transcript: options.Transcript = None,
    json_out: options.Json = None,
) -> None:
    """Measure how well VIDEO's mouth follows AUDIO: offset, correlation, closures, stability."""
    from ..evaluate import evaluate_video

    report = evaluate_video(video, audio, transcript=transcript)
    table = Table(title=f"tm eval: {video.name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    for name, value, target in report.rows():
        table.add_row(name, value, target)
    if json_out == "-":
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        console.print(table)
        if json_out:
            Path(json_out).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
