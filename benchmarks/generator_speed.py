"""Speed of the learned motion generators: training steps/s, generation ms per second of audio,
and the teacher next to the streaming student: latency to the first motion and ms per chunk.

    python benchmarks/generator_speed.py [--preset default] [--checkpoint CKPT] [--student CKPT] [--steps N]
                                         [--device cpu|cuda]

Training: optimisation steps per second at the preset's batch and window, next to a forward
pass alone on the same batch (the floor a training step cannot beat). Generation: the teacher's
ms per second of audio at the preset's sampling steps and guidance, next to one unguided
forward pass per step (the floor guidance adds to), and the phonetic driver on the same audio.
Latency: the teacher cannot start before a whole window of audio (4 s) has arrived, then samples
it; the student starts once its first chunk and look-ahead have arrived, then makes one chunk
with its few steps and commits it to the KV cache. Weights are random unless --checkpoint /
--student are given: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core import audio as audio_mod  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.runtime import parse_device  # noqa: E402
from tmcli.face.rig import MOTION_DIM  # noqa: E402
from tmcli.motion.causal_dit import CausalMotionDiT  # noqa: E402
from tmcli.motion.controls import Controls  # noqa: E402
from tmcli.motion.driver import PhoneticDriver  # noqa: E402
from tmcli.speech.alignment import speech_phones  # noqa: E402
from tmcli.speech.features import FEATURE_DIM, generator_features  # noqa: E402
from tmcli.stream.engine import GraphedChunkStep  # noqa: E402
from tmcli.stream.generator import StreamingGenerator, TeacherGenerator, load_motion_dit  # noqa: E402
from tmcli.train.trainer import flow_matching_loss, new_model  # noqa: E402
from tmcli.train.windows import Batch  # noqa: E402


def timed(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def stream_times(streaming: StreamingGenerator, features) -> tuple[float, float, float]:
    """A warmed-up stream of `features`: seconds to the first chunk, per later chunk (median), in all."""
    streaming(features, Controls())  # warm-up
    per_chunk = []
    start = time.perf_counter()
    for _ in streaming.stream([features], Controls()):
        now = time.perf_counter()
        per_chunk.append(now - start)
        start = now
    later = sorted(per_chunk[1:]) or per_chunk
    return per_chunk[0], later[len(later) // 2], sum(per_chunk)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--checkpoint")
    parser.add_argument("--audio", default=str(ROOT / "samples/extra/codec2_speech_orig_16k_female.wav"))
    parser.add_argument("--student", help="student checkpoint (default: the teacher's weights, made causal)")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    device = parse_device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    preset = load_preset(args.preset)
    stats = {"mean": [0.0] * MOTION_DIM, "std": [1.0] * MOTION_DIM}
    model = (
        load_motion_dit(args.checkpoint)
        if args.checkpoint
        else new_model(preset.model, {"fps": 25.0, "stats": stats})
    )
    model.to(device)
    cfg, b = model.config, preset.train.batch_size
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        torch.randn(b, cfg.window, MOTION_DIM, generator=g),
        torch.ones(b, cfg.window, dtype=torch.bool),
        torch.randn(b, cfg.context_frames, MOTION_DIM, generator=g),
        torch.ones(b, dtype=torch.bool),
        torch.randn(b, cfg.context_frames + cfg.window, FEATURE_DIM, generator=g),
        torch.rand(b, 7, generator=g),
        torch.zeros(b, MOTION_DIM),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def train_step():
        loss = flow_matching_loss(model, batch, preset.train, torch.Generator().manual_seed(1), device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def forward_only():
        with torch.no_grad():
            flow_matching_loss(model, batch, preset.train, torch.Generator().manual_seed(1), device)

    step_s, forward_s = timed(train_step, args.steps, device), timed(forward_only, args.steps, device)
    model.eval()
    samples = audio_mod.load_audio(args.audio)
    seconds = len(samples) / audio_mod.SAMPLE_RATE
    features = audio_mod.extract_features(samples, cfg.fps)
    phones = speech_phones(samples)
    frame_features = generator_features(features, phones)
    teacher = TeacherGenerator(model, preset.generator)
    unguided = TeacherGenerator(
        model,
        dataclasses.replace(
            preset.generator,
            **{f.name: 1.0 for f in dataclasses.fields(preset.generator) if f.name.startswith("cfg_")},
        ),
    )
    with torch.no_grad():
        teacher_s = timed(lambda: teacher(frame_features, Controls()), 3, device)
        unguided_s = timed(lambda: unguided(frame_features, Controls()), 3, device)
    driver_s = timed(lambda: PhoneticDriver(preset.driver)(phones, features, 0), 3, device)
    d = preset.distill
    student = (
        load_motion_dit(args.student)
        if args.student
        else CausalMotionDiT.from_teacher(
            model,
            chunk_frames=d.chunk_frames,
            window_chunks=d.window_chunks,
            lookahead_frames=d.lookahead_frames,
            denoising_steps=d.student_steps,
        ).eval()
    )
    student.to(device)
    with torch.no_grad():
        window_s = timed(lambda: teacher(frame_features[: cfg.window], Controls()), 3, device)
        eager = stream_times(StreamingGenerator(student), frame_features)
        # the same stream through the chunk step's CUDA graph
        graphed = (
            stream_times(StreamingGenerator(GraphedChunkStep(student)), frame_features)
            if device.type == "cuda"
            else None
        )
    sc = student.config
    first_audio = (sc.chunk_frames + sc.lookahead_frames + sc.audio_context) / sc.fps
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    params = sum(p.numel() for p in model.parameters())
    table = Table(
        title=f"MotionDiT {params / 1e6:.2f}M params, preset {args.preset}; "
        f"{platform.processor() or platform.machine()}, "
        ""
        f"{os.cpu_count()} cores, torch {torch.__version__}, commit {commit}; on {where}"
    )
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_column("rate", justify="right")
    table.add_row(
        f"training step (batch {b} x {cfg.window} frames)",
        f"{step_s * 1e3:.0f} ms",
        f"{1 / step_s:.2f} steps/s",
    )
    table.add_row("  floor: forward pass alone", f"{forward_s * 1e3:.0f} ms", f"{1 / forward_s:.2f} /s")
    table.add_row(
        f"teacher generation ({preset.generator.steps} steps, guidance as preset)",
        f"{teacher_s / seconds * 1e3:.0f} ms per s of audio",
        f"{seconds / teacher_s:.0f}x real time",
    )
    table.add_row(
        "  floor: same steps, no guidance",
        f"{unguided_s / seconds * 1e3:.0f} ms per s of audio",
        f"{seconds / unguided_s:.0f}x real time",
    )
    table.add_row(
        "phonetic driver (phones already found)",
        f"{driver_s / seconds * 1e3:.1f} ms per s of audio",
        f"{seconds / driver_s:.0f}x real time",
    )
    Console(width=120).print(table)

    side = Table(
        title=f"teacher vs streaming student (student: {sc.chunk_frames}-frame chunks, {sc.denoising_steps} "
        f"steps, look-ahead {sc.lookahead_frames}+{sc.audio_context} frames, no guidance at run time)"
    )
    for column in (
        "generator",
        "audio needed first",
        "compute to first motion",
        "per chunk / window",
        "ms per s of audio",
    ):
        side.add_column(column, justify="left" if column == "generator" else "right")
    side.add_row(
        f"teacher ({cfg.window}-frame windows)",
        f"{cfg.window / cfg.fps * 1e3:.0f} ms",
        f"{window_s * 1e3:.0f} ms",
        f"{window_s * 1e3:.0f} ms",
        f"{teacher_s / seconds * 1e3:.0f}",
    )
    for label, times in (
        (f"student ({sc.chunk_frames}-frame chunks)", eager),
        ("student, chunk step as a CUDA graph", graphed),
    ):
        if times:
            side.add_row(
                label,
                f"{first_audio * 1e3:.0f} ms",
                f"{times[0] * 1e3:.1f} ms",
                f"{times[1] * 1e3:.1f} ms (median)",
                f"{times[2] / seconds * 1e3:.0f}",
            )
    Console(width=120).print(side)


if __name__ == "__main__":
    main()
