"""Dubbing against real recordings: tm render VIDEO VOICE on real talking videos and real voices.

    python benchmarks/dub_eval.py [--real DIR] [--seconds S] [--limit N] [--sheets DIR] [--json F]

Cases come from ../shared/real when it exists (development material, never copied into the
repository): each pairs a recording of `videos/` (people who speak, and sources with no audio or
that do not speak) with a voice of `voices/` in another language or of another speaker, cut to
--seconds. Each is dubbed with the default preset in a temporary folder, then measured:

- tm eval of the dub with the new voice (offset, correlation, /p b m/ closed, open vowels, closed
  in silence), the portrait targets;
- above the nose (rows above the source frame's nose tip less 0.15 interocular units), the PSNR
  of each dubbed frame against the source frame it was made from (ping-pong order), and of a
  frozen frame (the source's first) against the same frames, which says what the figure means;
- opening: the 90th percentile of the dub's inner-lip gap over the source's (each read back with
  the face mesh, the source in the dub's order): how wide the new speech opens this person's mouth
  against how wide they open it themselves (issue 28's range for a portrait: 0.8-1.25);
- duration against the voice's, frame rate and size against the source's.

With --sheets: a contact sheet per case, the source's mouth beside the dub's at six moments; they
hold the cases' pixels: never commit them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real"
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core.audio import SAMPLE_RATE, load_audio  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.media import read_video_frames  # noqa: E402
from tmcli.face.landmarks import NOSE_TIP, LandmarkTracker, interocular  # noqa: E402
from tmcli.stream.dub import source_index  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402
from tmcli.tools.evaluate import evaluate_video, mouth_aperture  # noqa: E402

# (video, voice): speaking sources with another language's voice; sources with no audio
CASES = [
    ("retalking_face1", "sadtalker_fayu"),
    ("retalking_face2", "sadtalker_deyu"),
    ("retalking_face3", "sadtalker_japanese"),
    ("retalking_face4", "sadtalker_chinese_news"),
    ("retalking_face5", "sadtalker_eluosi"),
    ("liveportrait_d3", "sadtalker_RD_Radio31_000"),
    ("vexpress_10", "retalking_1"),
    ("vexpress_tys", "musetalk_eng"),
    ("liveportrait_s20", "sadtalker_bus_chinese"),
    ("musetalk_sun", "sadtalker_RD_Radio34_002"),  # no audio in the source
    ("liveportrait_d0", "retalking_2"),  # no audio in the source
    ("liveportrait_d13", "iplap_abstract"),  # 1280x720, no audio
]
ABOVE_NOSE = 0.15  # interocular units above the nose tip where the "upper face" rows end
TARGETS = {"offset": 1, "correlation": 0.5, "bilabial": 0.85, "open": 0.80, "psnr": 30.0}


def voice_path(real: Path, name: str) -> Path:
    return next(p for p in (real / "voices").glob(f"{name}.*"))


def frames_of(path: Path) -> tuple[float, list[np.ndarray]]:
    fps, *frames = read_video_frames(path)
    return float(fps), frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def upper_face(source: list[np.ndarray], dubbed: list[np.ndarray], tracker) -> tuple[float, float, list]:
    """Median PSNR above the nose of the dub against its source frames, and of the first source
    frame held still; the source landmarks (None: no face) for the sheets."""
    ours, frozen, marks = [], [], []
    for k, frame in enumerate(dubbed):
        src = source[source_index(k, len(source), "pingpong")]
        h, w = frame.shape[:2]
        lm = tracker(src)
        marks.append(lm)
        if lm is None:
            continue
        top = int(lm[NOSE_TIP, 1] - ABOVE_NOSE * interocular(lm))
        if top < 8:
            continue
        ours.append(psnr(frame[:top], src[:top, :w]))
        frozen.append(psnr(source[0][:top, :w], src[:top, :w]))
    return float(np.median(ours)), float(np.median(frozen)), marks


def opening(marks: list, dubbed: list[np.ndarray], tracker) -> float:
    """90th percentile of the dub's inner-lip gap over its source frames' (`marks`), where both
    show a face."""
    pairs = [(m, tracker(frame)) for m, frame in zip(marks, dubbed) if m is not None]
    gaps = np.array([(mouth_aperture(m), mouth_aperture(d)) for m, d in pairs if d is not None])
    return float(np.percentile(gaps[:, 1], 90) / max(np.percentile(gaps[:, 0], 90), 1e-6))


def sheet(source, dubbed, marks, path: Path) -> None:
    from PIL import Image

    picks = [k for k in np.linspace(0, len(dubbed) - 1, 8).astype(int) if marks[k] is not None][:6]
    rows = []
    for k in picks:
        lm, src = marks[k], source[source_index(k, len(source), "pingpong")]
        u = interocular(lm)
        cx, cy = lm[[61, 291], :2].mean(axis=0)
        half = int(0.9 * u)
        y0, x0 = max(int(cy - half), 0), max(int(cx - half * 1.2), 0)
        box = (slice(y0, int(cy + half)), slice(x0, int(cx + half * 1.2)))
        pair = [
            Image.fromarray(np.ascontiguousarray(img[box])).resize((240, 200)) for img in (src, dubbed[k])
        ]
        rows.append(np.concatenate([np.asarray(p) for p in pair], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def run_case(real: Path, video: str, voice: str, seconds: float, tmp: Path, sheets: Path | None) -> dict:
    source_path = real / "videos" / f"{video}.mp4"
    wav = tmp / f"{video}-{voice}.wav"
    samples = load_audio(voice_path(real, voice))[: int(seconds * SAMPLE_RATE)]
    sf.write(wav, samples, SAMPLE_RATE)
    out = tmp / f"{video}-{voice}.mp4"
    result = render(source_path, wav, out, load_preset("default"))
    report = evaluate_video(out, wav)
    fps_in, source = frames_of(source_path)
    fps_out, dubbed = frames_of(out)
    tracker = LandmarkTracker(static=True)
    ours, frozen, marks = upper_face(source, dubbed, tracker)
    opened = opening(marks, dubbed, tracker)
    tracker.close()
    if sheets is not None:
        sheets.mkdir(parents=True, exist_ok=True)
        sheet(source, dubbed, marks, sheets / f"{video}-{voice}.png")
    h, w = source[0].shape[:2]
    return {
        "case": f"{video} + {voice}",
        "offset": report.offset_frames,
        "correlation": report.correlation,
        "bilabial": report.bilabial_closed,
        "bilabials": report.bilabials,
        "open": report.open_vowel_open,
        "open_vowels": report.open_vowels,
        "silence_closed": report.silence_closed,
        "opening": opened,
        "psnr": ours,
        "psnr_frozen": frozen,
        "duration_error_frames": len(dubbed) - len(samples) / SAMPLE_RATE * fps_out,
        "fps_kept": abs(fps_out - fps_in) < 0.01,
        "size_kept": dubbed[0].shape[:2] == (h - h % 2, w - w % 2),
        "speed": result.seconds_of_audio / result.wall_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--limit", type=int, default=len(CASES))
    parser.add_argument("--cases", help="comma-separated video names (default: all)")
    parser.add_argument("--sheets", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.real / "videos").is_dir():
        sys.exit(f"no real recordings at {args.real}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
        for video, voice in chosen[: args.limit]:
            rows.append(run_case(args.real, video, voice, args.seconds, Path(tmp), args.sheets))
            print(json.dumps(rows[-1]), flush=True)
    report(rows, args.json)


def report(rows: list[dict], json_path: Path | None) -> None:
    """A table of the cases, their medians, and closures and openings pooled over all cases."""
    table = Table(title="tm render VIDEO VOICE, measured")
    names = [
        *("case", "offset", "correlation", "bilabial", "open", "silence_closed"),
        *("opening", "psnr", "psnr_frozen"),
    ]
    shown = names + ["duration_error_frames", "fps_kept", "size_kept", "speed"]
    for name in shown:
        table.add_column(name, justify="left" if name == "case" else "right")
    for row in rows:
        table.add_row(*[f"{row[n]:.2f}" if isinstance(row[n], float) else str(row[n]) for n in shown])
    medians = {n: float(np.nanmedian([r[n] for r in rows])) for n in names[1:]}
    table.add_row("median", *[f"{medians[n]:.2f}" for n in names[1:]], "", "", "", "")
    pooled = {
        kind: sum(r[kind] * r[count] for r in rows if r[count]) / max(sum(r[count] for r in rows), 1)
        for kind, count in (("bilabial", "bilabials"), ("open", "open_vowels"))
    }
    Console(width=200).print(table)
    closed, opened = pooled["bilabial"], pooled["open"]
    print(f"pooled over the cases: /p b m/ closed {closed:.2f}, open vowels open {opened:.2f}")
    if json_path:
        summary = {"cases": rows, "medians": medians, "pooled": pooled}
        json_path.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
