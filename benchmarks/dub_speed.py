"""Speed of dubbing a video, per stage, against ffmpeg decoding and encoding the same video alone.

    python benchmarks/dub_speed.py [--video VIDEO] [--audio AUDIO] [--seconds S] [--repeat N]

The source is VIDEO (by default a 512x512, 25 fps video of the astronaut talking, rendered by tm
first); the speech is AUDIO (by default samples/speech.wav repeated) cut to --seconds, so a
source shorter than the speech plays ping-pong as it does for users. Prints ms per frame for each
stage (decode, tracking, fit + crop, generator, render, encode), the steady-state frames per
second (from the first frame out to the last), the real-time factor of the whole run and of its
steady state, and, in the same run, ffmpeg decoding the source and encoding as many frames with
tm's encoder settings: the floor no dub can beat.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.audio import SAMPLE_RATE, ffmpeg_exe, load_audio  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.runtime import StageTimer  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402

STAGES = [
    "decode",
    "tracking",
    "fit + crop",
    "audio, phones, generator (streamed)",
    "render",
    "encode (pipe)",
]


def source_video(folder: Path) -> Path:
    """512x512, 25 fps: the astronaut talking (tm's phonetic render of the sample, pasted back)."""
    out = folder / "source.mp4"
    preset = load_preset().with_overrides(output={"size": 512})
    render(
        ROOT / "samples" / "portrait.png", ROOT / "samples" / "speech.wav", out, preset, generator="phonetic"
    )
    return out


def speech(path: Path, seconds: float, folder: Path) -> Path:
    samples = load_audio(path)
    samples = np.tile(samples, int(np.ceil(seconds * SAMPLE_RATE / len(samples))))[
        : int(seconds * SAMPLE_RATE)
    ]
    out = folder / "speech.wav"
    sf.write(out, samples, SAMPLE_RATE)
    return out


def ffmpeg_floor(video: Path, frames: int, fps: float, audio: Path, out: Path) -> float:
    """Seconds ffmpeg takes to decode the source (looped) and encode `frames` frames of it with
    tm's settings (libx264 veryfast, CRF 18, yuv420p) and the audio: no tracking, no render."""
    start = time.perf_counter()
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-i", str(audio)]
        + ["-frames:v", str(frames), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast"]
        + ["-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-r", f"{fps}", str(out)],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path)
    parser.add_argument("--audio", type=Path, default=ROOT / "samples" / "speech.wav")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="dubs to run; the fastest is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = args.video or source_video(tmp)
        audio = speech(args.audio, args.seconds, tmp)
        best = None
        for _ in range(args.repeat):
            timer = StageTimer()
            result = render(video, audio, tmp / "dub.mp4", load_preset(), timer=timer)
            if best is None or result.wall_seconds < best[0].wall_seconds:
                best = result, timer
        result, timer = best
        fps = result.frames / result.seconds_of_audio
        floor = ffmpeg_floor(video, result.frames, fps, audio, tmp / "floor.mp4")
    steady = timer.marks["stream end"] - timer.marks["first frame"]
    table = Table(title=f"tm render {video.name if args.video else 'astronaut 512x512'} + {args.seconds:g} s")
    table.add_column("stage")
    table.add_column("ms / frame", justify="right")
    for stage in STAGES:
        table.add_row(stage, f"{1000 * timer.seconds.get(stage, 0.0) / result.frames:.1f}")
    table.add_row("first frame out after", f"{timer.marks['first frame']:.2f} s")
    table.add_row(
        "steady state", f"{(result.frames - 1) / steady:.1f} fps ({(result.frames - 1) / steady / fps:.2f}x)"
    )
    table.add_row(
        "whole dub", f"{result.wall_seconds:.1f} s ({result.seconds_of_audio / result.wall_seconds:.2f}x)"
    )
    table.add_row("ffmpeg decode + encode alone", f"{floor:.1f} s ({result.seconds_of_audio / floor:.2f}x)")
    Console().print(table)
    print(f"{result.frames} frames {result.frame_size[0]}x{result.frame_size[1]} at {fps:g} fps")


if __name__ == "__main__":
    main()
