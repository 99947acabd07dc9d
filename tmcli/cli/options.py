"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

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
