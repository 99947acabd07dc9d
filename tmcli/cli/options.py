"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Preset = Annotated[str, typer.Option("--preset", help="Preset: a name shipped with tm (default, still, large, tiny, video-tiny, video-small, wan-1.3b-audio, wan-14b-audio) or a .toml file.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for blinks, gaze and head motion.")]
Transcript = Annotated[Optional[str], typer.Option(
    "--transcript", help="What is said (English). Phones are then force-aligned instead of recognised.")]
Json = Annotated[Optional[str], typer.Option("--json", help="Also write the figures as JSON to this file ('-' for stdout).")]


def parse_pair(text: str, flag: str) -> tuple[float, float]:
    """'0.3,-0.1' -> (0.3, -0.1), or a one-line error naming the flag."""
    from tmcli.core.errors import ConfigError

    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes two numbers X,Y, got {text!r}") from None
    return x, y
