"""tm export: a student checkpoint -> graphs (ONNX or torch.export) or weights in a dtype, verified."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from tmcli import spaces
from tmcli.core.console import console

CheckpointArg = Annotated[
    Path,
    typer.Argument(
        help="Student checkpoint (tm distill; motion or video backend), or 'default' for the one "
        "shipped with tm."
    ),
]
Out = Annotated[Path, typer.Option("-o", "--output", help="Folder to write (graphs + manifest.json).")]
Format = Annotated[
    str,
    typer.Option(
        "--format", help="onnx, torch-export or safetensors (the weights in --dtype, a tm checkpoint)."
    ),
]
Dtype = Annotated[str, typer.Option(help="fp32, fp16 or bf16 (bf16: torch-export and safetensors only).")]
Audio = Annotated[
    Optional[Path],
    typer.Option(help="Speech whose features the export is checked on (default: 4 s of espeak-ng speech)."),
]
Portrait = Annotated[
    Optional[Path],
    typer.Option(
        help="Portrait whose rig (video: face crop) the check runs on (default: scikit-image's astronaut)."
    ),
]
Size = Annotated[
    Optional[int],
    typer.Option(
        help="Render size the warp graph is made for, with --portrait (default: the default preset's, "
        "512): the warp makes that portrait's crop at that size, which follows the portrait's "
        "resolution; `tm render --engine` renders must make the same crop size."
    ),
]
Overwrite = Annotated[bool, typer.Option(help="Replace OUT if it is an existing folder.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q")]


def export(
    checkpoint: CheckpointArg,
    out: Out,
    format: Format = "onnx",
    dtype: Dtype = "fp32",
    audio: Audio = None,
    portrait: Portrait = None,
    size: Size = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Export the streaming student's chunk step (KV cache as inputs and outputs), the face rig
    and the warp (a video student: its VAE encoder and streaming decoder) as graphs, check them
    against PyTorch on random and real inputs, and write a manifest."""
    from tmcli.core.config import load_preset
    from tmcli.tools.bench import stand_in_portrait, stand_in_speech
    from tmcli.tools.export import export as run_export
    from tmcli.tools.graphs import check_request

    check_request(format, dtype, out, overwrite)
    checkpoint, face_size = _checked_inputs(checkpoint, audio, portrait)
    with (
        console.status("reading the check's inputs", spinner="dots")
        if not quiet
        else contextlib.nullcontext(),
        tempfile.TemporaryDirectory(prefix="tm-export-") as tmp,
    ):
        audio, portrait = audio or stand_in_speech(Path(tmp), 4.0), portrait or stand_in_portrait(Path(tmp))
        preset = load_preset("default")
        real = _real_inputs(
            audio, portrait, preset.with_overrides(output={"size": size}) if size else preset, face_size
        )
    with (
        console.status(f"exporting {format} {dtype} and checking it", spinner="dots")
        if not quiet
        else contextlib.nullcontext()
    ):
        manifest = run_export(checkpoint, out, format, dtype, real, overwrite)
    if not quiet:
        _print_check(manifest, out, format, dtype, face_size)


def _checked_inputs(checkpoint: Path, audio: Path | None, portrait: Path | None) -> tuple[Path, int | None]:
    """The checkpoint ("default": the embedded student) and, for a video student, its face size;
    a bad checkpoint or a missing input fails here, in one line."""
    from tmcli.core.errors import InputError
    from tmcli.stream.sources import embedded_checkpoint

    if str(checkpoint) == "default":
        checkpoint = embedded_checkpoint("student")
    for path, flag in ((audio, "--audio"), (portrait, "--portrait")):
        if path is not None and not path.is_file():
            raise InputError(
                f"{path} does not exist", hint=f"give {flag} FILE: the check runs on real inputs"
            )
    return checkpoint, spaces.of_checkpoint(checkpoint).export_face_size(checkpoint)


def _print_check(manifest: dict, out: Path, format: str, dtype: str, face_size: int | None) -> None:
    from rich.table import Table

    units = (
        "normalised latents; frames in [-1, 1]"
        if face_size
        else "normalised motion; rig in px; warp in [0, 1]"
    )
    table = Table(title=f"{out}: {format}, {dtype}, checked against PyTorch fp32 ({units})")
    for column in ("check", "max |error|", "mean |error|", "inputs"):
        table.add_column(column)
    for label, errors in manifest["verification"].items():
        if label != "tolerance":
            table.add_row(label, f"{errors['max_abs']:.2e}", f"{errors['mean_abs']:.2e}", errors["inputs"])
    console.print(table)
    console.print(
        f"tolerance {manifest['verification']['tolerance']}; written in {manifest['export_seconds']} s"
    )


def _real_inputs(audio: Path, portrait: Path, preset, face_size: int | None):
    """The speech's features, and the portrait's rig and renderer (motion) or its face crop at
    face_size (video)."""
    from tmcli.core import audio as audio_mod
    from tmcli.motion.portrait import Portrait
    from tmcli.speech.alignment import speech_phones
    from tmcli.speech.features import generator_features
    from tmcli.stream.video import face_crop
    from tmcli.tools.graphs import RealInputs

    samples = audio_mod.load_audio(audio)
    features = generator_features(
        audio_mod.extract_features(samples, preset.output.fps), speech_phones(samples)
    )
    if face_size:
        return RealInputs(features, face=face_crop(portrait, preset, face_size))
    face = Portrait.load(portrait, preset)
    return RealInputs(features, face.rig.tensors(), face.renderer)
