"""Teacher training: flow matching on motion windows, with every condition dropped at random.

A checkpoint folder holds the model (config.json + safetensors, loadable by `tm render
--checkpoint`), trainer_state.pt (optimizer, LR schedule, step), train.json (the settings and
data it was trained with) and loss.csv / loss.png. Running `tm train` again on the same folder
resumes where it stopped, and the result is the same as an uninterrupted run: every random
draw of a step comes from (seed, step).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from tmcli.core.config import ModelSettings, TrainSettings
from tmcli.core.media import save_pretrained
from tmcli.motion.dit import MotionDiT
from tmcli.speech.features import silence_features
from tmcli.stream.generator import split_controls
from tmcli.train.shards import read_manifest
from tmcli.train.windows import Batch, WindowStream

STATE = "trainer_state.pt"


@dataclasses.dataclass
class TrainReport:
    steps: int
    last_loss: float
    seconds: float
    steps_per_second: float


def new_model(settings: ModelSettings, manifest: dict, init: str | Path | None = None) -> MotionDiT:
    """A teacher for the data in `manifest`: fresh, or `init`'s weights to fine-tune; either way
    its motion is normalised with this data's statistics."""
    if init is not None:
        model = MotionDiT.from_pretrained(init).float()  # shipped teachers are stored in float16
    else:
        model = MotionDiT(
            hidden_size=settings.hidden_size,
            num_layers=settings.num_layers,
            num_heads=settings.num_heads,
            mlp_ratio=settings.mlp_ratio,
            window=settings.window,
            context_frames=settings.context_frames,
            audio_context=settings.audio_context,
            fps=manifest["fps"],
        )
    stats = manifest["stats"]
    model.motion_mean.copy_(torch.tensor(stats["mean"]))
    # channels the data never moves keep unit scale rather than blowing up
    std = torch.tensor(stats["std"])
    model.motion_std.copy_(torch.where(std < 1e-3, torch.ones_like(std), std))
    return model


def drop_mask(
    settings: TrainSettings, names: tuple[str, ...], size: int, generator: torch.Generator
) -> torch.Tensor:
    p = torch.tensor([getattr(settings, f"drop_{name}") for name in names])
    return torch.rand(size, len(names), generator=generator) < p


def flow_matching_loss(
    model: MotionDiT, batch: Batch, settings: TrainSettings, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Masked MSE between the predicted and the true velocity (noise - clean) at a random sigma."""
    b = batch.motion.shape[0]
    x0 = model.normalize(batch.motion.to(device))
    noise = torch.randn(x0.shape, generator=generator).to(device)
    sigma = torch.sigmoid(torch.randn(b, generator=generator)).to(device)  # logit-normal, as in SD3
    noisy = (1 - sigma.view(b, 1, 1)) * x0 + sigma.view(b, 1, 1) * noise
    keep_context = torch.rand(b, generator=generator) >= settings.drop_context
    has_context = batch.has_context & keep_context
    audio = batch.audio.clone()
    k = model.config.context_frames
    audio[~has_context, :k] = torch.as_tensor(silence_features(k))  # as a clip's first window hears
    drop = drop_mask(settings, model.condition_names, b, generator).to(device)
    v = model(
        noisy,
        sigma * 1000,
        audio.to(device),
        model.normalize(batch.context.to(device)),
        has_context.to(device),
        model.normalize(batch.neutral.to(device)),
        split_controls(batch.controls.to(device)),
        drop=drop,
    )
    valid = batch.valid.to(device).unsqueeze(-1).float()
    return ((v - (noise - x0)) ** 2 * valid).sum() / (valid.sum() * x0.shape[-1]).clamp(min=1)


def _checkpoint(model: MotionDiT, optimizer, schedule, step: int, out: Path) -> None:
    save_pretrained(model, out)
    tmp = out / (STATE + ".tmp")
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, tmp)
    tmp.replace(out / STATE)


@dataclasses.dataclass
class Run:
    """A model being trained in a checkpoint folder, with its optimiser, schedule and step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    step: int
    out: Path


def resumed_settings(out: Path, settings: TrainSettings) -> tuple[dict | None, TrainSettings]:
    """The settings a folder was started with (train.json), with today's step count; (None,
    settings) if new."""
    if not (out / STATE).is_file():
        return None, settings
    saved = json.loads((out / "train.json").read_text())
    return saved, dataclasses.replace(TrainSettings(**saved["train"]), steps=settings.steps)


def start_run(
    out: Path,
    model_class,
    make_model: Callable[[], torch.nn.Module],
    settings: TrainSettings,
    record: dict,
    device: str,
) -> Run:
    """Resume the run in `out`, or start one with make_model() and write train.json (`record`)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    resume = (out / STATE).is_file()
    torch.manual_seed(settings.seed)
    model = (model_class.from_pretrained(out) if resume else make_model()).to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    step = 0
    if resume:
        state = torch.load(out / STATE, map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        truncate_log(out / "loss.csv", step)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.json").write_text(
            json.dumps({**record, "train": dataclasses.asdict(settings)}, indent=1)
        )
        (out / "loss.csv").write_text("step,loss,learning_rate,seconds\n")
    return Run(model, optimizer, schedule, step, out)


def fit(
    run: Run,
    batches: Iterator,
    loss_fn: Callable[[object, torch.Generator], torch.Tensor],
    settings: TrainSettings,
    on_step: Callable[[int, int, float], None] | None = None,
    curves: dict[str, str] | None = None,
) -> TrainReport:
    """The optimisation loop every tm model trains with: a batch, loss_fn(batch, generator) with a
    generator seeded by (seed, step), clipped AdamW step, log rows and checkpoints. `batches`
    must start at run.step (resumed runs skip ahead)."""
    model, step, out = run.model, run.step, run.out
    start, first_step, loss_value = time.perf_counter(), step, float("nan")
    with (
        open(out / "loss.csv", "a", newline="") as log,
        torch.enable_grad(),
    ):  # a render may have turned it off
        writer = csv.writer(log)
        for batch in batches:
            if step >= settings.steps:
                break
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
            loss = loss_fn(batch, generator)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            run.optimizer.step()
            run.schedule.step()
            step += 1
            loss_value = loss.item()
            if step % settings.log_every == 0 or step == settings.steps:
                writer.writerow(
                    [
                        step,
                        f"{loss_value:.5f}",
                        f"{run.schedule.get_last_lr()[0]:.3g}",
                        f"{time.perf_counter() - start:.1f}",
                    ]
                )
                log.flush()
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                _checkpoint(model, run.optimizer, run.schedule, step, out)
                plot_loss(out / "loss.csv", out / "loss.png", curves)
            if on_step:
                on_step(step, settings.steps, loss_value)
    run.step = step
    seconds = time.perf_counter() - start
    return TrainReport(step, loss_value, seconds, (step - first_step) / max(seconds, 1e-9))


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    model_settings: ModelSettings,
    settings: TrainSettings,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
    init: str | Path | None = None,
) -> TrainReport:
    """Train (or resume training) a motion teacher in `out_dir` for `settings.steps` steps in all;
    `init`: start from that teacher's weights (fine-tuning) rather than from scratch."""
    out = Path(out_dir)
    manifest = read_manifest(data_dir)
    saved, settings = resumed_settings(out, settings)
    if saved:
        model_settings = ModelSettings(**saved["model"])
        init = saved.get("init")
    elif init is not None:
        model_settings = ModelSettings(
            **{f.name: MotionDiT.load_config(init)[f.name] for f in dataclasses.fields(ModelSettings)}
        )
    record = {
        "model": dataclasses.asdict(model_settings),
        "init": None if init is None else str(Path(init).resolve()),
        "data": {
            "path": str(Path(data_dir).resolve()),
            "source": manifest["source"],
            "clips": manifest["clips"],
            "minutes": round(manifest["frames"] / manifest["fps"] / 60, 2),
        },
    }
    run = start_run(
        out, MotionDiT, lambda: new_model(model_settings, manifest, init), settings, record, device
    )
    model = run.model
    stream = WindowStream(
        data_dir, model.config.window, model.config.context_frames, settings.batch_size, settings.seed
    )
    return fit(
        run,
        stream(run.step),
        lambda batch, g: flow_matching_loss(model, batch, settings, g, torch.device(device)),
        settings,
        on_step,
    )


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows after the checkpoint a run resumes from: they are trained again."""
    with open(path) as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])


def plot_loss(csv_path: Path, png_path: Path, curves: dict[str, str] | None = None) -> None:
    """Plot columns of a loss CSV (column -> label) against the step, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves or {"loss": "flow-matching loss"}
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [int(r["step"]) for r in rows]
    for column, label in curves.items():
        values = [float(r[column]) for r in rows]
        if any(v == v for v in values):  # a column may be empty (NaN) in some stages
            ax.plot(steps, values, lw=1, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
