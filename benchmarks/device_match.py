"""Does a GPU render match the CPU's? The same portrait, speech and seed rendered by `tm render`
on the CPU and on a device, compared stage by stage.

    python benchmarks/device_match.py --device cuda [--dtype fp32|bf16|fp16] [--seconds 8]

Generator: the motion written by `--motion-out` on each device (the noise is drawn on the CPU
either way, so only arithmetic differs), as the largest and mean absolute difference per channel.
Renderer: the CPU's motion rendered on the device (`--motion-in`), against the CPU's frames, as
PSNR and the largest pixel difference. Run it where a GPU is; the tests (CPU only) cannot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.media import read_video_frames  # noqa: E402
from tmcli.motion.curves import read_motion  # noqa: E402


def tm_render(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tmcli", "render", *args, "--quiet"], check=True, cwd=ROOT)


def frames(path: Path) -> np.ndarray:
    return np.stack(list(read_video_frames(path))[1:])  # the first item is the fps


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--generator", default="student")
    parser.add_argument("--portrait", default=str(ROOT / "samples/portrait.png"))
    parser.add_argument("--audio", default=str(ROOT / "samples/speech.wav"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tm-match-") as tmp:
        tmp = Path(tmp)
        common = [args.portrait, args.audio, "--generator", args.generator, "--seed", "0"]
        tm_render(
            *common, "-o", str(tmp / "cpu.mp4"), "--motion-out", str(tmp / "cpu.json"), "--device", "cpu"
        )
        tm_render(
            *common,
            "-o",
            str(tmp / "dev.mp4"),
            "--motion-out",
            str(tmp / "dev.json"),
            "--device",
            args.device,
            "--dtype",
            args.dtype,
        )
        tm_render(
            args.portrait,
            args.audio,
            "--motion-in",
            str(tmp / "cpu.json"),
            "-o",
            str(tmp / "dev_render.mp4"),
            "--device",
            args.device,
        )
        cpu_motion, dev_motion = read_motion(tmp / "cpu.json", 25.0), read_motion(tmp / "dev.json", 25.0)
        cpu_frames, dev_frames, both_frames = (
            frames(tmp / name) for name in ("cpu.mp4", "dev_render.mp4", "dev.mp4")
        )
    diff = np.abs(cpu_motion - dev_motion)
    table = Table(
        title=f"{args.device} ({args.dtype} generator) against the CPU: {args.generator}, "
        f"{len(cpu_motion)} frames"
    )
    for column in ("what", "compared", "figure"):
        table.add_column(column)
    table.add_row(
        "generator",
        "motion, |device - cpu|",
        f"max {diff.max():.2e}, mean {diff.mean():.2e} "
        f"(motion's own spread {cpu_motion.std(axis=0).mean():.2e})",
    )
    table.add_row(
        "renderer",
        "CPU motion rendered there, frames",
        f"PSNR {psnr(cpu_frames, dev_frames):.1f} dB, "
        f"max |diff| {np.abs(cpu_frames.astype(int) - dev_frames).max()}",
    )
    table.add_row("both", "whole render, frames", f"PSNR {psnr(cpu_frames, both_frames):.1f} dB")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
