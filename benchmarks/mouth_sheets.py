"""tm's mouth beside another system's on the same portrait and speech, one column per phone group.

    python benchmarks/mouth_sheets.py DIR [--real ../shared/real] [--case NAME ...] [--seconds 10] \
        [--size 512]

For every `vasa1/` and `emo/` case of the real folder (portrait + audio + that system's render,
as in benchmarks/reference_eval.py) tm renders the portrait speaking the audio (face crop at
--size), the audio's phones are found as `tm render` finds them (tmcli.speech.alignment.speech_phones),
and for each phone group (open vowels, /o u/, /i e/, /f v/, /p b m/, /t d n l/, /th/, silence)
the frame at the middle of its longest phone is taken from both videos; each video's mouth is cut
out around its own face mesh landmarks (1.5 interocular distances square) so the two line up
whatever their framing. One sheet per case in DIR: tm's mouths above the reference's. They hold
the cases' pixels: never commit them.

It also prints, per phone group, the mouth's shape read back at the middle of every phone of the
group (medians over phones, then over cases): outer width / height (rounded lips are narrow and
tall, spread ones wide) and the inner-lip gap (interocular units), tm beside the reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image, ImageDraw  # noqa: E402
from reference_eval import REAL, find_cases, prepare  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core.audio import load_audio  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.media import read_video_frames  # noqa: E402
from tmcli.face import landmarks as L  # noqa: E402
from tmcli.speech.alignment import speech_phones  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402
from tmcli.tools.evaluate import mouth_aperture, track_video  # noqa: E402
from tmcli.tools.face_series import mouth_shape  # noqa: E402

GROUPS = {
    "open vowel": {"AA", "AE", "AH", "AO", "AW", "AY"},
    "/o u/": {"OW", "UW", "UH", "OY", "W"},
    "/i e/": {"IY", "IH", "EH", "EY"},
    "/f v/": {"F", "V"},
    "/p b m/": {"P", "B", "M"},
    "/t d n l/": {"T", "D", "N", "L"},
    "/th/": {"TH", "DH"},
    "silence": {"SIL"},
}
HALF = 0.75  # interocular units either side of the mouth's centre
LEAD_IN = 0.3  # s: phones before this are skipped (the first frames settle)


def moments(phones, seconds: float) -> dict[str, tuple[float, str]]:
    """Phone group -> (time of the middle of its longest phone, the phone), within the cut."""
    picked = {}
    for group, labels in GROUPS.items():
        inside = [p for p in phones if p.label in labels and p.start >= LEAD_IN and p.end <= seconds]
        if inside:
            longest = max(inside, key=lambda p: p.end - p.start)
            picked[group] = ((longest.start + longest.end) / 2, longest.label)
    return picked


def at_times(tracks: list, fps: float, times: list[float]) -> list:
    """The landmarks nearest each time (the frame or a neighbour with a face; None if none)."""
    found = []
    for t in times:
        i = int(round(t * fps))
        near = [j for j in (i, i - 1, i + 1) if 0 <= j < len(tracks) and tracks[j] is not None]
        found.append((near[0], tracks[near[0]]) if near else None)
    return found


def mouth_crops(
    video: Path, tracks: list, fps: float, times: list[float], side: int
) -> list[Image.Image | None]:
    """The mouth at each time (None where no face is found near it), side x side."""
    frames = list(read_video_frames(video))[1:]
    crops = []
    for hit in at_times(tracks, fps, times):
        if hit is None or hit[0] >= len(frames):
            crops.append(None)
            continue
        i, lm = hit
        centre = (lm[61, :2] + lm[291, :2]) / 2
        half = HALF * L.interocular(lm)
        box = tuple(int(round(v)) for v in (*(centre - half), *(centre + half)))
        crops.append(Image.fromarray(frames[i]).crop(box).resize((side, side), Image.LANCZOS))
    return crops


def group_shapes(phones, tracks: list, fps: float, seconds: float) -> dict[str, tuple[float, float]]:
    """Phone group -> (median outer width / height, median inner gap) at the middle of its phones."""
    shapes = {}
    for group, labels in GROUPS.items():
        times = [
            (p.start + p.end) / 2
            for p in phones
            if p.label in labels and LEAD_IN <= p.start and p.end <= seconds
        ]
        hits = [lm for _, lm in filter(None, at_times(tracks, fps, times))]
        if hits:
            shapes[group] = (
                float(np.median([mouth_shape(lm) for lm in hits])),
                float(np.median([mouth_aperture(lm) for lm in hits])),
            )
    return shapes


def save_sheet(
    path: Path, title: str, picked: dict[str, tuple[float, str]], rows: dict[str, list], side: int
) -> None:
    sheet = Image.new("RGB", (len(GROUPS) * side + 60, 34 + len(rows) * side), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    for c, group in enumerate(GROUPS):
        label = (
            f"{group}: {picked[group][1]} {picked[group][0]:.2f}s" if group in picked else f"{group}: none"
        )
        draw.text((60 + c * side + 2, 18), label, fill="black")
    for r, (name, crops) in enumerate(rows.items()):
        y = 34 + r * side
        draw.text((4, y + side // 2), name, fill="black")
        for c, group in enumerate(GROUPS):
            crop = crops.get(group)
            if crop is not None:
                sheet.paste(crop, (60 + c * side, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for the sheets")
    parser.add_argument("--real", default=str(REAL))
    parser.add_argument("--case", action="append", default=[], help="only cases whose name contains this")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=512, help="tm's face crop side")
    parser.add_argument("--side", type=int, default=160, help="a mouth's side on the sheet")
    args = parser.parse_args()
    cases = [
        c
        for c in find_cases(Path(args.real))
        if c["portrait"] is not None and (not args.case or any(part in c["name"] for part in args.case))
    ]
    if not cases:
        sys.exit(f"no portrait + audio cases under {args.real}")
    preset = load_preset().with_overrides(output={"crop": True, "size": args.size})
    shapes: dict[str, dict[str, list]] = {"tm": {}, "reference": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            portrait, audio, reference = prepare(case, args.seconds, folder)
            out = folder / "tm.mp4"
            render(portrait, audio, out, preset)
            phones = speech_phones(load_audio(audio))
            picked = moments(phones, args.seconds)
            times = [picked[g][0] for g in GROUPS if g in picked]
            rows = {}
            for name, video in (("tm", out), ("reference", reference)):
                fps, tracks, _ = track_video(video)
                crops = iter(mouth_crops(video, tracks, fps, times, args.side))
                rows[name if name == "tm" else case["name"].split("/")[0]] = {
                    g: next(crops) for g in GROUPS if g in picked
                }
                for group, figures in group_shapes(phones, tracks, fps, args.seconds).items():
                    shapes[name].setdefault(group, []).append(figures)
            sheet = args.out / f"{case['name'].replace('/', '_')}.png"
            save_sheet(
                sheet,
                f"{case['name']}: tm (top) beside the reference (bottom), at each group's longest phone",
                picked,
                rows,
                args.side,
            )
            print(f"{case['name']}: {sheet}", file=sys.stderr)
    print_shapes(shapes, len(cases))


def print_shapes(shapes: dict[str, dict[str, list]], cases: int) -> None:
    table = Table(
        title=f"mouth shape per phone group, medians over {cases} cases: outer width / height, inner gap (u)"
    )
    for column in ("phone group", "tm width/height", "ref width/height", "tm gap", "ref gap"):
        table.add_column(column, justify="left" if column == "phone group" else "right")
    for group in GROUPS:
        tm, ref = (np.array(shapes[k].get(group, [(np.nan, np.nan)])) for k in ("tm", "reference"))
        table.add_row(group, *(f"{np.nanmedian(v):.2f}" for v in (tm[:, 0], ref[:, 0], tm[:, 1], ref[:, 1])))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
