"""tm export of a video-backend student: its causal Wan DiT and its VAE as graphs.

Four graphs (torch.onnx's dynamo exporter, or torch.export), at the student's frame size:
  chunk_step        video/wan_audio.py FixedShapeVideoStep: one chunk of latent frames, the KV cache
                    as explicit inputs and outputs (the motion student's layout);
  vae_encode        the portrait's face crop, one frame -> its normalised latent (video/vae.py
                    PortraitEncode): the image condition of the stream's first latent frame;
  vae_decode_first  the stream's first latent frame -> its one video frame, and the decoder's
                    causal-conv cache;
  vae_decode_next   each later latent frame and the cache -> 4 video frames and the new cache
                    (FixedShapeVAEDecode: the cache has one shape throughout).
Format safetensors writes the student folder (transformer, vae/, train.json) in the dtype.

Verified like the motion export (export.py): each graph against PyTorch fp32 on random inputs
and on a real stream (a recording's features and a portrait's face crop), in normalised latents
and in frames in [-1, 1], within the dtype's tolerance.

Not exported: the face crop itself (mediapipe's landmarks and the motion backend's mesh warp
make the portrait's frame at rest: data-dependent shapes, as export.py says of the warp; it
stays in tm's Python and feeds vae_encode), and a model with CLIP image tokens (Wan I2V's
image_dim: they are per portrait and tm has no image encoder to make them; such a model is refused).
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from tmcli.core.errors import InputError
from tmcli.core.media import save_pretrained
from tmcli.core.runtime import StageDevices, torch_dtype
from tmcli.stream.video import VideoStudent
from tmcli.tools.graphs import (
    TOLERANCE,
    RealInputs,
    check_report,
    errors_of,
    manifest_head,
    quiet_libraries,
    random_steps,
    write_graph,
    write_manifest,
)
from tmcli.video.vae import FixedShapeVAEDecode, PortraitEncode
from tmcli.video.wan_step import FixedShapeVideoStep


def write_video_export(checkpoint: str | Path, folder: Path, fmt: str, dtype: str, real: RealInputs) -> dict:
    """The export of the video student in `checkpoint`, written into `folder` and verified -> its manifest."""
    student = VideoStudent(checkpoint, StageDevices.cpu())
    model, vae, size = student.model, student.vae, student.size
    if model.config.image_dim:
        raise InputError(
            f"{checkpoint} takes CLIP image tokens (Wan I2V), which tm cannot make; it does not export"
        )
    if real.face is None or real.face.shape != (size, size, 3):
        raise ValueError(f"the check needs the portrait's {size} px face crop")
    latent = size // 8
    step = FixedShapeVideoStep(model, latent)
    manifest = manifest_head(model, fmt, dtype) | {
        "frame_size": size,
        "latent_size": latent,
        "chunk": {
            "latent_frames": model.config.chunk_latent_frames,
            "window_chunks": model.config.window_chunks,
            "video_frames": "1 + 4 (latent_frames - 1) for the stream's first chunk, 4 latent_frames after",
        },
        "vae": {
            "config": {k: v for k, v in vae.config.items() if not k.startswith("_")},
            "latents": "normalised, (latent - latents_mean) / latents_std: what every graph takes and gives",
            "frames": "RGB in [-1, 1], (1, 3, T, frame_size, frame_size)",
        },
        "not_exported": {
            "face crop": "mediapipe landmarks and the mesh warp make the portrait's frame at rest: "
            "data-dependent "
            "shapes; tm's Python makes it and vae_encode takes it",
            "CLIP image tokens": "Wan I2V's image_dim: per portrait, and tm has no image encoder",
        },
    }
    manifest["audio"] |= {
        "rows_per_chunk": step.audio_rows,
        "first_chunk_pad": step.first_chunk_pad,
        "rows": f"a chunk starting at latent frame F hears video frames 4F - 3 - "
        f"{model.config.audio_context} to "
        f"4 (F + latent_frames - 1) + {model.config.audio_context}; the first chunk (F = 0) hears "
        f"{step.first_chunk_pad} rows fewer and is padded at the front with any rows",
    }
    start = time.perf_counter()
    with quiet_libraries():  # the reference stays fp32 for the check
        low = torch_dtype(dtype)
        low_model, low_vae = copy.deepcopy(model).to(low), copy.deepcopy(vae).to(low)
    if fmt == "safetensors":
        save_pretrained(low_model, folder)
        save_pretrained(low_vae, folder / "vae")
        shutil.copy(Path(checkpoint) / "train.json", folder / "train.json")
    else:
        low_step = FixedShapeVideoStep(low_model, latent)
        modules = {
            "chunk_step": low_step,
            "vae_encode": PortraitEncode(low_vae, size),
            "vae_decode_first": FixedShapeVAEDecode(low_vae, latent, first=True),
            "vae_decode_next": FixedShapeVAEDecode(low_vae, latent, first=False),
        }
        manifest["graphs"] = {
            name: write_graph(folder, name, module, module.example_inputs(), fmt)
            for name, module in modules.items()
        }
    return write_manifest(
        folder, manifest, start, lambda: verify_video(student, step, folder, manifest, real)
    )


def verify_video(
    student: VideoStudent,
    step: FixedShapeVideoStep,
    folder: Path,
    manifest: dict,
    real: RealInputs,
    seed: int = 0,
) -> dict:
    """Each artifact against the PyTorch student (fp32): errors on random and real inputs, or ExportError."""
    from tmcli.stream.engine import ExportedModel
    from tmcli.stream.generator import VideoStreamingGenerator

    dtype = manifest["dtype"]
    report: dict = {"tolerance": {"normalised latents, frames in [-1, 1]": TOLERANCE[dtype]}}
    exported = VideoStudent(folder, StageDevices.cpu())
    if manifest["export_format"] != "safetensors":
        report["chunk_step, random"] = random_steps(step, ExportedModel(folder), seed)
    portrait = student.encode_crop(real.face)
    report["vae_encode, real"] = errors_of(
        portrait, exported.encode_crop(real.face), "the portrait's face crop"
    )
    rng = np.random.default_rng(seed)
    cases = {
        "real": real.features,
        "random": rng.normal(size=(len(real.features), real.features.shape[1])).astype(np.float32),
    }
    latents = {}
    for label, features in cases.items():  # both from the reference's portrait latent: the DiT's errors alone
        want = torch.cat(
            list(VideoStreamingGenerator(student.model).stream([features], portrait, seed)), dim=2
        )
        got = torch.cat(
            list(VideoStreamingGenerator(exported.model).stream([features], portrait, seed)), dim=2
        )
        report[f"stream, {label}"] = errors_of(want, got, f"{len(features)} frames, latents")
        latents[label] = want
    g = torch.Generator().manual_seed(seed)
    latents["random"] = torch.randn(latents["real"].shape, generator=g)
    for label, z in latents.items():
        report[f"vae decode, {label}"] = errors_of(
            student.new_decoder().decode(z),
            exported.new_decoder().decode(z),
            f"{z.shape[2]} latent frames, pixels in [-1, 1]",
        )
    return check_report(report, dtype, {})
