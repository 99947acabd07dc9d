"""A long stream through the streaming student: flat memory, linear time, no drift.

    python benchmarks/long_stream.py [--minutes 60] [--short-seconds 10] [--student CKPT] [--video V]
                                     [--json out.json]

Makes speech with espeak-ng (sentences in varied voices, 0.2-1.5 s pauses), then renders a
short and a long stretch of it, each in its own process, with `tm render --generator student`
from standard input (raw PCM), at a 128 px face crop (memory and drift do not depend on the
size). Reported: peak resident memory of each run, seconds of compute per second of audio, and
per-minute motion statistics - mouth aperture (jawOpen while speaking), head-pose spread
(std of yaw, pitch, roll) and blinks per minute - for the first and the last minute - and the
resident memory at the end of each minute, so growth can be placed in time.

With --video, each run dubs a video instead: V played over and over (stream-copied by ffmpeg) into
a source as long as the speech, so the hour is an hour of source decoded, tracked and re-encoded
at its own size; the motion statistics are then not gathered (a dub's motion is the source's).

Peak memory is the kernel's high-water mark of the render process itself (VmHWM), not
`ru_maxrss`: Linux carries ru_maxrss across fork+exec, so a child started by a parent that once
held 1 GB reports 1 GB whatever it does (this script holds the hour of speech; the "+45%" an
earlier version reported was that). The children's column is ru_maxrss and inherits the same way:
an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core.audio import SAMPLE_RATE, ffmpeg_exe  # noqa: E402
from tmcli.speech.espeak import speech_for_seconds  # noqa: E402

CHILD = """
import json, os, resource, sys, threading, time
import numpy as np
from tmcli.core.config import load_preset
from tmcli.face.rig import INDEX
from tmcli.stream.pipeline import render
out, checkpoint, video = sys.argv[1], sys.argv[2] or None, sys.argv[3] or None
fps = 25.0
stats, minute, rises, clock = [], [], [], []
frames_done = [0]
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def hwm_mb():  # the kernel's high-water mark: catches peaks shorter than the sampling interval
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
def watch_memory():  # each new high (resident or high-water) by 5 MB or more; resident each minute
    high, began = 0.0, time.perf_counter()
    while True:
        now, wall = max(rss_mb(), hwm_mb()), time.perf_counter() - began
        if now > high + 5:
            high = now
            rises.append([round(rss_mb()), round(hwm_mb()), frames_done[0], round(wall)])
        if wall >= 60 * (len(clock) + 1):
            clock.append([round(rss_mb()), frames_done[0]])
        time.sleep(0.05)
threading.Thread(target=watch_memory, daemon=True).start()
def on_motion(chunk):
    frames_done[0] += len(chunk)
    minute.extend(chunk)
    while len(minute) >= 60 * fps:
        m = np.array(minute[: int(60 * fps)]); del minute[: int(60 * fps)]
        jaw = m[:, INDEX["jawOpen"]]
        blink = (m[:, INDEX["eyeBlinkLeft"]] + m[:, INDEX["eyeBlinkRight"]]) / 2
        onsets = int(np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5)))
        stats.append({"jaw_speaking": float(jaw[jaw > 0.05].mean()) if (jaw > 0.05).any() else 0.0,
                      "jaw_p90": float(np.percentile(jaw, 90)),
                      "pose_std": [float(m[:, INDEX[k]].std()) for k in ("headYaw", "headPitch", "headRoll")],
                      "blinks": onsets,
                      "rss_mb": rss_mb()})
def on_frame(done, total):
    frames_done[0] = done
preset = load_preset().with_overrides(output={"crop": True, "size": 128})
start = time.perf_counter()
result = render(video or "samples/portrait.png", "-", out, preset, generator="student", checkpoint=checkpoint,
                raw_rate=16000, on_motion=None if video else on_motion, on_frame=on_frame if video else None)
wall = time.perf_counter() - start
print(json.dumps({"frames": result.frames, "rss_rises": rises, "rss_per_minute": clock, "wall": wall,
                  "stats": stats,
                  "stages": result.stage_seconds,
                  "peak_rss_mb": hwm_mb(),
                  "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run(audio: np.ndarray, student: str | None, video: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pcm = Path(tmp) / "speech.raw"
        pcm.write_bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        source = looped(video, len(audio) / SAMPLE_RATE, Path(tmp)) if video else None
        cmd = [sys.executable, "-c", CHILD, str(Path(tmp) / "out.mp4"), student or "", str(source or "")]
        with open(pcm, "rb") as stdin:
            proc = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def looped(video: Path, seconds: float, folder: Path) -> Path:
    """`video` played over and over for `seconds` (+1), its frames copied, not re-encoded."""
    out = folder / f"source{video.suffix}"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-t", f"{seconds + 1}"]
        + ["-an", "-c", "copy", str(out)],
        check=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--student", help="student checkpoint (default: the shipped one)")
    parser.add_argument("--video", type=Path, help="dub this video (looped to the speech's length)")
    parser.add_argument("--json")
    args = parser.parse_args()
    t = time.perf_counter()
    audio = speech_for_seconds(args.minutes * 60)
    made = time.perf_counter() - t
    short = run(audio[: int(args.short_seconds * SAMPLE_RATE)], args.student, args.video)
    long_ = run(audio, args.student, args.video)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    console = Console(width=120)
    what = f"dubbing {args.video.name}" if args.video else "streaming student"
    table = Table(
        title=f"{what}, {platform.machine()}, {os.cpu_count()} cores, commit {commit} "
        f"(speech made in {made:.0f} s)"
    )
    for column in (
        "run",
        "audio",
        "frames",
        "wall",
        "s per s of audio",
        "peak RSS (tm)",
        "peak RSS (phones worker, ffmpeg)",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, r, seconds in (("short", short, args.short_seconds), ("long", long_, args.minutes * 60)):
        table.add_row(
            name,
            f"{seconds:.0f} s",
            str(r["frames"]),
            f"{r['wall']:.0f} s",
            f"{r['wall'] / seconds:.3f}",
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['children_peak_rss_mb']:.0f} MB",
        )
    console.print(table)
    growth = long_["peak_rss_mb"] / short["peak_rss_mb"] - 1
    console.print(f"peak memory, long vs short: {growth:+.1%}")
    stats = long_["stats"]
    if len(stats) >= 2:
        k = max(1, min(5, len(stats) // 2))  # minutes averaged at each end
        drift = Table(title=f"motion per minute: mean of the first {k} vs the last {k} minutes")
        for column in (
            "minutes",
            "jawOpen speaking",
            "jawOpen p90",
            "pose std yaw / pitch / roll",
            "blinks per minute",
        ):
            drift.add_column(column, justify="right")
        for label, part in (("first", stats[:k]), ("last", stats[-k:])):
            pose = np.mean([s["pose_std"] for s in part], axis=0)
            drift.add_row(
                label,
                f"{np.mean([s['jaw_speaking'] for s in part]):.3f}",
                f"{np.mean([s['jaw_p90'] for s in part]):.3f}",
                " / ".join(f"{v:.3f}" for v in pose),
                f"{np.mean([s['blinks'] for s in part]):.1f}",
            )
        console.print(drift)
        blinks = np.array([s["blinks"] for s in stats], dtype=float)
        slope = np.polyfit(np.arange(len(blinks)), blinks, 1)[0]
        console.print(
            f"blinks per minute over all {len(blinks)} minutes: {blinks.mean():.1f} +- {blinks.std():.1f}, "
            f"trend {slope * 10:+.2f} per 10 minutes"
        )
    rss = [r for r, _ in long_["rss_per_minute"]]
    if rss:
        marks = sorted({0, len(rss) // 4, len(rss) // 2, 3 * len(rss) // 4, len(rss) - 1})
        console.print(
            "resident memory after minute (of wall time) "
            + ", ".join(f"{i + 1}: {rss[i]:.0f} MB" for i in marks)
        )
    late = [(rss, hwm, wall) for rss, hwm, frame, wall in long_["rss_rises"] if frame > 0]
    if late:
        console.print(
            "new highs after the first frame (resident / high-water MB at minute of wall time): "
            + ", ".join(f"{rss} / {hwm} at {wall / 60:.1f}" for rss, hwm, wall in late[-8:])
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"short": short, "long": long_, "commit": commit}, indent=1))


if __name__ == "__main__":
    main()
