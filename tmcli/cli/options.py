"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Preset = Annotated[str, typer.Option("--preset", help="Preset name (presets/*.toml) or path to a .toml file.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for blinks, gaze and head motion.")]
Transcript = Annotated[Optional[str], typer.Option(
    "--transcript", help="What is said (English). Phones are then force-aligned instead of recognised.")]
Json = Annotated[Optional[str], typer.Option("--json", help="Also write the figures as JSON to this file ('-' for stdout).")]
