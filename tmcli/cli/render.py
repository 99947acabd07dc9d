"""tm render: a portrait and speech become a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from tmcli.core.config import load_preset
from tmcli.core.console import console
from tmcli.core.errors import ConfigError
from tmcli.cli import options


def render(
    portrait: Annotated[Optional[Path], typer.Argument(help="Portrait image (png, jpg, webp, ...). Any size; the largest face is used. With --manifest: the portrait of rows that name none.", show_default=False, rich_help_panel="Input and output")] = None,
    audio: Annotated[Optional[list[Path]], typer.Argument(help="Speech: wav, flac, ogg, mp3, m4a, a video file's audio track, or - for standard input. Several files: one video each, in the folder -o.", show_default=False, rich_help_panel="Input and output")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output mp4, or - for standard output (default: AUDIO's name with .mp4, here; standard output when AUDIO is -). With several inputs: a folder.", rich_help_panel="Input and output")] = None,
    motion_out: Annotated[Optional[Path], typer.Option(help="Also write the motion: .json (tm's own, lossless) or .csv (ARKit / Live Link Face columns, for Unreal, Unity, Blender).", rich_help_panel="Input and output")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="--no-video: write only the --motion-out file.", rich_help_panel="Input and output")] = True,
    motion_in: Annotated[Optional[Path], typer.Option(help="Render the motion in this file (.json or ARKit .csv) instead of generating it; AUDIO, if given, is only muxed.", rich_help_panel="Input and output")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Jobs, a .csv (header: portrait,audio,output,...) or .jsonl (an object a line); option columns: seed, transcript, generator, checkpoint, emotion, gaze, pose_intensity, blink_rate, cfg_scale, steps, fps, size, crop.", rich_help_panel="Batch")] = None,
    skip_existing: Annotated[bool, typer.Option(help="Leave outputs that already exist (rerun a batch to do what is left).", rich_help_panel="Batch")] = False,
    num_processes: Annotated[int, typer.Option(help="Render a batch in this many processes (as `accelerate launch -m tmcli render` does).", rich_help_panel="Batch")] = 1,
    device: Annotated[Optional[str], typer.Option(help="Where every stage runs: cpu, cuda or cuda:N (default cpu; in a multi-GPU launch, each process its own GPU).", rich_help_panel="Devices")] = None,
    devices: Annotated[Optional[str], typer.Option(help="GENERATOR,RENDERER devices, e.g. cuda:0,cuda:1: the generator on one, the renderer on the other.", rich_help_panel="Devices")] = None,
    dtype: Annotated[str, typer.Option(help="Generator precision on a GPU: fp32, bf16 or fp16.", rich_help_panel="Devices")] = "fp32",
    disaggregate: Annotated[bool, typer.Option(help="Run the generator in a process of its own, sending motion to the renderer's over torch.distributed (gloo; nccl between GPUs).", rich_help_panel="Devices")] = False,
    preset: options.Preset = "default",
    seed: options.Seed = 0,
    transcript: options.Transcript = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second (preset: 25).", rich_help_panel="Input and output")] = None,
    size: Annotated[Optional[int], typer.Option(help="Side of the face crop the renderer works at (preset: 512).", rich_help_panel="Input and output")] = None,
    crop: Annotated[Optional[bool], typer.Option("--crop/--paste-back", help="Write only the aligned face square, or paste it back into the portrait.", rich_help_panel="Input and output")] = None,
    face_index: Annotated[int, typer.Option(help="Which face when there are several: 0 is the largest.", rich_help_panel="Input and output")] = 0,
    generator: Annotated[str, typer.Option(help="student (the causal streaming student), teacher (the bidirectional motion diffusion teacher) or phonetic (phones -> visemes, no weights).", rich_help_panel="Generator")] = "student",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Folder of a trained generator (tm train / tm distill; a video-backend student makes the frames itself); default: the one shipped with tm.", rich_help_panel="Generator")] = None,
    engine: Annotated[str, typer.Option(help="torch (tm's models), or onnx / torch-export: the graphs of a `tm export` folder given with --model.", rich_help_panel="Generator")] = "torch",
    model: Annotated[Optional[Path], typer.Option(help="With --engine onnx|torch-export: the export folder (tm export).", rich_help_panel="Generator")] = None,
    rate: Annotated[Optional[int], typer.Option(help="AUDIO is headerless 16-bit mono PCM at this sample rate (for pipes).", rich_help_panel="Input and output")] = None,
    cfg_scale: Annotated[Optional[float], typer.Option(help="Audio guidance of a learned generator; 1 = none (preset: 1.5).", rich_help_panel="Generator")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps of a learned generator (preset: 16).", rich_help_panel="Generator")] = None,
    gaze: Annotated[Optional[str], typer.Option(help="Where the eyes rest: X,Y in [-1, 1], right/down positive (preset: 0,0).", rich_help_panel="Controls")] = None,
    emotion: Annotated[Optional[str], typer.Option(help="neutral, happy, sad or surprised, optionally NAME:STRENGTH; mixes with commas.", rich_help_panel="Controls")] = None,
    pose_intensity: Annotated[Optional[float], typer.Option(help="Head motion, 0 (still) to 2 (lively); preset: 1.2.", rich_help_panel="Controls")] = None,
    blink_rate: Annotated[Optional[float], typer.Option(help="Blinks per minute (preset: 15).", rich_help_panel="Controls")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Render AUDIO spoken by the face in PORTRAIT to an mp4 (H.264 + AAC); or many jobs."""
    import os

    from tmcli.stream.batch import Batch, jobs_from_arguments, launch, preset_for, read_manifest, render_batch
    from tmcli.stream.pipeline import render as run_render
    from tmcli.core.runtime import StageDevices, StageTimer

    audio = audio or []
    checkpoint = _engine_checkpoint(engine, model, checkpoint, generator)
    job_options = {"seed": seed, "transcript": transcript, "face_index": face_index, "generator": generator,
                   "checkpoint": checkpoint, "gaze": gaze, "emotion": emotion, "pose_intensity": pose_intensity,
                   "blink_rate": blink_rate, "cfg_scale": cfg_scale, "steps": steps, "fps": fps, "size": size,
                   "crop": crop}
    settings = preset_for(load_preset(preset), job_options)  # bad flags fail here, before any work
    if rate is not None and not 1000 <= rate <= 384000:
        raise ConfigError(f"--rate must be a sample rate in Hz (1000-384000), got {rate}")
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num_processes}")
    stage_devices = StageDevices.parse(device, devices, dtype, disaggregate)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # inside accelerate launch / torchrun
    if not video and motion_out is None:
        raise ConfigError("--no-video leaves nothing to write", hint="add --motion-out FILE.json|FILE.csv")
    if motion_in is not None and (manifest is not None or len(audio) > 1 or num_processes > 1 or launched):
        raise ConfigError("--motion-in renders one video", hint="give PORTRAIT, the motion file and at most one AUDIO")
    if motion_in is not None and audio and str(audio[0]) == "-":
        raise ConfigError("--motion-in takes its audio from a file, not standard input")
    single = len(audio) == 1 or (motion_in is not None and not audio)
    if manifest is None and single and num_processes == 1 and not launched:
        if portrait is None:
            raise typer.BadParameter("give PORTRAIT and AUDIO")
        track = audio[0] if audio else None
        if not video:
            output = None
        else:
            name = track.stem if track is not None else motion_in.stem
            output = output or Path("-" if str(track) == "-" else name + ".mp4")
        if skip_existing and output is not None and str(output) != "-" and output.exists():
            if not quiet:
                console.print(f"skipped {output}: it exists")
            return
        with Progress(TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True, disable=quiet) as progress:
            task = progress.add_task("render", total=None)
            timer = StageTimer()
            result = run_render(portrait, track, output, settings, seed=seed, transcript=transcript,
                                face_index=face_index, generator=generator, checkpoint=checkpoint, raw_rate=rate,
                                devices=stage_devices, motion_in=motion_in, motion_out=motion_out, timer=timer,
                                on_frame=lambda done, total: progress.update(task, completed=done, total=total))
        if os.environ.get("TM_TIMINGS"):  # the stages' times, for benchmarks/startup.py
            timer.write_json(os.environ["TM_TIMINGS"], frames=result.frames, seconds_of_audio=result.seconds_of_audio,
                             frame_size=result.frame_size)
        if not quiet:  # on stderr, as the progress bar: stdout may be the video
            total = result.wall_seconds
            wrote = ", ".join(str(p) for p in (output, motion_out) if p is not None)
            console.print(f"wrote {wrote}: {result.frames} frames, {result.seconds_of_audio:.2f} s "
                          f"in {total:.1f} s ({result.seconds_of_audio / max(total, 1e-9):.1f}x real time)")
        return

    if motion_out is not None or not video:
        raise ConfigError("--motion-out and --no-video are for one render", hint="give one PORTRAIT and AUDIO")
    if manifest is not None:
        if audio:
            raise ConfigError("give AUDIO files or --manifest, not both")
        jobs = read_manifest(manifest, portrait, output)
    else:
        if portrait is None or not audio:
            raise typer.BadParameter("give PORTRAIT and AUDIO (or --manifest)")
        if any(str(a) == "-" for a in audio):
            raise ConfigError("standard input can be the only AUDIO")
        jobs = jobs_from_arguments(portrait, audio, output)
    if output is not None and str(output) == "-":
        raise ConfigError("many videos cannot all go to standard output", hint="give -o a folder")
    batch = Batch(jobs, load_preset(preset), {k: v for k, v in job_options.items() if v is not None},
                  skip_existing, device, devices, dtype, disaggregate)
    report = _print_result if not quiet else _silent
    results = launch(batch, num_processes, report) if num_processes > 1 else render_batch(batch, report)
    if results:  # the main process sums up
        counts = {s: sum(r.status == s for r in results) for s in ("rendered", "skipped", "failed")}
        if not quiet:
            console.print(f"{counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed")
        if counts["failed"]:
            raise typer.Exit(1)


def _engine_checkpoint(engine: str, model: Path | None, checkpoint: Path | None, generator: str) -> Path | None:
    """--engine/--model -> the folder the generator loads (an export folder is a checkpoint to it)."""
    from tmcli.stream.engine import ENGINES, ExportedModel

    if engine == "torch":
        if model is not None:
            raise ConfigError("--model is for --engine onnx or torch-export", hint="use --checkpoint for tm's models")
        return checkpoint
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint=f"use torch, {' or '.join(ENGINES)}")
    if model is None or checkpoint is not None:
        raise ConfigError(f"--engine {engine} needs --model EXPORT_DIR (and no --checkpoint)")
    if generator != "student":
        raise ConfigError("an export holds the streaming student", hint="drop --generator")
    ExportedModel(model, engine, graphs=())  # a missing, damaged or other-format export fails here
    return model


def _print_result(result) -> None:
    line = {"rendered": f"wrote {result.output} ({result.seconds:.1f} s)", "skipped": f"skipped {result.output}: it exists",
            "failed": f"[bold red]failed[/] {result.output}: {result.message}"}[result.status]
    console.print(f"[dim]p{result.process}[/] {line}", soft_wrap=True)


def _silent(result) -> None:
    if result.status == "failed":
        console.print(f"[bold red]failed[/] {result.output}: {result.message}", soft_wrap=True)
