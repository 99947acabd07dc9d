"""tm eval: lip-sync figures for a rendered video, with no downloaded judge."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tmcli.cli import options
from tmcli.core.console import console


def evaluate(
    video: Annotated[Path, typer.Argument(help="Rendered video (mp4).")],
    audio: Annotated[Path, typer.Argument(help="The speech it should follow.")],
    transcript: options.Transcript = None,
    reference: Annotated[
        Optional[Path],
        typer.Option(
            "--reference",
            help="A video of the same speech (a real recording, another system's render): compare "
            "lips, head motion, blinks and jitter with it frame by frame instead.",
        ),
    ] = None,
    json_out: options.Json = None,
) -> None:
    """Measure how well VIDEO's mouth follows AUDIO: offset, correlation, closures, stability.

    With --reference: VIDEO against a video of the same speech, frame by frame (lip gap, opening,
    mouth shape, head sway, blinks, jitter; both read back with the face mesh)."""
    if reference is not None:
        from tmcli.tools.reference import evaluate_reference

        report = evaluate_reference(video, reference, audio)
        columns = ("measure", "video", "reference")
        title = f"tm eval: {video.name} against {reference.name}"
    else:
        from tmcli.tools.evaluate import evaluate_video

        report = evaluate_video(video, audio, transcript=transcript)
        columns = ("measure", "value", "target")
        title = f"tm eval: {video.name}"
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i else "left")
    for row in report.rows():
        table.add_row(*row)
    if json_out == "-":
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        console.print(table)
        if json_out:
            Path(json_out).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
