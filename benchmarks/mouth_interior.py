"""What tm paints between the lips, measured on portraits and shown as mouth crops (issue 29).

    python benchmarks/mouth_interior.py [PORTRAIT ...] [--real [DIR]] [--seconds 4] [--sheets DIR] \
        [--json out.json]

Each portrait (default: the samples, samples/portrait.png and samples/extra/*.jpg; with --real
also every portrait of ../shared/real/portraits) speaks the sample speech (samples/speech.wav,
cut to --seconds), rendered as a 256 px face crop like the reference benchmark, and is read back
with the face mesh: inside the parted lips (tmcli/tools/reference.py: the inner-lip polygon of frames
whose lip gap is >= OPEN), the share of near-black pixels (brightest channel < 0.15) and of
teeth-like ones (HSV value > 0.55, saturation < 0.35), per portrait and as medians, for all
portraits and for those whose own mouth is closed (the renderer paints all of what opens there;
a portrait showing teeth keeps its own). With --sheets, mouth crops at --sheet-size of each
portrait at rest and posed by the rig for an open vowel, a rounded /o u/, a spread /i e/, a
closure /p b m/ and silence are saved there as one contact sheet per 10 portraits. They hold
the portraits' pixels: keep them out of the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL_PORTRAITS = ROOT.parent / "shared" / "real" / "portraits"
SAMPLES = ROOT / "samples"
sys.path.insert(0, str(ROOT))

import soundfile  # noqa: E402

from tmcli.core.audio import SAMPLE_RATE, load_audio  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.core.errors import TmError  # noqa: E402
from tmcli.face.align import to_uint8  # noqa: E402
from tmcli.face.rig import INDEX, neutral  # noqa: E402
from tmcli.motion.portrait import Portrait  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402
from tmcli.tools.evaluate import CLOSED, mouth_aperture  # noqa: E402
from tmcli.tools.face_series import read_face_series  # noqa: E402

POSES = {  # rig blendshapes of each mouth shape on the sheets
    "open vowel": {"jawOpen": 0.55},
    "rounded /o u/": {"jawOpen": 0.25, "mouthFunnel": 0.5, "mouthPucker": 0.5},
    "spread /i e/": {
        "jawOpen": 0.2,
        "mouthStretchLeft": 0.4,
        "mouthStretchRight": 0.4,
        "mouthSmileLeft": 0.3,
        "mouthSmileRight": 0.3,
    },
    "closure /p b m/": {"mouthClose": 0.6, "mouthPressLeft": 0.4, "mouthPressRight": 0.4},
    "silence": {},
}
PER_SHEET = 10  # portraits (rows) per contact sheet


def mouth_state(portrait: Portrait) -> str:
    """'closed', 'teeth' (the renderer takes its teeth from the portrait) or 'apart'."""
    if mouth_aperture(portrait.rig.source) < CLOSED:
        return "closed"
    return "teeth" if portrait.renderer.own_teeth else "apart"


def mouth_crops(portrait: Portrait, side: int) -> list[np.ndarray]:
    """The portrait's mouth at rest, then posed as each of POSES: side x side uint8 crops."""
    from PIL import Image

    lm, unit = portrait.rig.source, portrait.rig.unit
    cx, cy = (lm[61, :2] + lm[291, :2]) / 2
    half = 0.75 * unit
    box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    frames = [portrait.renderer.image]
    for values in POSES.values():
        m = neutral(1)[0]
        for name, value in values.items():
            m[INDEX[name]] = value
        frames.append(portrait.renderer(portrait.rig.apply(m)))
    return [
        np.asarray(Image.fromarray(to_uint8(f)).crop(box).resize((side, side), Image.LANCZOS)) for f in frames
    ]


def save_sheets(rows: list[tuple[str, list[np.ndarray]]], folder: Path, side: int) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    titles = ["portrait"] + list(POSES)
    for start in range(0, len(rows), PER_SHEET):
        part = rows[start : start + PER_SHEET]
        sheet = Image.new("RGB", (len(titles) * side, 16 + len(part) * (side + 14)), "white")
        draw = ImageDraw.Draw(sheet)
        for c, title in enumerate(titles):
            draw.text((c * side + 4, 2), title, fill="black")
        for r, (name, crops) in enumerate(part):
            y = 16 + r * (side + 14)
            draw.text((4, y), name, fill="black")
            for c, crop in enumerate(crops):
                sheet.paste(Image.fromarray(crop), (c * side, y + 12))
        sheet.save(folder / f"mouths_{start // PER_SHEET}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("portraits", nargs="*", help="portraits (default: the samples)")
    parser.add_argument(
        "--real",
        nargs="?",
        const=REAL_PORTRAITS,
        type=Path,
        help=f"also every portrait of this folder (default {REAL_PORTRAITS})",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="the sample speech cut to this long")
    parser.add_argument("--generator", default="student")
    parser.add_argument("--sheets", help="save contact sheets of mouth crops here")
    parser.add_argument(
        "--sheet-size", type=int, default=512, help="crop side the sheets' mouths are rendered at"
    )
    parser.add_argument("--no-render", action="store_true", help="only the sheets, no shares")
    parser.add_argument("--json", help="write the shares here")
    args = parser.parse_args()
    paths = [Path(p) for p in args.portraits] or [
        SAMPLES / "portrait.png",
        *sorted((SAMPLES / "extra").glob("*.jpg")),
    ]
    if args.real:
        paths += sorted(p for p in args.real.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    preset = load_preset().with_overrides(output={"crop": True, "size": 256})
    sheet_preset = load_preset().with_overrides(output={"crop": True, "size": args.sheet_size})
    results, sheet_rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        soundfile.write(
            speech, load_audio(SAMPLES / "speech.wav")[: int(args.seconds * SAMPLE_RATE)], SAMPLE_RATE
        )
        for path in paths:
            name = path.stem
            try:
                state = mouth_state(Portrait.load(path, preset))
                entry = {"mouth": state}
                if not args.no_render:
                    out = Path(tmp) / f"{name}.mp4"
                    render(path, speech, out, preset, generator=args.generator)
                    dark, teeth = read_face_series(out).interior_shares()
                    entry.update(
                        dark=None if np.isnan(dark) else dark, teeth=None if np.isnan(teeth) else teeth
                    )
                if args.sheets:
                    sheet_rows.append(
                        (f"{name} ({state})", mouth_crops(Portrait.load(path, sheet_preset), 128))
                    )
            except TmError as exc:  # one failed portrait is reported, the rest go on
                print(f"{name}: {exc.message}", file=sys.stderr)
                continue
            results[name] = entry
            print(
                f"{name:>28} {state:>6}  near-black {entry.get('dark')}  teeth-like {entry.get('teeth')}",
                file=sys.stderr,
            )
    if args.sheets:
        save_sheets(sheet_rows, Path(args.sheets), 128)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def print_table(results: dict[str, dict]) -> None:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    print(f"{'portrait':>28} {'mouth':>6} {'near-black':>10} {'teeth-like':>10}")
    for name, entry in results.items():
        print(f"{name:>28} {entry['mouth']:>6} {fmt(entry.get('dark')):>10} {fmt(entry.get('teeth')):>10}")
    for label, keep in (("median", lambda e: True), ("median, closed", lambda e: e["mouth"] == "closed")):
        chosen = [e for e in results.values() if keep(e)]
        medians = [
            np.median(vs) if (vs := [e[k] for e in chosen if e.get(k) is not None]) else None
            for k in ("dark", "teeth")
        ]
        print(f"{label + f' ({len(chosen)})':>28} {'':>6} {fmt(medians[0]):>10} {fmt(medians[1]):>10}")


if __name__ == "__main__":
    main()
