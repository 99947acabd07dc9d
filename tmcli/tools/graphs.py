"""What the motion and video exports share: formats and tolerances, the request check, writing a
graph and the manifest, publishing the folder only once it is verified, and the checks of a
graph against PyTorch."""

from __future__ import annotations

import contextlib
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

from tmcli.core.errors import ExportError, OutputError
from tmcli.core.media import umask
from tmcli.core.runtime import DTYPES
from tmcli.motion.warp import MeshWarpRenderer
from tmcli.stream.engine import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, ExportedModel, sha256

FORMATS = ("onnx", "torch-export", "safetensors")
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 2.5e-1}  # max |error| / max(1, max |value|) of motion, cache
SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}


@dataclasses.dataclass
class RealInputs:
    """What the check runs on besides random tensors: a recording's generator features (T,
    FEATURE_DIM) and a portrait: its rig tensors (FaceRig.tensors()) and renderer (the motion
    backend's), or its face crop (the video backend's)."""

    features: np.ndarray
    rig: dict[str, torch.Tensor] | None = None
    renderer: MeshWarpRenderer | None = None  # the motion backend's, at the size the warp graph is for
    face: np.ndarray | None = (
        None  # the video backend's: the portrait's face crop (S, S, 3) uint8 at its size
    )


def publish(out: Path, write: Callable[[Path], dict]) -> dict:
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
        raise ExportError(
            "onnxruntime has no CPU kernels for bf16 (Sigmoid, LayerNormalization, ...): a bf16 ONNX "
            "graph could not be checked or run here",
            hint="use --dtype fp16, or --format torch-export",
        )
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and overwrite):
        raise OutputError(f"{out} exists", hint="pass --overwrite to replace it" if out.is_dir() else None)


def manifest_head(model, fmt: str, dtype: str) -> dict:
    """What every export's manifest starts with: its kind, the model's config, the sampler and
    the audio features the graphs hear (the motion and video backends hear the same ones)."""
    from tmcli.core.audio import FEATURE_RATE, N_MELS
    from tmcli.speech.features import FEATURE_DIM, FEATURES_VERSION, PHONE_CLASSES

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "export_format": fmt,
        "dtype": dtype,
        "model": {k: v for k, v in model.config.items() if not k.startswith("_")}
        | {"class": type(model).__name__},
        "fps": model.config.fps,
        "sampler": {
            "sigmas": model.sigmas,
            "timestep_scale": 1000,
            "rule": "x <- randn; per sigma s_k: clean = x - s_k * velocity(x, s_k * 1000); "
            "x <- (1 - s_k+1) clean + s_k+1 randn; then commit clean with write=True at timestep 0",
        },
        "audio": {
            "feature_dim": FEATURE_DIM,
            "features_version": FEATURES_VERSION,
            "layout": f"{N_MELS} log-mels (feature rate {FEATURE_RATE}/s, pooled to the video frame), "
            f"rms, envelope, voiced, pitch, then one-hot phone classes {list(PHONE_CLASSES)}",
            "silence_row": "features.silence_features: what frames before the start and past the end hear",
        },
    }


def write_graph(
    folder: Path, name: str, module: torch.nn.Module, example: tuple, fmt: str, dynamic: tuple | None = None
) -> dict:
    """One module as a graph file (its INPUTS and OUTPUTS named) -> its manifest entry.

    dynamic: torch.export dynamic shapes, one entry per input; only a first input's first axis
    is ever dynamic, and the manifest names it "frames"."""
    file = folder / (name + SUFFIX[fmt])
    with torch.no_grad(), quiet_libraries():
        try:
            if fmt == "onnx":
                torch.onnx.export(
                    module,
                    example,
                    str(file),
                    input_names=list(module.INPUTS),
                    output_names=list(module.OUTPUTS),
                    dynamo=True,
                    optimize=True,
                    external_data=False,
                    dynamic_shapes=dynamic,
                    verbose=False,
                )
            else:
                torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic), str(file))
        except ImportError as exc:
            raise ExportError(f"exporting {fmt} needs {exc.name}", hint='pip install "tm[export]"') from None
    shapes = [list(t.shape) for t in example]
    if dynamic:
        shapes[0][0] = "frames"
    return {
        "file": file.name,
        "sha256": sha256(file),
        "inputs": [
            {"name": n, "shape": s, "dtype": str(t.dtype).removeprefix("torch.")}
            for n, s, t in zip(module.INPUTS, shapes, example)
        ],
        "outputs": list(module.OUTPUTS),
    }


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
            raise ExportError(
                f"the {dtype} export differs from PyTorch on {label}: max |error| "
                f"{errors['max_abs']:.3g} > {limit:.3g}"
            )
    return report


def random_steps(step: torch.nn.Module, engine: ExportedModel, seed: int, calls: int = 12) -> dict:
    """A fixed-shape chunk step (motion or video: the same cache inputs) on random chunks,
    conditions and caches, the band part-filled, then full: errors of the graph against PyTorch."""
    g = torch.Generator().manual_seed(seed)
    errors = []
    chunk = step.band_slots // step.model.config.window_chunks  # slots one chunk fills
    for i in range(calls):
        inputs = {
            name: torch.randn(t.shape, generator=g) if t.is_floating_point() else t
            for name, t in zip(step.INPUTS, step.example_inputs())
        }
        filled = (i * chunk) % (step.band_slots + chunk)
        inputs |= {
            "timestep": torch.rand(1, generator=g) * 1000,
            "write": torch.tensor([i % 3 == 0]),
            "sink_valid": torch.tensor([i > 0]),
            "band_valid": torch.arange(step.band_slots) >= step.band_slots - filled,
        }
        with torch.no_grad():
            want = step(**inputs)
        got = engine.run("chunk_step", *inputs.values())
        errors.append([errors_of(w.float(), o.float(), "") for w, o in zip(want, got)])
    flat = [e for call in errors for e in call]
    return {
        "max_abs": max(e["max_abs"] for e in flat),
        "mean_abs": float(np.mean([e["mean_abs"] for e in flat])),
        "scale": max(e["scale"] for e in flat),
        "inputs": f"{calls} calls, random chunks and caches",
    }


def errors_of(want: torch.Tensor, got: torch.Tensor, inputs: str) -> dict:
    diff = (want.double() - got.double()).abs()
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "scale": float(want.double().abs().max()),
        "inputs": inputs,
    }
