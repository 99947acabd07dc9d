"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tmcli.core.console import console

Preset = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Preset: a name shipped with tm (default, still, large, tiny, video-tiny, video-small, "
        "wan-1.3b-audio, wan-14b-audio) or a .toml file.",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for blinks, gaze and head motion.")]
Transcript = Annotated[
    Optional[str],
    typer.Option(
        "--transcript", help="What is said (English). Phones are then force-aligned instead of recognised."
    ),
]
Json = Annotated[
    Optional[str],
    typer.Option("--json", help="Also write the figures as JSON to this file ('-' for stdout)."),
]


def progress(label: str, quiet: bool, counted: bool = True, described: bool = True) -> Progress:
    """The commands' progress bar, on stderr (stdout may carry video): LABEL, the bar, done of
    total and the time left (counted), or the time so far; the task's description if `described`."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn()]
    columns += [MofNCompleteColumn()] if counted else []
    columns += [TextColumn("{task.description}")] if described else []
    columns += [TimeRemainingColumn() if counted else TimeElapsedColumn()]
    return Progress(*columns, console=console, transient=True, disable=quiet)
