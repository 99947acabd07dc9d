"""tm distill: distill the teacher into the causal few-step student that streams."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmcli import spaces
from tmcli.cli import options
from tmcli.core.config import load_preset
from tmcli.core.console import console
from tmcli.core.errors import ConfigError

TeacherArg = Annotated[
    Path, typer.Argument(help="Teacher checkpoint from `tm train` (motion or video preset).")
]
DataDirArg = Annotated[
    Path, typer.Argument(help="Data set the teacher was trained on (conditions are drawn from it).")
]
Out = Annotated[
    Path, typer.Option("-o", "--output", help="Student checkpoint folder (resumed if it holds one).")
]
Steps = Annotated[
    int | None, typer.Option(help="Total student steps, split between the stages as in the preset.")
]
SelfForcingSteps = Annotated[
    int | None,
    typer.Option(help="Of those, steps of regression on the student's own rollouts (stage 2)."),
]
DmdSteps = Annotated[
    int | None,
    typer.Option(help="Of those, steps of distribution matching (stage 3); the rest regress on ODE pairs."),
]
StudentSteps = Annotated[
    int | None, typer.Option(help="Denoising steps per chunk the student is made for, 1-4 (preset: 2).")
]
Seed = Annotated[int | None, typer.Option(help="Seed of every random draw.")]
Device = Annotated[str, typer.Option(help="Video backend: cpu, cuda or cuda:N.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q")]


def distill(
    teacher: TeacherArg,
    data_dir: DataDirArg,
    out: Out,
    preset: options.Preset = "default",
    steps: Steps = None,
    self_forcing_steps: SelfForcingSteps = None,
    dmd_steps: DmdSteps = None,
    student_steps: StudentSteps = None,
    seed: Seed = None,
    device: Device = "cpu",
    quiet: Quiet = False,
) -> None:
    """Distill a teacher into a causal, chunk-wise, few-step student (ODE regression, regression
    on its own rollouts, then DMD on self-forcing rollouts; a video-backend teacher: the ODE
    stage, on its `tm data video` set). Rerun to resume."""
    settings = _settings(preset, steps, self_forcing_steps, dmd_steps, student_steps, seed, quiet)
    space = spaces.of_checkpoint(teacher)
    space.check_distill(teacher, data_dir, settings)
    with options.progress("{task.fields[stage]}", quiet) as progress:
        task = progress.add_task("", total=None, stage="distilling")

        def show(stage: str, step: int, total: int, loss: float) -> None:
            progress.update(
                task,
                completed=step,
                total=total,
                stage=stage,
                description="" if loss != loss else f"loss {loss:.4f}",
            )

        report = space.distill(teacher, data_dir, out, settings, device, show)
    if not quiet:
        console.print(f"{out}: step {report.steps}, loss {report.last_loss:.4f}, {report.seconds:.0f} s")


def _settings(
    preset: str,
    steps: int | None,
    self_forcing_steps: int | None,
    dmd_steps: int | None,
    student_steps: int | None,
    seed: int | None,
    quiet: bool,
):
    """The preset with the flags applied: --steps is the total, split between the stages as in
    the preset unless --self-forcing-steps or --dmd-steps say how many are theirs."""
    settings = load_preset(preset)
    d = settings.distill
    later = {"self_forcing_steps": self_forcing_steps, "dmd_steps": dmd_steps}  # stages after the ODE one
    changes = {"student_steps": student_steps, "seed": seed, **later}
    if student_steps == 1 and d.data_weight:  # the data term trains the refining levels; one step has none
        changes["data_weight"] = 0.0
        if not quiet:
            console.print("a 1-step student has no refining level to train: the data term is left out")
    for name, value in later.items():
        if value is not None and value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps must be positive, got {steps}")
        preset_total = d.ode_steps + d.self_forcing_steps + d.dmd_steps
        split = {
            name: value if value is not None else round(steps * getattr(d, name) / preset_total)
            for name, value in later.items()
        }
        if sum(split.values()) > steps:
            raise ConfigError(
                f"--self-forcing-steps and --dmd-steps ({sum(split.values())}) are more than --steps {steps}"
            )
        changes.update(ode_steps=steps - sum(split.values()), **split)
    return settings.with_overrides(distill=changes)
