"""Speed of `tm render` on this machine, per stage, against ffmpeg encoding alone.

    python benchmarks/render_speed.py [PORTRAIT AUDIO] [--repeat N]

Prints ms per frame for each stage, the steady-state frames per second of the render loop,
the whole render's real-time factor, and, measured in the same run, ffmpeg encoding the same
number of frames of the same size with nothing to render: the floor no renderer can beat.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.media import VideoWriter  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402


def encode_only(frames: int, width: int, height: int, fps: float, audio: Path, out: Path) -> float:
    """Seconds ffmpeg takes to encode `frames` frames (a slowly changing picture) + mux the audio."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    start = time.perf_counter()
    with VideoWriter(out, width, height, fps, audio_path=audio) as writer:
        for i in range(frames):
            writer.write(np.roll(base, i, axis=0))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("portrait", nargs="?", default=ROOT / "samples" / "portrait.png", type=Path)
    parser.add_argument(
        "audio",
        nargs="?",
        default=ROOT / "samples" / "extra" / "codec2_speech_orig_16k_female.wav",
        type=Path,
    )
    parser.add_argument("--repeat", type=int, default=2, help="renders to run; the best is reported")
    parser.add_argument(
        "--crop",
        action="store_true",
        help="write the 512x512 face crop (renders at 512 whatever the portrait's resolution)",
    )
    args = parser.parse_args()
    preset = load_preset().with_overrides(output={"crop": args.crop})
    console = Console()
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"
        for _ in range(args.repeat):
            result = render(args.portrait, args.audio, out, preset)
            if best is None or result.wall_seconds < best.wall_seconds:
                best = result
        from tmcli.core.media import read_video_frames

        frames = read_video_frames(out)
        next(frames)
        first = next(frames)
        height, width = first.shape[:2]
        floor = encode_only(
            best.frames, width, height, preset.output.fps, args.audio, Path(tmp) / "floor.mp4"
        )

    n = best.frames
    table = Table(
        title=f"tm render: {args.portrait.name} + {args.audio.name} ({best.seconds_of_audio:.1f} s, "
        f"{n} frames, {width}x{height} out, crop rendered at {best.render_size})"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("ms / frame", justify="right")
    for stage, seconds in best.stage_seconds.items():
        table.add_row(stage, f"{seconds:.3f}", f"{1000 * seconds / n:.2f}")
    loop = best.stage_seconds.get("render", 0) + best.stage_seconds.get("encode (pipe)", 0)
    table.add_section()
    table.add_row(
        "render loop (steady state)", f"{loop:.3f}", f"{1000 * loop / n:.2f}  = {n / loop:.0f} frames/s"
    )
    table.add_row(
        "whole render, wall (start-up in process)",
        f"{best.wall_seconds:.3f}",
        f"{best.seconds_of_audio / best.wall_seconds:.2f}x real time",
    )
    table.add_row(
        "floor: ffmpeg encoding alone", f"{floor:.3f}", f"{1000 * floor / n:.2f}  = {n / floor:.0f} frames/s"
    )
    console.print(table)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    console.print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, commit {commit}"
    )
    console.print(
        "(phones are found in a worker process during 'landmarks' and 'audio features'; "
        "'waiting for phones' is what was not hidden)"
    )


if __name__ == "__main__":
    main()
