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

import contextlib
import copy
import dataclasses
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tmcli.stream.engine import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, ExportedChunkStep, ExportedModel, sha256
from tmcli.core.errors import InputError, OutputError, TmError
from tmcli.face.rig import CHANNELS, MOTION_DIM, pose_landmarks
from tmcli.core.media import save_pretrained, umask
from tmcli.motion.causal_dit import CausalMotionDiT, FixedShapeStep
from tmcli.motion.warp import FixedShapeWarp, MeshWarpRenderer

FORMATS = ("onnx", "torch-export", "safetensors")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 2.5e-1}  # max |error| / max(1, max |value|) of motion, cache
RIG_TOLERANCE_PX = 0.01  # landmarks, in crop pixels (the rig graph is float32 whatever the dtype)
WARP_TOLERANCE = 4e-3  # frame values in [0, 1] (1/255; the warp graph is float32 whatever the dtype)
WARP_CHECK_FRAMES = 6  # frames of each stream the warp graph is checked on
SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}


class ExportError(TmError):
    """An export that cannot be made, or that failed its check against PyTorch."""


class FaceRigGraph(torch.nn.Module):
    """pose_landmarks as a module, for the exporters."""

    INPUTS = ("motion", "rest", "basis", "pivot", "unit")
    OUTPUTS = ("landmarks",)

    def forward(self, motion, rest, basis, pivot, unit):
        return pose_landmarks(motion, rest, basis, pivot, unit)


@dataclasses.dataclass
class RealInputs:
    """What the check runs on besides random tensors: a recording's generator features (T,
    FEATURE_DIM) and a portrait: its rig tensors (FaceRig.tensors()) and renderer (the motion
    backend's), or its face crop (the video backend's)."""

    features: np.ndarray
    rig: dict[str, torch.Tensor] | None = None
    renderer: MeshWarpRenderer | None = None  # the motion backend's, at the size the warp graph is for
    face: np.ndarray | None = None  # the video backend's: the portrait's face crop (S, S, 3) uint8 at its size


def export(checkpoint: str | Path, out_dir: str | Path, fmt: str, dtype: str, real: RealInputs,
           overwrite: bool = False) -> dict:
    """Export, verify and publish; returns the manifest. A motion student or a video student."""
    from tmcli.stream.generator import is_video_checkpoint, load_motion_dit

    check_request(fmt, dtype, out_dir, overwrite)
    if is_video_checkpoint(checkpoint):
        from tmcli.tools.export_video import write_video_export

        return _publish(Path(out_dir), lambda folder: write_video_export(checkpoint, folder, fmt, dtype, real))
    model = load_motion_dit(checkpoint)
    if not isinstance(model, CausalMotionDiT):
        raise InputError(f"{checkpoint} holds a teacher; only the streaming student exports",
                         hint="distill one with `tm distill`")
    return _publish(Path(out_dir), lambda folder: _write_motion_export(model, folder, fmt, dtype, real))


def _publish(out: Path, write: Callable[[Path], dict]) -> dict:
    """`write` fills a temporary folder beside `out` and returns its manifest; the folder becomes
    `out` only when that succeeded (verification included), replacing what was there."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = write(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it its owner's only
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_motion_export(model: CausalMotionDiT, folder: Path, fmt: str, dtype: str, real: RealInputs) -> dict:
    manifest = _manifest(model, fmt, dtype)
    start = time.perf_counter()
    if fmt == "safetensors":
        with quiet_libraries():
            save_pretrained(copy.deepcopy(model).to(DTYPES[dtype]), folder)
    else:
        with quiet_libraries():
            step = FixedShapeStep(copy.deepcopy(model)).to(DTYPES[dtype]).eval()  # the reference stays fp32
        rig_example = (torch.zeros(4, MOTION_DIM), torch.zeros(478, 3), torch.zeros(27, 478, 2), torch.zeros(3),
                       torch.tensor(1.0))
        frames = torch.export.Dim("frames", min=1, max=100_000)
        warp = FixedShapeWarp(real.renderer)
        manifest["graphs"] = {
            "chunk_step": write_graph(folder, "chunk_step", step, step.example_inputs(), fmt),
            "face_rig": write_graph(folder, "face_rig", FaceRigGraph(), rig_example, fmt,
                                    ({0: frames}, None, None, None, None)),
            "warp": write_graph(folder, "warp", warp, warp.example_inputs(), fmt)}
        manifest["warp"] = {
            "size": warp.size, "windows_px": {"mouth": warp.regions[0][2], "eyes": warp.regions[1][2]},
            "inputs": "one frame's landmarks (478, 3) in crop pixels from face_rig; then the portrait's tensors "
                      "(motion/warp.py FixedShapeWarp.portrait_inputs): its crop (1, 3, S, S) in [0, 1], its "
                      "landmarks (478, 2), the thin-plate spline's field matrix, the interocular distance, the "
                      "teeth colour (3, 1, 1) and whether the portrait shows its own teeth",
            "output": "the face crop (1, 3, S, S) in [0, 1]"}
    return write_manifest(folder, manifest, start, lambda: verify(model, folder, manifest, real))


def write_manifest(folder: Path, manifest: dict, start: float, check: Callable[[], dict]) -> dict:
    """The manifest written, then written again with the verification's figures (which read it)."""
    manifest["export_seconds"] = round(time.perf_counter() - start, 1)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    manifest["verification"] = check()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def check_request(fmt: str, dtype: str, out_dir: str | Path, overwrite: bool) -> None:
    """Bad requests fail here, before any work."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
    if fmt == "onnx" and dtype == "bf16":
        raise ExportError("onnxruntime has no CPU kernels for bf16 (Sigmoid, LayerNormalization, ...): a bf16 ONNX "
                          "graph could not be checked or run here", hint="use --dtype fp16, or --format torch-export")
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and overwrite):
        raise OutputError(f"{out} exists", hint="pass --overwrite to replace it" if out.is_dir() else None)


def manifest_head(model, fmt: str, dtype: str) -> dict:
    """What every export's manifest starts with: its kind, the model's config, the sampler and
    the audio features the graphs hear (the motion and video backends hear the same ones)."""
    from tmcli.core.audio import FEATURE_RATE, N_MELS
    from tmcli.speech.features import FEATURE_DIM, FEATURES_VERSION, PHONE_CLASSES

    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "export_format": fmt, "dtype": dtype,
        "model": {k: v for k, v in model.config.items() if not k.startswith("_")} | {"class": type(model).__name__},
        "fps": model.config.fps,
        "sampler": {"sigmas": model.sigmas, "timestep_scale": 1000,
                    "rule": "x <- randn; per sigma s_k: clean = x - s_k * velocity(x, s_k * 1000); "
                            "x <- (1 - s_k+1) clean + s_k+1 randn; then commit clean with write=True at timestep 0"},
        "audio": {"feature_dim": FEATURE_DIM, "features_version": FEATURES_VERSION,
                  "layout": f"{N_MELS} log-mels (feature rate {FEATURE_RATE}/s, pooled to the video frame), "
                            f"rms, envelope, voiced, pitch, then one-hot phone classes {list(PHONE_CLASSES)}",
                  "silence_row": "features.silence_features: what frames before the start and past the end hear"},
    }


def _manifest(model: CausalMotionDiT, fmt: str, dtype: str) -> dict:
    from tmcli.motion.controls import GROUPS

    cfg = model.config
    manifest = manifest_head(model, fmt, dtype)
    manifest["audio"] |= {"span_frames": model.audio_span, "span_starts": f"{cfg.audio_context} frames before the chunk"}
    return manifest | {
        "chunk": {"frames": cfg.chunk_frames, "window_chunks": cfg.window_chunks,
                  "lookahead_frames": cfg.lookahead_frames},
        "controls": {"dim": sum(GROUPS.values()), "layout": dict(GROUPS)},
        "motion": {"channels": CHANNELS, "mean": model.motion_mean.tolist(), "std": model.motion_std.tolist(),
                   "note": "graphs take and give normalised motion: (motion - mean) / std"},
        "not_exported": {
            "the portrait's tensors": "made once per portrait by tm's Python (mediapipe's landmarks, the crop's "
                                      "alignment, a thin-plate spline solve): inputs of face_rig and warp",
            "pasting the crop back into the portrait": "tm's Python (render/compositor), or --crop",
            "teacher": "not streamed"},
    }


def write_graph(folder: Path, name: str, module: torch.nn.Module, example: tuple, fmt: str,
                dynamic: tuple | None = None) -> dict:
    """One module as a graph file (its INPUTS and OUTPUTS named) -> its manifest entry.

    dynamic: torch.export dynamic shapes, one entry per input; only a first input's first axis
    is ever dynamic, and the manifest names it "frames"."""
    file = folder / (name + SUFFIX[fmt])
    with torch.no_grad(), quiet_libraries():
        try:
            if fmt == "onnx":
                torch.onnx.export(module, example, str(file), input_names=list(module.INPUTS),
                                  output_names=list(module.OUTPUTS), dynamo=True, optimize=True, external_data=False,
                                  dynamic_shapes=dynamic, verbose=False)
            else:
                torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic), str(file))
        except ImportError as exc:
            raise ExportError(f"exporting {fmt} needs {exc.name}", hint='pip install "tm[export]"') from None
    shapes = [list(t.shape) for t in example]
    if dynamic:
        shapes[0][0] = "frames"
    return {"file": file.name, "sha256": sha256(file),
            "inputs": [{"name": n, "shape": s, "dtype": str(t.dtype).removeprefix("torch.")}
                       for n, s, t in zip(module.INPUTS, shapes, example)],
            "outputs": list(module.OUTPUTS)}


@contextlib.contextmanager
def quiet_libraries():
    """The exporters log progress and warnings about ops tm does not use, diffusers a warning on
    every cast to a low dtype: not the user's business."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def verify(model: CausalMotionDiT, folder: Path, manifest: dict, real: RealInputs, seed: int = 0) -> dict:
    """Each artifact against PyTorch fp32: errors on random and real inputs, or ExportError."""
    from tmcli.motion.controls import Controls
    from tmcli.stream.generator import StreamingGenerator, load_motion_dit

    dtype = manifest["dtype"]
    report: dict = {"tolerance": {"motion": TOLERANCE[dtype], "landmarks_px": RIG_TOLERANCE_PX,
                                  "warp": WARP_TOLERANCE}}
    reference = StreamingGenerator(model)
    if manifest["export_format"] == "safetensors":
        exported = StreamingGenerator(load_motion_dit(folder))  # its weights rounded to the dtype
    else:
        engine = ExportedModel(folder)
        exported = StreamingGenerator(ExportedChunkStep(engine))
        report["chunk_step, random"] = random_steps(FixedShapeStep(model).eval(), engine, seed)
    rng = np.random.default_rng(seed)
    cases = {"real": real.features,
             "random": rng.normal(size=(len(real.features), real.features.shape[1])).astype(np.float32)}
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
            report[f"face_rig, {label}"] = errors_of(landmarks, engine.face_rig(m.float(), **rig32),
                                                   f"{len(m)} frames, px")
            some = landmarks[:: max(1, len(landmarks) // WARP_CHECK_FRAMES)][:WARP_CHECK_FRAMES]
            want = torch.cat([real.renderer(lm.numpy()).float().cpu() for lm in some])
            got = torch.cat([engine.warp(lm, portrait) for lm in some])
            report[f"warp, {label}"] = errors_of(want, got, f"{len(some)} frames of {real.renderer.size} px, in [0, 1]")
    return check_report(report, dtype, {"face_rig": RIG_TOLERANCE_PX, "warp": WARP_TOLERANCE})



def check_report(report: dict, dtype: str, absolute: dict[str, float]) -> dict:
    """ExportError unless every check is within tolerance: the dtype's, absolute on unit-scale
    values and relative on larger ones (keys and values), or a fixed one for checks whose
    label starts with a key of `absolute` (e.g. the rig, in pixels)."""
    for label, errors in report.items():
        if label == "tolerance":
            continue
        fixed = [limit for prefix, limit in absolute.items() if label.startswith(prefix)]
        limit = fixed[0] if fixed else TOLERANCE[dtype] * max(1.0, errors["scale"])
        if not errors["max_abs"] <= limit:
            raise ExportError(f"the {dtype} export differs from PyTorch on {label}: max |error| "
                              f"{errors['max_abs']:.3g} > {limit:.3g}")
    return report


def random_steps(step: torch.nn.Module, engine: ExportedModel, seed: int, calls: int = 12) -> dict:
    """A fixed-shape chunk step (motion or video: the same cache inputs) on random chunks,
    conditions and caches, the band part-filled, then full: errors of the graph against PyTorch."""
    g = torch.Generator().manual_seed(seed)
    errors = []
    chunk = step.band_slots // step.model.config.window_chunks  # slots one chunk fills
    for i in range(calls):
        inputs = {name: torch.randn(t.shape, generator=g) if t.is_floating_point() else t
                  for name, t in zip(step.INPUTS, step.example_inputs())}
        filled = (i * chunk) % (step.band_slots + chunk)
        inputs |= {"timestep": torch.rand(1, generator=g) * 1000, "write": torch.tensor([i % 3 == 0]),
                   "sink_valid": torch.tensor([i > 0]),
                   "band_valid": torch.arange(step.band_slots) >= step.band_slots - filled}
        with torch.no_grad():
            want = step(**inputs)
        got = engine.run("chunk_step", *inputs.values())
        errors.append([errors_of(w.float(), o.float(), "") for w, o in zip(want, got)])
    flat = [e for call in errors for e in call]
    return {"max_abs": max(e["max_abs"] for e in flat), "mean_abs": float(np.mean([e["mean_abs"] for e in flat])),
            "scale": max(e["scale"] for e in flat), "inputs": f"{calls} calls, random chunks and caches"}


def errors_of(want: torch.Tensor, got: torch.Tensor, inputs: str) -> dict:
    diff = (want.double() - got.double()).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "scale": float(want.double().abs().max()),
            "inputs": inputs}
