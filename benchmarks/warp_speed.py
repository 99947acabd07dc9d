"""The warp renderer's ms per frame on a device, eager against fixed-shape and CUDA-graphed.

    python benchmarks/warp_speed.py MOTION.json [--portrait P] [--device cuda] [--size 512]

MOTION.json: a motion file (`tm render ... --motion-out M.json`); its frames are posed by the
portrait's rig once, on the host, and then warped by each variant in turn, synchronised after
the last frame. The graphed variant is also compared with the eager renderer frame by frame
(they differ only where a lip or eye box outgrows its fixed window). The floor is one
`grid_sample` of the crop, the single pass over the picture every variant must make.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.runtime import parse_device  # noqa: E402
from tmcli.motion.curves import read_motion  # noqa: E402
from tmcli.motion.portrait import Portrait  # noqa: E402
from tmcli.motion.warp_graph import FixedShapeWarp, GraphedWarp  # noqa: E402


def per_frame_ms(warp, poses: list[np.ndarray], device: torch.device) -> tuple[float, list[torch.Tensor]]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for pose in poses[:3]:  # warm-up
        warp(pose)
    sync()
    frames = []
    start = time.perf_counter()
    for pose in poses:
        frames.append(warp(pose).clone())
    sync()
    return 1000 * (time.perf_counter() - start) / len(poses), frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("motion", type=Path)
    parser.add_argument("--portrait", default=str(ROOT / "samples/portrait.png"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    device = parse_device(args.device)
    preset = load_preset().with_overrides(output={"crop": True, "size": args.size})
    portrait = Portrait.load(args.portrait, preset, device=device)
    eager = portrait.renderer
    poses = [portrait.rig.apply(m) for m in read_motion(args.motion, preset.output.fps)]
    fixed = FixedShapeWarp(eager).to(device)
    inputs = tuple(t.to(device) for t in FixedShapeWarp.portrait_inputs(eager))
    grid = torch.zeros(1, eager.size, eager.size, 2, device=device)

    rows = []
    with torch.no_grad():
        eager_ms, eager_frames = per_frame_ms(eager, poses, device)
        rows.append(("eager MeshWarpRenderer", eager_ms, None))
        fixed_ms, _ = per_frame_ms(
            lambda p: fixed(torch.as_tensor(p, dtype=torch.float32, device=device), *inputs), poses, device
        )
        rows.append(("eager FixedShapeWarp", fixed_ms, None))
        if device.type == "cuda":
            start = time.perf_counter()
            graphed = GraphedWarp(eager)
            capture_s = time.perf_counter() - start
            graph_ms, graph_frames = per_frame_ms(graphed, poses, device)
            diff = torch.stack([(a - b).abs().max() for a, b in zip(graph_frames, eager_frames)])
            rows.append(
                (
                    f"GraphedWarp (captured in {capture_s:.2f} s)",
                    graph_ms,
                    f"max |graph - eager| per frame: median {diff.median():.2e}, worst {diff.max():.2e}",
                )
            )
        floor_ms, _ = per_frame_ms(
            lambda p: F.grid_sample(eager.image, grid, align_corners=False), poses, device
        )
        rows.append(("floor: one grid_sample of the crop", floor_ms, None))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    table = Table(title=f"warp, {eager.size} px crop, {len(poses)} frames, on {name}")
    for column in ("variant", "ms / frame", "frames/s", "agreement"):
        table.add_column(column, justify="left" if column in ("variant", "agreement") else "right")
    for label, ms, note in rows:
        table.add_row(label, f"{ms:.2f}", f"{1000 / ms:.0f}", note or "")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
