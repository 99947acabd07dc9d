"""tm data: make training data (synthetic speech, or real videos you own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmcli.cli import options
from tmcli.core.console import console
from tmcli.core.errors import ConfigError

app = typer.Typer(help="Make training data for tm train.", no_args_is_help=True)


@app.command(no_args_is_help=True)
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder of the data set (made, or resumed if it exists).")],
    minutes: Annotated[float, typer.Option(help="Minutes of speech the data set should hold.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed: the same seed makes the same clips.")] = 0,
    languages: Annotated[
        str | None, typer.Option(help="Comma-separated espeak-ng languages (default: all tm knows).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes making clips.")] = 2,
    fps: Annotated[float, typer.Option(help="Frames per second of the motion labels.")] = 25.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Synthetic talking clips: espeak-ng speech with exact phoneme timings, labelled motion,
    augmented audio."""
    from tmcli.speech import espeak
    from tmcli.train.synth import SynthSettings, synth_dataset

    if minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}")
    settings = SynthSettings()
    if languages:
        chosen = tuple(lang.strip() for lang in languages.split(",") if lang.strip())
        unknown = [lang for lang in chosen if lang not in espeak.LANGUAGES]
        if unknown or not chosen:
            raise ConfigError(
                f"unknown language(s): {', '.join(unknown) or languages!r}",
                hint=f"known: {', '.join(espeak.LANGUAGES)}",
            )
        settings = SynthSettings(languages=chosen)
    with options.progress("synth", quiet, counted=False) as progress:
        task = progress.add_task("", total=minutes)
        added = synth_dataset(
            out_dir,
            minutes,
            seed=seed,
            fps=fps,
            settings=settings,
            workers=workers,
            on_clip=lambda done, total: progress.update(
                task, completed=done, description=f"{done:.1f}/{total:g} min"
            ),
        )
    if not quiet:
        console.print(f"{out_dir}: {added} clips added")


@app.command(no_args_is_help=True)
def extract(
    paths: Annotated[
        list[Path], typer.Argument(help="Talking-head videos (with sound), then the output folder.")
    ],
    fps: Annotated[float, typer.Option(help="Frames per second of the motion labels.")] = 25.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Real videos you own -> landmarks per frame -> fitted motion + audio, in the format of synth."""
    from tmcli.train.extract import extract_videos

    if len(paths) < 2:
        raise ConfigError("give at least one video and then the output folder")
    *videos, out_dir = paths
    with options.progress("extract", quiet, counted=False) as progress:
        task = progress.add_task("", total=len(videos))
        added = extract_videos(
            videos,
            out_dir,
            fps=fps,
            on_clip=lambda video, clip: progress.update(task, advance=1, description=video.name),
        )
    if not quiet:
        console.print(f"{out_dir}: {added} clips added ({len(videos) - added} already there)")


@app.command(no_args_is_help=True)
def video(
    motion_data: Annotated[Path, typer.Argument(help="A motion data set (tm data synth or extract).")],
    out_dir: Annotated[Path, typer.Argument(help="New folder for the video data set.")],
    portrait: Annotated[
        list[Path], typer.Option(help="Portrait to render the clips on (repeat: one per clip in turn).")
    ],
    size: Annotated[int, typer.Option(help="Side of the square face frames, px.")] = 128,
    clips: Annotated[int, typer.Option(help="Render at most this many clips (0: all).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Frames for the video backend: each clip's motion rendered on a portrait, with its audio features."""
    from tmcli.train.video_data import render_video_dataset

    if size < 64 or size % 16:
        raise ConfigError(f"--size must be a multiple of 16, at least 64; got {size}")
    if clips < 0:
        raise ConfigError(f"--clips must be 0 (all) or positive, got {clips}")
    with options.progress("video", quiet, counted=False) as progress:
        task = progress.add_task("", total=clips or None)
        manifest = render_video_dataset(
            motion_data,
            out_dir,
            portrait,
            size,
            clips or None,
            on_clip=lambda i: progress.update(task, advance=1, description=f"clip {i + 1}"),
        )
    if not quiet:
        console.print(
            f"{out_dir}: {manifest['clips']} clips, {manifest['frames']} frames of {size} px "
            f"on {len(portrait)} portrait(s)"
        )
