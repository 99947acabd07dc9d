"""tm train: train the motion diffusion teacher on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    job = _job(settings, data_dir, out, device, stage, vae, init, preset)
    with options.progress("training", quiet) as progress:
        task = progress.add_task("", total=settings.train.steps)
        report = job(
            lambda step, total, loss: progress.update(
                task, completed=step, total=total, description=f"loss {loss:.4f}"
            )
        )
    if not quiet:
        console.print(
            f"{out}: step {report.steps}, loss {report.last_loss:.4f}, {report.steps_per_second:.2f} steps/s"
        )


def _job(
    settings,
    data_dir: Path,
    out: Path,
    device: str,
    stage: str,
    vae: Path | None,
    init: Path | None,
    preset: str,
):
    """What the run trains: the motion teacher, or a video preset's VAE or teacher (--stage)."""
    from tmcli.train.trainer import train as run_train

    if settings.video is None:

        def job(on_step):
            return run_train(
                data_dir, out, settings.model, settings.train, device=device, on_step=on_step, init=init
            )
    else:
        from tmcli.train.vae import train_vae
        from tmcli.train.video import train_teacher

        if stage not in ("vae", "teacher"):
            raise ConfigError(f"--stage must be vae or teacher, got {stage!r}")
        if stage == "teacher" and vae is None:
            raise ConfigError(
                "--stage teacher needs --vae DIR",
                hint=f"train one first: tm train DATA -o VAE_DIR --preset {preset} --stage vae",
            )

        def job(on_step):
            if stage == "vae":
                return train_vae(data_dir, out, settings, device, init=vae, on_step=on_step)
            return train_teacher(data_dir, vae, out, settings, device, on_step=on_step)

    return job
