"""Cold start of `tm render` from the shell: where the time goes before the first frame.

    python benchmarks/startup.py [--runs 5] [--seconds 13.4] [--tm "tm"] [--json] [--importtime]

Builds a speech file of exactly `--seconds` from the public-domain clips in samples/extra
(sorted by name, joined with 0.25 s pauses, cut with a 20 ms fade; written to a temporary
folder), then runs `tm render samples/portrait.png SPEECH -o OUT` as a subprocess `--runs`
times, each a fresh interpreter, default settings. The render writes its stage times to the
file named by TM_TIMINGS (runtime.StageTimer.write_json): busy seconds per stage and moments
(marks) after render() began, with the wall-clock moment it began, so every moment is put
on the benchmark's clock, measured from the launch of the command. Prints one row per stage
(median, then each run), the wall time and its ratio to the audio's length; the interpreter's
own start (`python -c pass`) and ffmpeg encoding the same number of frames alone (the floor).
--importtime: one more render under `python -X importtime`, not counted, and the imports that
took longest (both processes: the render's and its speech worker's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
PAUSE_S = 0.25
FADE_S = 0.02

# (label, how to read it from a run's record); moments are seconds after the launch
STAGES = [
    ("start-up until render() (interpreter, imports, CLI)", lambda r: r["render_began"]),
    ("  load generator (busy s)", lambda r: r["seconds"].get("load generator")),
    ("  landmarks: mediapipe + portrait (busy s)", lambda r: r["seconds"].get("landmarks")),
    (
        "speech decoders loaded in the worker (moment)",
        lambda r: r["at"].get("speech decoders loaded (worker)"),
    ),
    ("first phones + features: first utterance (moment)", lambda r: r["at"].get("first features")),
    ("first motion chunk (moment)", lambda r: r["at"].get("first motion")),
    ("first frame encoded (moment)", lambda r: r["at"].get("first frame")),
    ("video closed (moment)", lambda r: r["at"].get("stream end")),
    ("process exit = wall (s)", lambda r: r["wall"]),
    ("peak memory of the render process (MB, VmHWM)", lambda r: r.get("peak_memory_mb")),
]


def speech(seconds: float, path: Path) -> None:
    """`seconds` of speech from samples/extra/*.wav, deterministic: clips in name order with pauses."""
    import soundfile as sf

    n = int(round(seconds * SAMPLE_RATE))
    parts, total = [], 0
    for clip in sorted((ROOT / "samples" / "extra").glob("*.wav")):
        audio, rate = sf.read(clip, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise SystemExit(f"{clip} is not {SAMPLE_RATE} Hz")
        parts += [audio.mean(axis=1), np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)]
        total += len(parts[-2]) + len(parts[-1])
        if total >= n:
            break
    audio = np.concatenate(parts)[:n]
    audio = np.pad(audio, (0, n - len(audio)))
    fade = int(FADE_S * SAMPLE_RATE)
    audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")


def one_render(command: list[str], portrait: Path, audio: Path, out: Path, timings: Path) -> dict:
    env = dict(os.environ, TM_TIMINGS=str(timings))
    launched = time.time()
    done = subprocess.run(
        [*command, "render", str(portrait), str(audio), "-o", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.time() - launched
    if done.returncode != 0:
        raise SystemExit(f"tm render failed ({done.returncode}):\n{done.stderr}")
    record = json.loads(timings.read_text())
    began = record["origin_epoch"] - launched
    record["render_began"] = began
    record["at"] = {name: began + t for name, t in record["marks"].items()}
    record["wall"] = wall
    return record


def interpreter_start(python: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encode_floor(frames: int, width: int, height: int, fps: float, audio: Path, out: Path) -> float:
    """Seconds ffmpeg takes to encode `frames` frames of that size (a slowly changing picture)
    and mux the audio, with the render's settings and nothing to render."""
    sys.path.insert(0, str(ROOT))
    from tmcli.core.config import load_preset
    from tmcli.core.media import VideoWriter

    settings = load_preset().output
    base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    start = time.perf_counter()
    with VideoWriter(
        out, width, height, fps, audio_path=audio, crf=settings.crf, preset=settings.x264_preset
    ) as writer:
        for i in range(frames):
            writer.write(np.roll(base, i, axis=0))
    return time.perf_counter() - start


def slowest_imports(
    command: list[str], portrait: Path, audio: Path, out: Path, top: int
) -> list[tuple[str, float]]:
    """Top-level imports by cumulative seconds, in one render run under -X importtime."""
    python = _python_of(command)
    done = subprocess.run(
        [python, "-X", "importtime", "-m", "tmcli", "render", str(portrait), str(audio), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith("  ") or not cumulative.strip().isdigit():  # nested: counted in its parent
            continue
        name = name.strip()
        seconds[name] = seconds.get(name, 0.0) + int(cumulative) / 1e6
    return sorted(seconds.items(), key=lambda kv: -kv[1])[:top]


def _python_of(command: list[str]) -> str:
    """The interpreter that runs `command` (the shebang of a `tm` script)."""
    if Path(command[0]).name.startswith("python"):
        return command[0]
    script = shutil.which(command[0])
    if script:
        first = Path(script).read_bytes()[:200].split(b"\n")[0].decode(errors="replace")
        if first.startswith("#!") and "python" in first and "bash" not in first:
            return first[2:].strip().split()[0]
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=13.4, help="length of the speech")
    parser.add_argument("--portrait", type=Path, default=ROOT / "samples" / "portrait.png")
    parser.add_argument("--tm", default="tm", help='the command, e.g. "python3 -m tmcli"')
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--importtime", action="store_true", help="one more run under -X importtime (not counted)"
    )
    parser.add_argument("--keep", type=Path, help="copy the last video here")
    args = parser.parse_args()
    command = shlex.split(args.tm)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio, out = tmp / "speech.wav", tmp / "out.mp4"
        speech(args.seconds, audio)
        runs = [
            one_render(command, args.portrait, audio, out, tmp / f"timings{i}.json") for i in range(args.runs)
        ]
        if args.keep:
            shutil.copy(out, args.keep)
        python = _python_of(command)
        interpreter = interpreter_start(python, 5)
        first = runs[0]
        width, height = first["frame_size"]
        fps = first["frames"] / first["seconds_of_audio"]
        floor = encode_floor(first["frames"], width, height, fps, audio, tmp / "floor.mp4")
        imports = (
            slowest_imports(command, args.portrait, audio, tmp / "imp.mp4", 15) if args.importtime else []
        )
    rows = [(label, [get(r) for r in runs]) for label, get in STAGES]
    walls = [r["wall"] for r in runs]
    ratios = [w / r["seconds_of_audio"] for w, r in zip(walls, runs)]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    summary = {
        "command": f"{args.tm} render {args.portrait.name} SPEECH({args.seconds:g} s) -o OUT",
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_before": os.getloadavg()[0],
        "frames": first["frames"],
        "seconds_of_audio": first["seconds_of_audio"],
        "stages": {label: {"median": _median(values), "runs": values} for label, values in rows},
        "wall_over_audio": {"median": statistics.median(ratios), "runs": ratios},
        "interpreter_start_s": interpreter,
        "encode_floor_s": floor,
        "slowest_imports": imports,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    _print_table(summary, rows, ratios, interpreter, floor, imports)


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _print_table(summary: dict, rows, ratios, interpreter: float, floor: float, imports) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    table = Table(
        title=f"{summary['command']}: {summary['frames']} frames, {summary['seconds_of_audio']:.1f} s "
        f"of speech; seconds after the launch unless busy"
    )
    table.add_column("stage")
    table.add_column("median", justify="right")
    for i in range(len(ratios)):
        table.add_column(f"run {i + 1}", justify="right")
    for label, values in rows:
        table.add_row(label, fmt(_median(values)), *map(fmt, values))
    table.add_section()
    table.add_row("wall / audio", fmt(statistics.median(ratios)), *map(fmt, ratios))
    table.add_row("interpreter alone (python -c pass)", fmt(interpreter))
    table.add_row("floor: ffmpeg encoding the frames alone", fmt(floor))
    console = Console(width=None if sys.stdout.isatty() else 150)  # piped or logged: one line a stage
    console.print(table)
    if imports:
        console.print(
            "slowest top-level imports (one run under -X importtime, both processes): "
            + ", ".join(f"{name} {s:.2f} s" for name, s in imports)
        )
    console.print(
        f"machine: {summary['machine']}, commit {summary['commit']}, load average before: "
        f"{summary['load_before']:.2f}"
    )


if __name__ == "__main__":
    main()
