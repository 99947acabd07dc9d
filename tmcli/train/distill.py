"""Asymmetric distillation: the bidirectional many-step teacher -> a causal few-step student.

TalkingMachines, after CausVid (ODE initialisation, DMD) and Self-Forcing (training on the
student's own rollouts with its KV cache). One clip is one teacher window (4 s), streamed by
the student as chunks.

Stage 1, ode: the teacher samples motion from noise for `ode_pairs` training windows (its
guided Euler ODE). The student sees the teacher's clean motion as its past (teacher forcing,
one masked pass) and learns to map the ODE's state at each of its noise levels to the
teacher's motion. With `data_weight`, it also denoises the data's own motion at its refining levels,
on the mouth's channels only (see data_regression_loss).

Stage 2, self: the same pairs, streamed chunk by chunk with the KV cache as at inference
(self forcing): each chunk's past in the cache is the student's own samples, not the teacher's
motion. Its input is still the teacher's ODE state and its target the teacher's motion, so the
loss stays a regression; what changes is that the student learns from the past it will see.

Stage 3, dmd: the student makes whole clips chunk by chunk with its own KV cache, exactly as
when streaming (self forcing; the gradient flows through one random denoising step per
chunk). Distribution matching: the clip is noised at a random level; the frozen teacher's
guided prediction gives the real score, a fake-score network (initialised from the teacher and
trained `fake_updates` times per student step on the student's clips) the fake one, and the
student moves along fake - real. A regression term on the ODE pairs keeps it stable.

The output folder: the student (config.json + safetensors, a `tm render --checkpoint`), fake/,
ode_pairs.pt, distill_state.pt (optimizers, step), distill.json, loss.csv and loss.png.
Rerunning resumes; every random draw of a step comes from (seed, step).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tmcli.core.config import DistillSettings, GeneratorSettings
from tmcli.core.media import save_pretrained
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.dit import MotionDiT
from tmcli.train.objectives import (
    clips_of,
    data_regression_loss,
    dmd_loss,
    fake_loss,
    make_ode_pairs,
    new_student,
    regression_loss,
    rollout,
    rollout_regression,
)
from tmcli.train.trainer import plot_loss, truncate_log
from tmcli.train.windows import WindowStream

STATE = "distill_state.pt"
PAIRS = "ode_pairs.pt"
LOG_COLUMNS = ["step", "stage", "loss", "regression", "data", "fake", "seconds"]
CURVES = {
    "regression": "ODE-pair regression (teacher-forced, then self-forced)",
    "loss": "student (DMD stage: DMD + weighted regression)",
    "data": "data regression (mouth)",
    "fake": "fake-score flow matching",
}


@dataclasses.dataclass
class DistillReport:
    steps: int
    last_loss: float
    seconds: float


def distill(
    teacher_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: DistillSettings,
    generator_settings: GeneratorSettings,
    on_progress: Callable[[str, int, int, float], None] | None = None,
) -> DistillReport:
    """Distill (or resume distilling) the teacher in `teacher_dir` into a student in `out_dir`."""
    from tmcli.stream.generator import load_motion_dit

    out, data_dir = Path(out_dir), Path(data_dir)
    resume = (out / STATE).is_file()
    if resume:
        saved = json.loads((out / "distill.json").read_text())
        settings = dataclasses.replace(
            DistillSettings(**saved["distill"]),
            ode_steps=settings.ode_steps,
            self_forcing_steps=settings.self_forcing_steps,
            dmd_steps=settings.dmd_steps,
        )
        generator_settings = GeneratorSettings(**saved["generator"])
    torch.manual_seed(settings.seed)
    teacher = load_motion_dit(teacher_dir)
    teacher.requires_grad_(False)
    if resume:
        student = CausalMotionDiT.from_pretrained(out)
        fake = MotionDiT.from_pretrained(out / "fake")
    else:
        student, fake = new_student(teacher, settings), MotionDiT.from_config(teacher.config)
        fake.load_state_dict(teacher.state_dict())
        out.mkdir(parents=True, exist_ok=True)
        (out / "loss.csv").write_text(",".join(LOG_COLUMNS) + "\n")
    (out / "distill.json").write_text(
        json.dumps(
            {  # rewritten on resume: the stages may have grown
                "teacher": str(Path(teacher_dir).resolve()),
                "data": str(data_dir.resolve()),
                "distill": dataclasses.asdict(settings),
                "generator": dataclasses.asdict(generator_settings),
            },
            indent=1,
        )
    )
    student.train()
    fake.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    fake_optimizer = torch.optim.AdamW(fake.parameters(), lr=settings.fake_learning_rate, weight_decay=0.0)
    step = 0
    if resume:
        state = torch.load(out / STATE, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        fake_optimizer.load_state_dict(state["fake_optimizer"])
        step = state["step"]
        truncate_log(out / "loss.csv", step)

    if (out / PAIRS).is_file():
        pairs = torch.load(out / PAIRS, weights_only=True)
    else:
        pairs = make_ode_pairs(
            teacher,
            student,
            data_dir,
            settings,
            generator_settings,
            lambda i, n: on_progress and on_progress("teacher ODE pairs", i, n, float("nan")),
        )
        torch.save(pairs, out / PAIRS)
    stream = WindowStream(
        data_dir, teacher.config.window, teacher.config.context_frames, settings.batch_size, settings.seed
    )
    regression_steps = settings.ode_steps + settings.self_forcing_steps
    total = regression_steps + settings.dmd_steps
    start, loss_value = time.perf_counter(), float("nan")
    batches = stream(max(0, step - regression_steps))
    with open(out / "loss.csv", "a", newline="") as log, torch.enable_grad():
        writer = csv.writer(log)
        while step < total:
            g = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
            index = torch.randint(0, len(pairs["clean"]), (settings.batch_size,), generator=g)
            fake_value = data_value = float("nan")
            if step < settings.ode_steps:
                stage = "ode"
                loss = regression = regression_loss(student, pairs, index, g, settings.velocity_weight)
                if settings.data_weight:
                    data_term = data_regression_loss(student, pairs, index, g)
                    loss = loss + settings.data_weight * data_term
                    data_value = data_term.item()
            elif step < regression_steps:
                stage = "self"
                loss = regression = rollout_regression(student, pairs, index, g, settings.velocity_weight)
            else:
                stage = "dmd"
                regression = regression_loss(student, pairs, index, g, settings.velocity_weight)
                clips = clips_of(next(batches), teacher, student)
                clip = rollout(student, clips, g)
                for _ in range(settings.fake_updates):
                    f_loss = fake_loss(fake, clip, clips, g)
                    fake_optimizer.zero_grad(set_to_none=True)
                    f_loss.backward()
                    torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0)
                    fake_optimizer.step()
                fake_value = f_loss.item()
                loss = dmd_loss(clip, teacher, fake, clips, generator_settings, g)
                loss = loss + settings.regression_weight * regression
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            step += 1
            loss_value = loss.item()
            if step % settings.log_every == 0 or step == total:
                writer.writerow(
                    [
                        step,
                        stage,
                        f"{loss_value:.5f}",
                        f"{regression.item():.5f}",
                        f"{data_value:.5f}",
                        f"{fake_value:.5f}",
                        f"{time.perf_counter() - start:.1f}",
                    ]
                )
                log.flush()
            if step % settings.checkpoint_every == 0 or step == total:
                _checkpoint(student, fake, optimizer, fake_optimizer, step, out)
                plot_loss(out / "loss.csv", out / "loss.png", CURVES)
            if on_progress:
                on_progress(stage, step, total, loss_value)
    return DistillReport(step, loss_value, time.perf_counter() - start)


def _checkpoint(student, fake, optimizer, fake_optimizer, step: int, out: Path) -> None:
    save_pretrained(student, out)
    save_pretrained(fake, out / "fake")
    tmp = out / (STATE + ".tmp")
    torch.save(
        {"step": step, "optimizer": optimizer.state_dict(), "fake_optimizer": fake_optimizer.state_dict()},
        tmp,
    )
    tmp.replace(out / STATE)
