"""Speed of exported graphs (tm export) next to PyTorch on the CPU.

    python benchmarks/export_speed.py EXPORT_DIR [EXPORT_DIR ...] [--chunks 200]
    python benchmarks/export_speed.py VIDEO_EXPORT_DIR [...] --video-student CKPT [--chunks 10]

For each motion export folder: the student streamed over `--chunks` chunks of random features
(ms per chunk: its denoising steps plus the cache write), and the face rig (ms per frame, one
frame a call as the renderer calls it), and the warp (ms per frame at the export's crop size). The
floor, measured in the same run, is PyTorch on the same model: the shipped student's own `step`
with its KV cache, `pose_landmarks` in float64 and MeshWarpRenderer.

For video exports (of the student given with --video-student, which is also the floor): the
DiT streamed over `--chunks` chunks (ms per chunk) and the VAE decoder on the latents it made
(ms per latent frame, one a call as the render calls it). Prints the machine and commit.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.config import load_preset  # noqa: E402
from tmcli.face.rig import MOTION_DIM, FaceRig  # noqa: E402
from tmcli.motion.controls import Controls  # noqa: E402
from tmcli.motion.portrait import Portrait  # noqa: E402
from tmcli.speech.features import FEATURE_DIM  # noqa: E402
from tmcli.stream.engine import ExportedChunkStep, ExportedModel, ExportedWarp  # noqa: E402
from tmcli.stream.generator import StreamingGenerator, load_motion_dit  # noqa: E402
from tmcli.stream.sources import embedded_checkpoint  # noqa: E402


def per_chunk_ms(generator: StreamingGenerator, features: np.ndarray, chunk: int) -> float:
    generator(features[: 4 * chunk], Controls())  # warm up
    start = time.perf_counter()
    generator(features, Controls())
    return 1000 * (time.perf_counter() - start) / (len(features) / chunk)


def per_frame_ms(rig: FaceRig, motion: np.ndarray) -> float:
    rig.apply(motion[0])
    start = time.perf_counter()
    for m in motion:
        rig.apply(m)
    return 1000 * (time.perf_counter() - start) / len(motion)


def video_ms(student, features: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(DiT ms per chunk, VAE decoder ms per latent frame) of a VideoStudent, after a warm-up chunk."""
    from tmcli.stream.generator import VideoStreamingGenerator

    face = torch.zeros(1, 3, 1, student.size, student.size)
    portrait = student.encode(face)
    list(VideoStreamingGenerator(student.model).stream([features[:8]], portrait, seed))
    start = time.perf_counter()
    chunks = list(VideoStreamingGenerator(student.model).stream([features], portrait, seed))
    dit = 1000 * (time.perf_counter() - start) / len(chunks)
    decoder = student.new_decoder()
    start = time.perf_counter()
    for chunk in chunks:
        decoder.decode(chunk)
    frames = sum(c.shape[2] for c in chunks)
    return dit, 1000 * (time.perf_counter() - start) / frames


def video_table(exports: list[Path], checkpoint: Path, chunks: int) -> Table:
    from tmcli.core.runtime import StageDevices
    from tmcli.stream.video import VideoStudent

    floor = VideoStudent(checkpoint, StageDevices.cpu())
    c = floor.model.config.chunk_latent_frames
    features = np.random.default_rng(0).normal(size=(4 * c * chunks - 3, FEATURE_DIM)).astype(np.float32)
    table = Table(
        title=f"video exports vs PyTorch, CPU ({floor.size} px, {chunks} chunks of {c} latent frames)"
    )
    for column in ("engine", "DiT ms/chunk", "x PyTorch", "VAE decode ms/latent frame", "x PyTorch"):
        table.add_column(column)
    floor_dit, floor_vae = video_ms(floor, features)
    table.add_row("PyTorch (floor)", f"{floor_dit:.1f}", "1.00", f"{floor_vae:.1f}", "1.00")
    for folder in exports:
        m = ExportedModel(folder).manifest
        dit, vae = video_ms(VideoStudent(folder, StageDevices.cpu()), features)
        table.add_row(
            f"{m['export_format']} {m['dtype']}",
            f"{dit:.1f}",
            f"{dit / floor_dit:.2f}",
            f"{vae:.1f}",
            f"{vae / floor_vae:.2f}",
        )
    return table


def warp_ms(renderer, landmarks: np.ndarray) -> float:
    """ms per frame of a renderer (MeshWarpRenderer or ExportedWarp) on these landmarks, one a call."""
    renderer(landmarks[0])
    start = time.perf_counter()
    for lm in landmarks:
        renderer(lm)
    return 1000 * (time.perf_counter() - start) / len(landmarks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument(
        "--video-student", type=Path, help="the video student the video exports were made from"
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.video_student:
        Console().print(video_table(args.exports, args.video_student, args.chunks))
        print_machine(f"{args.chunks} chunks")
        return
    student = load_motion_dit(embedded_checkpoint("student"))
    c = student.config.chunk_frames
    features = np.random.default_rng(0).normal(size=(args.chunks * c, FEATURE_DIM)).astype(np.float32)
    size = ExportedModel(args.exports[0]).manifest["warp"]["size"]
    portrait = Portrait.load(
        ROOT / "samples" / "portrait.png", load_preset("default").with_overrides(output={"size": size})
    )
    rig = portrait.rig
    motion = np.random.default_rng(1).normal(scale=0.3, size=(200, MOTION_DIM))

    table = Table(title=f"exported graphs vs PyTorch, CPU (warp: {size} px crops)")
    for column in (
        "engine",
        "chunk step ms/chunk",
        "x PyTorch",
        "face rig ms/frame",
        "x PyTorch",
        "warp ms/frame",
        "x PyTorch",
    ):
        table.add_column(column)
    floor_chunk = per_chunk_ms(StreamingGenerator(student), features, c)
    floor_rig = per_frame_ms(rig, motion)
    landmarks = np.stack([rig.apply(m) for m in motion[:50]])
    floor_warp = warp_ms(portrait.renderer, landmarks)
    table.add_row(
        "PyTorch (floor)",
        f"{floor_chunk:.2f}",
        "1.00",
        f"{floor_rig:.3f}",
        "1.00",
        f"{floor_warp:.2f}",
        "1.00",
    )
    for folder in args.exports:
        exported = ExportedModel(folder)
        m = exported.manifest
        chunk = per_chunk_ms(StreamingGenerator(ExportedChunkStep(exported)), features, c)
        frame = per_frame_ms(rig.posed_by(exported.face_rig), motion)
        warp = warp_ms(ExportedWarp(exported, portrait.renderer), landmarks)
        table.add_row(
            f"{m['export_format']} {m['dtype']}",
            f"{chunk:.2f}",
            f"{chunk / floor_chunk:.2f}",
            f"{frame:.3f}",
            f"{frame / floor_rig:.2f}",
            f"{warp:.2f}",
            f"{warp / floor_warp:.2f}",
        )
    Console().print(table)
    print_machine(f"{args.chunks} chunks of {c} frames, 200 rig frames, 50 warp frames")


def print_machine(run: str) -> None:
    import onnxruntime

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    Console().print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, commit {commit}; {run}"
    )


if __name__ == "__main__":
    main()
