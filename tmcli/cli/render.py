"""tm render: a portrait and speech become a video; or many jobs become many videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from tmcli.cli import options
from tmcli.core.console import console

if TYPE_CHECKING:
    from tmcli.stream.request import RenderRequest

PortraitArg = Annotated[
    Optional[Path],
    typer.Argument(
        help="Portrait image (png, jpg, webp, ...), or a video of a person to dub (its mouth re-made to say "
        "AUDIO). Any size; the largest face is used. With --manifest: the face of rows that name none.",
        show_default=False,
        rich_help_panel="Input and output",
    ),
]
AudioArg = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="Speech: wav, flac, ogg, mp3, m4a, a video file's audio track, or - for standard input. "
        "Several files: one video each, in the folder -o.",
        show_default=False,
        rich_help_panel="Input and output",
    ),
]
Output = Annotated[
    Optional[Path],
    typer.Option(
        "-o",
        "--output",
        help="Output mp4, or - for standard output (default: AUDIO's name with .mp4, here; standard output "
        "when AUDIO is -). With several inputs: a folder.",
        rich_help_panel="Input and output",
    ),
]
MotionOut = Annotated[
    Optional[Path],
    typer.Option(
        help="Also write the motion: .json (tm's own, lossless) or .csv (ARKit / Live Link Face columns, "
        "for Unreal, Unity, Blender).",
        rich_help_panel="Input and output",
    ),
]
Video = Annotated[
    bool,
    typer.Option(
        "--video/--no-video",
        help="--no-video: write only the --motion-out file.",
        rich_help_panel="Input and output",
    ),
]
MotionIn = Annotated[
    Optional[Path],
    typer.Option(
        help="Render the motion in this file (.json or ARKit .csv) instead of generating it; AUDIO, if "
        "given, is only muxed.",
        rich_help_panel="Input and output",
    ),
]
Manifest = Annotated[
    Optional[Path],
    typer.Option(
        help="Jobs, a .csv (header: portrait,audio,output,...) or .jsonl (an object a line); option "
        "columns: seed, transcript, generator, checkpoint, emotion, gaze, pose_intensity, blink_rate, "
        "cfg_scale, steps, fps, size, crop.",
        rich_help_panel="Batch",
    ),
]
SkipExisting = Annotated[
    bool,
    typer.Option(
        help="Leave outputs that already exist (rerun a batch to do what is left).", rich_help_panel="Batch"
    ),
]
NumProcesses = Annotated[
    int,
    typer.Option(
        help="Render a batch in this many processes (as `accelerate launch -m tmcli render` does).",
        rich_help_panel="Batch",
    ),
]
Device = Annotated[
    Optional[str],
    typer.Option(
        help="Where every stage runs: cpu, cuda or cuda:N (default cpu; in a multi-GPU launch, each process "
        "its own GPU).",
        rich_help_panel="Devices",
    ),
]
Devices = Annotated[
    Optional[str],
    typer.Option(
        help="GENERATOR,RENDERER devices, e.g. cuda:0,cuda:1: the generator on one, the renderer on the "
        "other.",
        rich_help_panel="Devices",
    ),
]
Dtype = Annotated[
    str, typer.Option(help="Generator precision on a GPU: fp32, bf16 or fp16.", rich_help_panel="Devices")
]
Disaggregate = Annotated[
    bool,
    typer.Option(
        help="Run the generator in a process of its own, sending motion to the renderer's over "
        "torch.distributed (gloo; nccl between GPUs).",
        rich_help_panel="Devices",
    ),
]
Fps = Annotated[
    Optional[float], typer.Option(help="Frames per second (preset: 25).", rich_help_panel="Input and output")
]
Size = Annotated[
    Optional[int],
    typer.Option(
        help="Side of the face crop the renderer works at (preset: 512).", rich_help_panel="Input and output"
    ),
]
Crop = Annotated[
    Optional[bool],
    typer.Option(
        "--crop/--paste-back",
        help="Write only the aligned face square, or paste it back into the portrait.",
        rich_help_panel="Input and output",
    ),
]
FaceIndex = Annotated[
    int,
    typer.Option(
        help="Which face when there are several: 0 is the largest.", rich_help_panel="Input and output"
    ),
]
Generator = Annotated[
    str,
    typer.Option(
        help="student (the causal streaming student), teacher (the bidirectional motion diffusion teacher) "
        "or phonetic (phones -> visemes, no weights).",
        rich_help_panel="Generator",
    ),
]
Checkpoint = Annotated[
    Optional[Path],
    typer.Option(
        help="Folder of a trained generator (tm train / tm distill; a video-backend student makes the "
        "frames itself); default: the one shipped with tm.",
        rich_help_panel="Generator",
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        help="torch (tm's models), or onnx / torch-export: the graphs of a `tm export` folder given with "
        "--model.",
        rich_help_panel="Generator",
    ),
]
Model = Annotated[
    Optional[Path],
    typer.Option(
        help="With --engine onnx|torch-export: the export folder (tm export).", rich_help_panel="Generator"
    ),
]
Rate = Annotated[
    Optional[int],
    typer.Option(
        help="AUDIO is headerless 16-bit mono PCM at this sample rate (for pipes).",
        rich_help_panel="Input and output",
    ),
]
CfgScale = Annotated[
    Optional[float],
    typer.Option(
        help="Audio guidance of a learned generator; 1 = none (preset: 1.5).", rich_help_panel="Generator"
    ),
]
Steps = Annotated[
    Optional[int],
    typer.Option(help="Sampling steps of a learned generator (preset: 16).", rich_help_panel="Generator"),
]
Gaze = Annotated[
    Optional[str],
    typer.Option(
        help="Where the eyes rest: X,Y in [-1, 1], right/down positive (preset: 0,0).",
        rich_help_panel="Controls",
    ),
]
Emotion = Annotated[
    Optional[str],
    typer.Option(
        help="neutral, happy, sad or surprised, optionally NAME:STRENGTH; mixes with commas.",
        rich_help_panel="Controls",
    ),
]
PoseIntensity = Annotated[
    Optional[float],
    typer.Option(help="Head motion, 0 (still) to 2 (lively); preset: 1.2.", rich_help_panel="Controls"),
]
BlinkRate = Annotated[
    Optional[float], typer.Option(help="Blinks per minute (preset: 15).", rich_help_panel="Controls")
]
Loop = Annotated[
    Optional[str],
    typer.Option(
        help="A video face shorter than AUDIO: pingpong (back and forth, the default), loop (from its start "
        "again) or freeze (its last frame).",
        rich_help_panel="Dubbing",
    ),
]
MotionFrom = Annotated[
    Optional[Path],
    typer.Option(
        help="A video whose head pose, blinks, gaze and brows the portrait takes; the mouth follows AUDIO.",
        rich_help_panel="Dubbing",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


def render(
    portrait: PortraitArg = None,
    audio: AudioArg = None,
    output: Output = None,
    motion_out: MotionOut = None,
    video: Video = True,
    motion_in: MotionIn = None,
    manifest: Manifest = None,
    skip_existing: SkipExisting = False,
    num_processes: NumProcesses = 1,
    device: Device = None,
    devices: Devices = None,
    dtype: Dtype = "fp32",
    disaggregate: Disaggregate = False,
    preset: options.Preset = "default",
    seed: options.Seed = 0,
    transcript: options.Transcript = None,
    fps: Fps = None,
    size: Size = None,
    crop: Crop = None,
    face_index: FaceIndex = 0,
    generator: Generator = "student",
    checkpoint: Checkpoint = None,
    engine: Engine = "torch",
    model: Model = None,
    rate: Rate = None,
    cfg_scale: CfgScale = None,
    steps: Steps = None,
    gaze: Gaze = None,
    emotion: Emotion = None,
    pose_intensity: PoseIntensity = None,
    blink_rate: BlinkRate = None,
    loop: Loop = None,
    motion_from: MotionFrom = None,
    quiet: Quiet = False,
) -> None:
    """Render AUDIO spoken by the face in PORTRAIT to an mp4 (H.264 + AAC), or dub a video with it; or
    many jobs."""
    given = {name: value for name, value in locals().items() if name != "quiet"}  # the options, by name
    if manifest is None and (portrait is None or (not audio and motion_in is None)):
        raise typer.BadParameter("give PORTRAIT and AUDIO (or --manifest)")
    from tmcli.stream.request import RenderRequest  # torch: imported here, so that `tm --help` stays quick

    request = RenderRequest(**given)
    if request.single:
        _render_one(request, quiet)
    else:
        _render_batch(request, quiet)


def _render_one(request: RenderRequest, quiet: bool) -> None:
    from tmcli.core.runtime import StageTimer
    from tmcli.stream.pipeline import render as run_render

    output = request.video_output()
    if request.skip_existing and output is not None and str(output) != "-" and output.exists():
        if not quiet:
            console.print(f"skipped {output}: it exists")
        return
    with options.progress("rendering", quiet, described=False) as progress:
        task = progress.add_task("render", total=None)
        timer = StageTimer()
        result = run_render(
            request.portrait,
            request.audio[0] if request.audio else None,
            output,
            request.settings,
            seed=request.seed,
            transcript=request.transcript,
            face_index=request.face_index,
            generator=request.generator,
            checkpoint=request.checkpoint,
            raw_rate=request.rate,
            devices=request.stage_devices,
            motion_in=request.motion_in,
            motion_out=request.motion_out,
            loop=request.loop or "pingpong",
            motion_from=request.motion_from,
            timer=timer,
            on_frame=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if os.environ.get("TM_TIMINGS"):  # the stages' times, for benchmarks/startup.py
        timer.write_json(
            os.environ["TM_TIMINGS"],
            frames=result.frames,
            seconds_of_audio=result.seconds_of_audio,
            frame_size=result.frame_size,
        )
    if not quiet:  # on stderr, as the progress bar: stdout may be the video
        total = result.wall_seconds
        wrote = ", ".join(str(p) for p in (output, request.motion_out) if p is not None)
        console.print(
            f"wrote {wrote}: {result.frames} frames, {result.seconds_of_audio:.2f} s "
            f"in {total:.1f} s ({result.seconds_of_audio / max(total, 1e-9):.1f}x real time)"
        )


def _render_batch(request: RenderRequest, quiet: bool) -> None:
    from tmcli.stream.batch import launch, render_batch

    batch = request.batch()
    report = _print_result if not quiet else _silent
    results = (
        launch(batch, request.num_processes, report)
        if request.num_processes > 1
        else render_batch(batch, report)
    )
    if results:  # the main process sums up
        counts = {s: sum(r.status == s for r in results) for s in ("rendered", "skipped", "failed")}
        if not quiet:
            console.print(
                f"{counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed"
            )
        if counts["failed"]:
            raise typer.Exit(1)


def _print_result(result) -> None:
    line = {
        "rendered": f"wrote {result.output} ({result.seconds:.1f} s)",
        "skipped": f"skipped {result.output}: it exists",
        "failed": f"[bold red]failed[/] {result.output}: {result.message}",
    }[result.status]
    console.print(f"[dim]p{result.process}[/] {line}", soft_wrap=True)


def _silent(result) -> None:
    if result.status == "failed":
        console.print(f"[bold red]failed[/] {result.output}: {result.message}", soft_wrap=True)
