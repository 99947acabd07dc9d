"""tm against real recordings and other systems' renders of the same speech (tm eval --reference).

    python benchmarks/reference_eval.py [--generator student[:CKPT] ...] [--limit N] [--seconds S] \
        [--json out.json]
                                        [--sheets DIR]

Cases come from ../shared/real when it exists (development material, never copied into the
repository): every `videos/*.mp4` with an audio track (its first frame is the portrait, its own
audio the speech: tm is held against the person), and every `vasa1/` and `emo/` case
(`<case>_ref.jpg` + `<case>_aud.mp3`, held against `<case>_gt.mp4`, that system's render).
Each is cut to --seconds, rendered with each generator (face crop, 256 px) in a temporary
folder and measured by the same code as `tm eval VIDEO AUDIO --reference REF`; a table per
generator lists per case and as medians: lip-gap correlation at lag 0, the best lag (+ = tm
later), the opening ratio, yaw / pitch spread ratios, the blink depth of tm and of the reference,
and inside the parted lips the shares of near-black and of teeth-like pixels of each
(tmcli/tools/reference.py says how they are measured).
With --sheets, a contact sheet per case and generator (tm's frames above the reference's, at the
same moments) is saved there to be looked at; they hold the cases' pixels: never commit them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real"
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core.audio import ffmpeg_exe, load_audio  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.errors import TmError  # noqa: E402
from tmcli.core.media import read_video_frames  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402
from tmcli.tools.reference import evaluate_reference  # noqa: E402

SILENT = 1e-4  # peak sample below this: the audio track is mute
COLUMNS = {  # report field -> (column, format)
    "gap_correlation": ("corr lag 0", "{:.2f}"),
    "best_lag": ("best lag", "{:+.0f}"),
    "gap_correlation_best": ("corr best", "{:.2f}"),
    "opening_ratio": ("opening", "{:.2f}"),
    "yaw_spread_ratio": ("yaw spread", "{:.2f}"),
    "pitch_spread_ratio": ("pitch spread", "{:.2f}"),
    "blink_depth": ("blink tm", "{:.2f}"),
    "reference_blink_depth": ("blink ref", "{:.2f}"),
    "audio_correlation": ("loud. corr tm", "{:.2f}"),
    "reference_audio_correlation": ("loud. corr ref", "{:.2f}"),
    "mouth_dark": ("black tm", "{:.3f}"),
    "reference_mouth_dark": ("black ref", "{:.3f}"),
    "mouth_teeth": ("teeth tm", "{:.2f}"),
    "reference_mouth_teeth": ("teeth ref", "{:.2f}"),
}


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, capture_output=True)


def has_audio(video: Path) -> bool:
    probe = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True, check=False
    )
    return "Audio:" in probe.stderr


def find_cases(real: Path) -> list[dict]:
    """name, portrait (None: the video's first frame), audio (None: the video's own), reference."""
    cases = []
    for folder in ("vasa1", "emo"):
        for gt in sorted((real / folder).glob("*_gt.mp4")):
            stem = gt.name[: -len("_gt.mp4")]
            cases.append(
                {
                    "name": f"{folder}/{stem}",
                    "portrait": gt.with_name(f"{stem}_ref.jpg"),
                    "audio": gt.with_name(f"{stem}_aud.mp3"),
                    "reference": gt,
                }
            )
    for video in sorted((real / "videos").glob("*.mp4")):
        if has_audio(video):
            cases.append(
                {"name": f"videos/{video.stem}", "portrait": None, "audio": None, "reference": video}
            )
    return cases


def prepare(case: dict, seconds: float, folder: Path) -> tuple[Path, Path, Path]:
    """(portrait, speech wav, reference) cut to `seconds`, in `folder`."""
    reference, portrait, audio = folder / "reference.mp4", case["portrait"], folder / "speech.wav"
    ffmpeg(
        "-i",
        str(case["reference"]),
        "-t",
        str(seconds),
        "-an",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        "-pix_fmt",
        "yuv420p",
        str(reference),
    )
    if portrait is None:
        portrait = folder / "portrait.png"
        ffmpeg("-i", str(case["reference"]), "-frames:v", "1", str(portrait))
    ffmpeg(
        "-i",
        str(case["audio"] or case["reference"]),
        "-t",
        str(seconds),
        "-vn",
        "-ac",
        "1",
        "-ar",
        "16000",
        str(audio),
    )
    return portrait, audio, reference


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--generator",
        action="append",
        default=[],
        help="student[:CHECKPOINT_DIR] (default), teacher[:...] or phonetic; repeat to compare",
    )
    parser.add_argument("--real", default=str(REAL), help="the folder of real cases")
    parser.add_argument(
        "--case", action="append", default=[], help="only cases whose name contains this (repeatable)"
    )
    parser.add_argument("--limit", type=int, help="at most this many cases")
    parser.add_argument("--seconds", type=float, default=10.0, help="cut each case to this long")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every report here (generator -> case -> figures)")
    parser.add_argument("--sheets", help="save a contact sheet per case here (tm above the reference)")
    args = parser.parse_args()
    real = Path(args.real)
    if not real.is_dir():
        sys.exit(f"no real cases: {real} does not exist")
    cases = [c for c in find_cases(real) if not args.case or any(part in c["name"] for part in args.case)]
    cases = cases[: args.limit] if args.limit else cases
    preset = load_preset(args.preset).with_overrides(output={"crop": True, "size": 256})
    generators = args.generator or ["student"]
    results: dict[str, dict[str, dict | str]] = {spec: {} for spec in generators}
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            try:
                portrait, audio, reference = prepare(case, args.seconds, folder)
            except subprocess.CalledProcessError as exc:
                for spec in generators:
                    results[spec][case["name"]] = (
                        f"ffmpeg failed: {exc.stderr.decode(errors='replace').strip()[-200:]}"
                    )
                continue
            if np.abs(load_audio(audio)).max() < SILENT:  # LivePortrait's driving videos: a mute track
                for spec in generators:
                    results[spec][case["name"]] = "silent audio track: not a speech case, skipped"
                continue
            for spec in generators:
                kind, _, checkpoint = spec.partition(":")
                out = folder / f"{kind}.mp4"
                try:
                    render(
                        portrait,
                        audio,
                        out,
                        preset,
                        seed=args.seed,
                        generator=kind,
                        checkpoint=checkpoint or None,
                    )
                    report = evaluate_reference(out, reference, audio).as_dict()
                except TmError as exc:  # one failed case is reported, the rest go on
                    results[spec][case["name"]] = exc.message
                    print(f"{spec:>10} | {case['name']}: {exc}", file=sys.stderr)
                    continue
                results[spec][case["name"]] = report
                if args.sheets:
                    sheet = Path(args.sheets) / f"{case['name'].replace('/', '_')}_{kind}.png"
                    contact_sheet(
                        out, reference, sheet, f"{case['name']}: tm {spec} (top) / reference (bottom)"
                    )
                print(
                    f"{spec:>10} | {case['name']}: corr {report['gap_correlation']}, "
                    f"opening {report['opening_ratio']}",
                    file=sys.stderr,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    for spec, by_case in results.items():
        print_table(spec, by_case, args.seconds)


def contact_sheet(
    video: Path, reference: Path, path: Path, title: str, columns: int = 8, side: int = 160
) -> None:
    """`columns` moments evenly over the video: its frames in the top row, the reference's below."""
    from PIL import Image, ImageDraw

    rows = []
    for source in (video, reference):
        frames = list(read_video_frames(source))[1:]  # the first item is the fps
        picks = np.linspace(0, len(frames) - 1, columns + 2)[1:-1].round().astype(int)
        rows.append(
            [
                Image.fromarray(frames[i]).resize((side, side * frames[i].shape[0] // frames[i].shape[1]))
                for i in picks
            ]
        )
    height = max(im.height for row in rows for im in row)
    sheet = Image.new("RGB", (columns * side, 18 + 2 * height), "white")
    ImageDraw.Draw(sheet).text((4, 3), title, fill="black")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im, (c * side, 18 + r * height))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def cell(value, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def print_table(spec: str, by_case: dict[str, dict | str], seconds: float) -> None:
    table = Table(
        title=f"tm ({spec}) against the reference, first {seconds:g} s: lip gap correlation, best lag "
        "(+ = tm later), ratios tm / reference, blink depth of each, lip gap ~ loudness of each, "
        "near-black and teeth-like shares inside the parted lips of each"
    )
    table.add_column("case")
    for column, _ in COLUMNS.values():
        table.add_column(column, justify="right")
    reports = {}
    for name, report in by_case.items():
        if isinstance(report, str):
            table.add_row(name, f"[red]{report}[/red]", *[""] * (len(COLUMNS) - 1))
            continue
        reports[name] = report
        table.add_row(name, *(cell(report[field], fmt) for field, (_, fmt) in COLUMNS.items()))
    if reports:
        medians = []
        for field, (_, fmt) in COLUMNS.items():
            values = [r[field] for r in reports.values() if r[field] is not None]
            medians.append(cell(float(np.median(values)) if values else None, fmt))
        table.add_row(f"[bold]median[/bold] ({len(reports)})", *medians)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
