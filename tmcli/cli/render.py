"""tm render: a portrait and speech become a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ..config import load_preset
from ..console import console
from ..errors import ConfigError
from . import options


def render(
    portrait: Annotated[Path, typer.Argument(help="Portrait image (png, jpg, webp, ...). Any size; the largest face is used.")],
    audio: Annotated[Path, typer.Argument(help="Speech: wav, flac, ogg, mp3, m4a, a video file's audio track, or - for standard input.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output mp4, or - for standard output (default: AUDIO's name with .mp4, here; standard output when AUDIO is -).")] = None,
    preset: options.Preset = "default",
    seed: options.Seed = 0,
    transcript: options.Transcript = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second (preset: 25).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Side of the face crop the renderer works at (preset: 512).")] = None,
    crop: Annotated[Optional[bool], typer.Option("--crop/--paste-back", help="Write only the aligned face square, or paste it back into the portrait.")] = None,
    face_index: Annotated[int, typer.Option(help="Which face when there are several: 0 is the largest.")] = 0,
    generator: Annotated[str, typer.Option(help="student (the causal streaming student), teacher (the bidirectional motion diffusion teacher) or phonetic (phones -> visemes, no weights).")] = "student",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Folder of a trained generator (tm train / tm distill); default: the one shipped with tm.")] = None,
    rate: Annotated[Optional[int], typer.Option(help="AUDIO is headerless 16-bit mono PCM at this sample rate (for pipes).")] = None,
    cfg_scale: Annotated[Optional[float], typer.Option(help="Audio guidance of a learned generator; 1 = none (preset: 1.5).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps of a learned generator (preset: 16).")] = None,
    gaze: Annotated[Optional[str], typer.Option(help="Where the eyes rest: X,Y in [-1, 1], right/down positive (preset: 0,0).")] = None,
    emotion: Annotated[Optional[str], typer.Option(help="neutral, happy, sad or surprised, optionally NAME:STRENGTH; mixes with commas.")] = None,
    pose_intensity: Annotated[Optional[float], typer.Option(help="Head motion, 0 (still) to 2 (lively); preset: 1.")] = None,
    blink_rate: Annotated[Optional[float], typer.Option(help="Blinks per minute (preset: 15).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Render AUDIO spoken by the face in PORTRAIT to an mp4 (H.264 + AAC)."""
    from ..pipeline import render as run_render

    gaze_x, gaze_y = options.parse_pair(gaze, "--gaze") if gaze else (None, None)
    settings = load_preset(preset).with_overrides(
        output={"fps": fps, "size": size, "crop": crop},
        generator={"cfg_audio": cfg_scale, "steps": steps, "gaze_x": gaze_x, "gaze_y": gaze_y, "emotion": emotion,
                   "pose_intensity": pose_intensity, "blink_rate": blink_rate},
    )
    if rate is not None and not 1000 <= rate <= 384000:
        raise ConfigError(f"--rate must be a sample rate in Hz (1000-384000), got {rate}")
    output = output or Path("-" if str(audio) == "-" else audio.stem + ".mp4")
    with Progress(TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task("render", total=None)
        result = run_render(portrait, audio, output, settings, seed=seed, transcript=transcript,
                            face_index=face_index, generator=generator, checkpoint=checkpoint, raw_rate=rate,
                            on_frame=lambda done, total: progress.update(task, completed=done, total=total))
    if not quiet:  # on stderr, as the progress bar: stdout may be the video
        total = result.wall_seconds
        console.print(f"wrote {output}: {result.frames} frames, {result.seconds_of_audio:.2f} s "
                      f"in {total:.1f} s ({result.seconds_of_audio / max(total, 1e-9):.1f}x real time)")
