"""tm train: train the motion diffusion teacher on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tmcli import spaces
from tmcli.cli import options
from tmcli.core.config import load_preset
from tmcli.core.console import console
from tmcli.core.errors import ConfigError

DataDirArg = Annotated[Path, typer.Argument(help="Data set from `tm data synth` or `tm data extract`.")]
Out = Annotated[Path, typer.Option("-o", "--output", help="Checkpoint folder (resumed if it holds one).")]
Steps = Annotated[int | None, typer.Option(help="Total optimisation steps (preset's [train] steps).")]
BatchSize = Annotated[
    int | None,
    typer.Option(help="Clips per step (preset's [train] batch_size); fixed when a run is resumed."),
]
Device = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
Seed = Annotated[int | None, typer.Option(help="Seed of every random draw (preset's [train] seed).")]
Stage = Annotated[
    str, typer.Option(help="Video presets: vae (the autoencoder) or teacher (the DiT, needs --vae).")
]
Vae = Annotated[
    Optional[Path],
    typer.Option(
        help="Video presets: the trained VAE folder (--stage teacher), or the VAE to fine-tune (--stage vae)."
    ),
]
Init = Annotated[
    Optional[Path],
    typer.Option(help="Motion presets: a teacher checkpoint to fine-tune instead of starting from scratch."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q")]


def train(
    data_dir: DataDirArg,
    out: Out,
    preset: options.Preset = "default",
    steps: Steps = None,
    batch_size: BatchSize = None,
    device: Device = "cpu",
    seed: Seed = None,
    stage: Stage = "teacher",
    vae: Vae = None,
    init: Init = None,
    quiet: Quiet = False,
) -> None:
    """Train the bidirectional teacher with flow matching (video presets: its VAE first). Rerun to resume."""
    import torch

    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    settings = load_preset(preset).with_overrides(
        train={"steps": steps, "seed": seed, "batch_size": batch_size}
    )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device here", hint="use --device cpu")
    space = spaces.of_preset(settings)
    with options.progress("training", quiet) as progress:
        task = progress.add_task("", total=settings.train.steps)

        def show(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, description=f"loss {loss:.4f}")

        report = space.train(data_dir, out, settings, device, show, init=init, stage=stage, vae=vae)
    if not quiet:
        console.print(
            f"{out}: step {report.steps}, loss {report.last_loss:.4f}, {report.steps_per_second:.2f} steps/s"
        )
