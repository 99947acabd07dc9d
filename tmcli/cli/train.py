"""tm train: train the motion diffusion teacher on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


def train(
    data_dir: Annotated[Path, typer.Argument(help="Data set from `tm data synth` or `tm data extract`.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint folder (resumed if it holds one).")],
    preset: options.Preset = "default",
    steps: Annotated[int | None, typer.Option(help="Total optimisation steps (preset's [train] steps).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int | None, typer.Option(help="Seed of every random draw (preset's [train] seed).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train the bidirectional MotionDiT teacher with flow matching. Rerun to resume."""
    import torch

    from ..train.trainer import train as run_train

    settings = load_preset(preset).with_overrides(train={"steps": steps, "seed": seed})
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device here", hint="use --device cpu")
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeRemainingColumn(), console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task("", total=settings.train.steps)
        report = run_train(data_dir, out, settings.model, settings.train, device=device,
                           on_step=lambda step, total, loss: progress.update(
                               task, completed=step, total=total, description=f"loss {loss:.4f}"))
    if not quiet:
        console.print(f"{out}: step {report.steps}, loss {report.last_loss:.4f}, "
                      f"{report.steps_per_second:.2f} steps/s")
