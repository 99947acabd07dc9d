"""tm render: a portrait and speech become a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import load_preset
from ..console import console
from . import options


def render(
    portrait: Annotated[Path, typer.Argument(help="Portrait image (png, jpg, webp, ...). Any size; the largest face is used.")],
    audio: Annotated[Path, typer.Argument(help="Speech: wav, flac, ogg, mp3, m4a, or a video file's audio track.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output mp4 (default: AUDIO's name with .mp4, here).")] = None,
    preset: options.Preset = "default",
    seed: options.Seed = 0,
    transcript: options.Transcript = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second (preset: 25).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Side of the face crop the renderer works at (preset: 512).")] = None,
    crop: Annotated[Optional[bool], typer.Option("--crop/--paste-back", help="Write only the aligned face square, or paste it back into the portrait.")] = None,
    face_index: Annotated[int, typer.Option(help="Which face when there are several: 0 is the largest.")] = 0,
    pose_intensity: Annotated[Optional[float], typer.Option(help="Head motion, 0 (still) to 2 (lively); preset: 1.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Render AUDIO spoken by the face in PORTRAIT to an mp4 (H.264 + AAC)."""
    from ..pipeline import render as run_render

    settings = load_preset(preset).with_overrides(
        output={"fps": fps, "size": size, "crop": crop},
        driver={"pose_intensity": pose_intensity},
    )
    output = output or Path(audio.stem + ".mp4")
    with Progress(TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task("render", total=None)
        result = run_render(portrait, audio, output, settings, seed=seed, transcript=transcript,
                            face_index=face_index,
                            on_frame=lambda done, total: progress.update(task, completed=done, total=total))
    if not quiet:
        total = result.wall_seconds
        console.print(f"wrote {output}: {result.frames} frames, {result.seconds_of_audio:.2f} s "
                      f"in {total:.1f} s ({result.seconds_of_audio / max(total, 1e-9):.1f}x real time)")
