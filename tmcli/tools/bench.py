"""tm bench: the render pipeline timed stage by stage, on the devices asked for.

It runs `pipeline.render` itself (the streaming path `tm render` runs) on speech made by
espeak-ng (or your own audio) and a 512x512 portrait (scikit-image's astronaut, or yours), and
reports load times, the first frame's latency, per-chunk latencies, steady-state frames per
second, the real-time factor, peak memory and how much the stages overlapped.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tmcli.core.config import Preset
from tmcli.core.runtime import StageDevices, StageTimer, host_peak_memory, peak_device_memory

PIPELINE_STAGES = {  # timer stage -> the device that runs it ("host": the CPU whatever the devices)
    "audio, phones, generator (streamed)": "generator",
    "generator": "generator",
    "motion from the generator process": "generator",
    "render": "renderer",
    "encode (pipe)": "host",
}


@dataclasses.dataclass
class StageFigures:
    stage: str
    device: str
    calls: int
    busy_s: float
    p50_ms: float
    p95_ms: float
    share_of_wall: float  # busy time / the stream's wall time


@dataclasses.dataclass
class BenchReport:
    date: str
    machine: str
    commit: str
    preset: str
    generator: str
    devices: str
    dtype: str
    frame_size: str
    render_size: int
    seconds_of_audio: float
    frames: int
    load_s: dict
    audio_before_first_frame_ms: float  # what the generator must hear before its first chunk
    first_frame_ms: float  # from the start of the stream (models loaded) to the first frame encoded
    first_motion_ms: float  # ... to the first motion chunk made (what of first_frame_ms the generator takes)
    first_chunk_rendered_ms: float  # ... to the first chunk's frames rendered (then encoding)
    chunk_latency_p50_ms: float  # a chunk's way from the generator's start to its last frame encoded
    chunk_latency_p95_ms: float
    steady_fps: float  # frames after the first / the time they took
    realtime_factor: float  # seconds of audio per second of streaming (> 1: faster than real time)
    wall_s: float  # the whole run, loading included
    overlap: float  # sum of stage busy times / the stream's wall time (> 1: stages overlapped)
    host_peak_mb: float
    device_peak_mb: dict
    stages: list[StageFigures]


def stand_in_portrait(folder: Path) -> Path:
    """scikit-image's astronaut (public domain, 512x512, inside its wheel), written to `folder`:
    a portrait every install has."""
    from PIL import Image
    from skimage import data

    path = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def stand_in_speech(folder: Path, seconds: float) -> Path:
    """`seconds` of espeak-ng speech (random English words, random voices) as a wav in `folder`."""
    import soundfile as sf

    from tmcli.core.audio import SAMPLE_RATE
    from tmcli.speech.espeak import speech_for_seconds

    path = folder / "speech.wav"
    sf.write(path, speech_for_seconds(seconds), SAMPLE_RATE)
    return path


def bench(
    preset: Preset,
    devices: StageDevices,
    seconds: float = 20.0,
    generator: str = "student",
    checkpoint: str | Path | None = None,
    portrait: Path | None = None,
    audio: Path | None = None,
    preset_name: str = "default",
) -> BenchReport:
    """Render `seconds` of speech once and measure every stage."""
    from tmcli.stream.pipeline import render

    with tempfile.TemporaryDirectory(prefix="tm-bench-") as tmp:
        tmp = Path(tmp)
        audio = audio or stand_in_speech(tmp, seconds)
        portrait = portrait or stand_in_portrait(tmp)
        timer = StageTimer(keep_calls=True)
        out = tmp / "bench.mp4"
        result = render(
            portrait,
            audio,
            out,
            preset,
            generator=generator,
            checkpoint=checkpoint,
            devices=devices,
            timer=timer,
        )
    width, height = result.frame_size
    marks = timer.marks
    stream_s = (
        marks["stream end"] - marks["stream start"]
    )  # both on the timer's clock (wall_seconds starts later)
    first_frame = marks["first frame"] - marks["stream start"]

    def since_start(event: str) -> float:
        return 1000 * (marks[event] - marks["stream start"]) if event in marks else float("nan")

    steady = (result.frames - 1) / max(stream_s - first_frame, 1e-9)
    stages = []
    for stage, place in PIPELINE_STAGES.items():
        calls = np.asarray(timer.calls.get(stage, []))
        if not len(calls):
            continue
        device = "cpu (ffmpeg)" if place == "host" else str(getattr(devices, place))
        stages.append(
            StageFigures(
                stage,
                device,
                len(calls),
                float(calls.sum()),
                1000 * float(np.median(calls)),
                1000 * float(np.percentile(calls, 95)),
                float(calls.sum()) / stream_s,
            )
        )
    latency = np.asarray(timer.calls.get("chunk latency", [0.0]))
    device_peaks = {
        str(d): peak_device_memory(d) / 2**20
        for d in {devices.generator, devices.renderer}
        if d.type == "cuda"
    }
    return BenchReport(
        date=datetime.date.today().isoformat(),
        machine=machine(),
        commit=commit(),
        preset=preset_name,
        generator=generator,
        devices=devices.describe(),
        dtype=devices.dtype,
        frame_size=f"{width}x{height}",
        render_size=result.render_size,
        seconds_of_audio=result.seconds_of_audio,
        frames=result.frames,
        load_s={
            k: round(v, 3) for k, v in result.stage_seconds.items() if k.startswith(("load", "landmarks"))
        },
        audio_before_first_frame_ms=_audio_before_first_frame(generator, checkpoint, preset),
        first_frame_ms=1000 * first_frame,
        first_motion_ms=since_start("first motion"),
        first_chunk_rendered_ms=since_start("first chunk rendered"),
        chunk_latency_p50_ms=1000 * float(np.median(latency)),
        chunk_latency_p95_ms=1000 * float(np.percentile(latency, 95)),
        steady_fps=steady,
        realtime_factor=result.seconds_of_audio / stream_s,
        wall_s=result.wall_seconds,
        overlap=sum(s.busy_s for s in stages) / stream_s,
        host_peak_mb=host_peak_memory() / 2**20,
        device_peak_mb=device_peaks,
        stages=stages,
    )


def _audio_before_first_frame(generator: str, checkpoint, preset: Preset) -> float:
    """The student's first chunk needs its span of audio; the others need all of it (nan)."""
    if generator != "student":
        return float("nan")
    from tmcli.stream.generator import load_motion_dit
    from tmcli.stream.sources import embedded_checkpoint

    model = load_motion_dit(checkpoint or embedded_checkpoint("student"))
    return 1000 * (model.audio_span - model.config.audio_context) / preset.output.fps


def machine() -> str:
    import torch

    cpu = (
        f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    if torch.cuda.is_available():
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"{gpus}; {cpu}"
    return cpu


def commit() -> str:
    """The git commit tm runs from, when it runs from a checkout."""
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (sha + ("+changes" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def report_table(report: BenchReport):
    """The report as two rich tables: the run, and its stages."""
    from rich.table import Table

    summary = Table(
        title=f"tm bench: {report.generator} on {report.devices}, {report.frame_size} "
        f"(crop rendered at {report.render_size}), {report.seconds_of_audio:.1f} s of speech",
        show_header=False,
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for name, seconds in report.load_s.items():
        summary.add_row(f"load: {name}", f"{seconds * 1000:.0f} ms")
    if not np.isnan(report.audio_before_first_frame_ms):
        summary.add_row("audio the first chunk needs", f"{report.audio_before_first_frame_ms:.0f} ms")
    summary.add_row("first frame (stream start -> encoded)", f"{report.first_frame_ms:.0f} ms")
    summary.add_row(
        "  of which: first motion chunk / its frames rendered",
        f"{report.first_motion_ms:.0f} / {report.first_chunk_rendered_ms:.0f} ms",
    )
    summary.add_row(
        "chunk latency p50 / p95", f"{report.chunk_latency_p50_ms:.1f} / {report.chunk_latency_p95_ms:.1f} ms"
    )
    summary.add_row("steady state", f"{report.steady_fps:.1f} frames/s")
    summary.add_row("real-time factor (streaming)", f"{report.realtime_factor:.2f}x")
    summary.add_row("wall time, loading included", f"{report.wall_s:.1f} s")
    summary.add_row("stage overlap (busy / wall)", f"{report.overlap:.2f}")
    summary.add_row("peak host memory", f"{report.host_peak_mb:.0f} MB")
    for device, mb in report.device_peak_mb.items():
        summary.add_row(f"peak memory on {device}", f"{mb:.0f} MB")
    stages = Table(title="stages")
    for column in ("stage", "device", "calls", "busy s", "p50 ms", "p95 ms", "busy / wall"):
        stages.add_column(column, justify="left" if column in ("stage", "device") else "right")
    for s in report.stages:
        stages.add_row(
            s.stage,
            s.device,
            str(s.calls),
            f"{s.busy_s:.2f}",
            f"{s.p50_ms:.1f}",
            f"{s.p95_ms:.1f}",
            f"{s.share_of_wall:.0%}",
        )
    return summary, stages
