"""tm export: a student checkpoint -> artifacts that run without tm's Python code.

Three graphs, written by torch.onnx (dynamo exporter) or torch.export:
  chunk_step  the student's step (motion/causal_dit.py FixedShapeStep): one chunk of fixed shape,
              the KV cache as explicit inputs and outputs, write=False to denoise, True to
              commit the clean chunk;
  face_rig    motion (frames, MOTION_DIM) -> landmarks (frames, 478, 3) (face/rig.py
              pose_landmarks), the portrait's rig tensors as inputs;
  warp        one frame's landmarks -> the face crop (motion/warp.py FixedShapeWarp: the
              renderer with fixed windows where it slices boxes that follow the landmarks), the
              portrait's crop and warp tensors as inputs; made for one crop size (--size).
`manifest.json` holds what a runtime needs besides the graphs: input and output shapes and
dtypes, fps, chunk and audio-feature settings, the sampler's noise levels, motion
normalisation, checksums, and the verification below. Format safetensors writes the student
in the chosen dtype as a plain tm checkpoint (`tm render --checkpoint DIR`).

Every export is verified before it is published (written to a temporary folder, renamed on
success): each graph is run by the engine `tm render --engine` uses (engine.py) against
PyTorch in fp32, on random inputs and on a real stream (a recording's features, the motion
they give on a portrait's rig, and frames of it warped); max and mean absolute error must be
within the dtype's tolerance.

Not exported: what is made once per portrait (mediapipe's landmarks, the crop's alignment,
the rig and the thin-plate spline solve: tm's Python makes them, the graphs take them as
inputs), pasting the crop back into the portrait, and the teacher (it is not streamed). A
video-backend student exports its own graphs (export_video.py).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from tmcli.core.errors import InputError
from tmcli.core.media import save_pretrained
from tmcli.core.runtime import torch_dtype
from tmcli.face.rig import CHANNELS, MOTION_DIM, pose_landmarks
from tmcli.motion.causal_dit import CausalMotionDiT, FixedShapeStep
from tmcli.motion.warp_graph import FixedShapeWarp
from tmcli.stream.engine import ExportedChunkStep, ExportedModel
from tmcli.tools.graphs import (
    TOLERANCE,
    RealInputs,
    check_report,
    check_request,
    errors_of,
    manifest_head,
    publish,
    quiet_libraries,
    random_steps,
    write_graph,
    write_manifest,
)

RIG_TOLERANCE_PX = 0.01  # landmarks, in crop pixels (the rig graph is float32 whatever the dtype)
WARP_TOLERANCE = 4e-3  # frame values in [0, 1] (1/255; the warp graph is float32 whatever the dtype)
WARP_CHECK_FRAMES = 6  # frames of each stream the warp graph is checked on


class FaceRigGraph(torch.nn.Module):
    """pose_landmarks as a module, for the exporters."""

    INPUTS = ("motion", "rest", "basis", "pivot", "unit")
    OUTPUTS = ("landmarks",)

    def forward(self, motion, rest, basis, pivot, unit):
        return pose_landmarks(motion, rest, basis, pivot, unit)


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    fmt: str,
    dtype: str,
    real: RealInputs,
    overwrite: bool = False,
) -> dict:
    """Export, verify and publish; returns the manifest. A motion student or a video student."""
    from tmcli.stream.generator import is_video_checkpoint, load_motion_dit

    check_request(fmt, dtype, out_dir, overwrite)
    if is_video_checkpoint(checkpoint):
        from tmcli.tools.export_video import write_video_export

        return publish(Path(out_dir), lambda folder: write_video_export(checkpoint, folder, fmt, dtype, real))
    model = load_motion_dit(checkpoint)
    if not isinstance(model, CausalMotionDiT):
        raise InputError(
            f"{checkpoint} holds a teacher; only the streaming student exports",
            hint="distill one with `tm distill`",
        )
    return publish(Path(out_dir), lambda folder: _write_motion_export(model, folder, fmt, dtype, real))


def _write_motion_export(
    model: CausalMotionDiT, folder: Path, fmt: str, dtype: str, real: RealInputs
) -> dict:
    manifest = _manifest(model, fmt, dtype)
    start = time.perf_counter()
    if fmt == "safetensors":
        with quiet_libraries():
            save_pretrained(copy.deepcopy(model).to(torch_dtype(dtype)), folder)
    else:
        with quiet_libraries():
            # the reference stays fp32
            step = FixedShapeStep(copy.deepcopy(model)).to(torch_dtype(dtype)).eval()
        rig_example = (
            torch.zeros(4, MOTION_DIM),
            torch.zeros(478, 3),
            torch.zeros(27, 478, 2),
            torch.zeros(3),
            torch.tensor(1.0),
        )
        frames = torch.export.Dim("frames", min=1, max=100_000)
        warp = FixedShapeWarp(real.renderer)
        manifest["graphs"] = {
            "chunk_step": write_graph(folder, "chunk_step", step, step.example_inputs(), fmt),
            "face_rig": write_graph(
                folder, "face_rig", FaceRigGraph(), rig_example, fmt, ({0: frames}, None, None, None, None)
            ),
            "warp": write_graph(folder, "warp", warp, warp.example_inputs(), fmt),
        }
        manifest["warp"] = {
            "size": warp.size,
            "windows_px": {"mouth": warp.regions[0][2], "eyes": warp.regions[1][2]},
            "inputs": "one frame's landmarks (478, 3) in crop pixels from face_rig; then the portrait's "
            "tensors "
            "(motion/warp.py FixedShapeWarp.portrait_inputs): its crop (1, 3, S, S) in [0, 1], its "
            "landmarks (478, 2), the thin-plate spline's field matrix, the interocular distance, the "
            "teeth colour (3, 1, 1) and whether the portrait shows its own teeth",
            "output": "the face crop (1, 3, S, S) in [0, 1]",
        }
    return write_manifest(folder, manifest, start, lambda: verify(model, folder, manifest, real))


def _manifest(model: CausalMotionDiT, fmt: str, dtype: str) -> dict:
    from tmcli.motion.controls import GROUPS

    cfg = model.config
    manifest = manifest_head(model, fmt, dtype)
    manifest["audio"] |= {
        "span_frames": model.audio_span,
        "span_starts": f"{cfg.audio_context} frames before the chunk",
    }
    return manifest | {
        "chunk": {
            "frames": cfg.chunk_frames,
            "window_chunks": cfg.window_chunks,
            "lookahead_frames": cfg.lookahead_frames,
        },
        "controls": {"dim": sum(GROUPS.values()), "layout": dict(GROUPS)},
        "motion": {
            "channels": CHANNELS,
            "mean": model.motion_mean.tolist(),
            "std": model.motion_std.tolist(),
            "note": "graphs take and give normalised motion: (motion - mean) / std",
        },
        "not_exported": {
            "the portrait's tensors": "made once per portrait by tm's Python (mediapipe's landmarks, the "
            "crop's "
            "alignment, a thin-plate spline solve): inputs of face_rig and warp",
            "pasting the crop back into the portrait": "tm's Python (render/compositor), or --crop",
            "teacher": "not streamed",
        },
    }


def verify(model: CausalMotionDiT, folder: Path, manifest: dict, real: RealInputs, seed: int = 0) -> dict:
    """Each artifact against PyTorch fp32: errors on random and real inputs, or ExportError."""
    from tmcli.motion.controls import Controls
    from tmcli.stream.generator import StreamingGenerator, load_motion_dit

    dtype = manifest["dtype"]
    report: dict = {
        "tolerance": {"motion": TOLERANCE[dtype], "landmarks_px": RIG_TOLERANCE_PX, "warp": WARP_TOLERANCE}
    }
    reference = StreamingGenerator(model)
    if manifest["export_format"] == "safetensors":
        exported = StreamingGenerator(load_motion_dit(folder))  # its weights rounded to the dtype
    else:
        engine = ExportedModel(folder)
        exported = StreamingGenerator(ExportedChunkStep(engine))
        report["chunk_step, random"] = random_steps(FixedShapeStep(model).eval(), engine, seed)
    rng = np.random.default_rng(seed)
    cases = {
        "real": real.features,
        "random": rng.normal(size=(len(real.features), real.features.shape[1])).astype(np.float32),
    }
    for label, features in cases.items():
        a = model.normalize(torch.as_tensor(reference(features, Controls(), seed)))
        b = model.normalize(torch.as_tensor(exported(features, Controls(), seed)))
        report[f"stream, {label}"] = errors_of(a, b, f"{len(features)} frames")
    if manifest["export_format"] != "safetensors":
        motion = torch.as_tensor(exported(real.features, Controls(), seed), dtype=torch.float64)
        noisy = motion + torch.as_tensor(rng.normal(scale=0.3, size=motion.shape))
        rig32 = {k: v.float() for k, v in real.rig.items()}
        portrait = FixedShapeWarp.portrait_inputs(real.renderer)
        for label, m in (("real", motion), ("random", noisy)):
            landmarks = pose_landmarks(m, **real.rig)
            report[f"face_rig, {label}"] = errors_of(
                landmarks, engine.face_rig(m.float(), **rig32), f"{len(m)} frames, px"
            )
            some = landmarks[:: max(1, len(landmarks) // WARP_CHECK_FRAMES)][:WARP_CHECK_FRAMES]
            want = torch.cat([real.renderer(lm.numpy()).float().cpu() for lm in some])
            got = torch.cat([engine.warp(lm, portrait) for lm in some])
            report[f"warp, {label}"] = errors_of(
                want, got, f"{len(some)} frames of {real.renderer.size} px, in [0, 1]"
            )
    return check_report(report, dtype, {"face_rig": RIG_TOLERANCE_PX, "warp": WARP_TOLERANCE})
