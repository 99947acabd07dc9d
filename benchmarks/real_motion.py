"""How real speakers move, against tm's training labels: motion statistics per data set.

    python benchmarks/real_motion.py DATA [DATA ...]

Each DATA is a folder from `tm data extract` (real talking videos, fitted per frame) or
`tm data synth` (tm's phonetic driver on synthetic speech: the labels the generators learn
from). Per clip, on the frames with a face (the neutral offset removed): head yaw / pitch /
roll spread (std, degrees) and the share of head-motion power below 1 Hz; the jaw's median
and 90th percentile (jawOpen, in the rig's units: the same coefficient opens every face by the
same share of its own interocular distance); blinks per minute (eyeBlink rising through 0.5),
frames per blink at or above 0.8 (how long the lids stay shut) and the deepest blink. A table
per data set lists the medians over its clips; `--clips` prints every clip.

This is what DriverSettings' head_turn, head_nod, head_sway, blink_hold and jaw_gain were set
from (see the teacher's model card).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.face.rig import INDEX  # noqa: E402
from tmcli.train.shards import read_manifest, read_shard  # noqa: E402

FIGURES = {  # name -> format
    "yaw": "{:.1f}",
    "pitch": "{:.1f}",
    "roll": "{:.1f}",
    "head < 1 Hz": "{:.0%}",
    "jaw p50": "{:.2f}",
    "jaw p90": "{:.2f}",
    "blinks/min": "{:.1f}",
    "shut frames/blink": "{:.1f}",
    "deepest blink": "{:.2f}",
}


def clip_figures(motion: np.ndarray, fps: float) -> dict[str, float]:
    """The figures of one clip's motion (frames with a face only)."""
    head = np.degrees(motion[:, [INDEX["headYaw"], INDEX["headPitch"], INDEX["headRoll"]]])
    spread = head.std(axis=0)
    centred = (head - head.mean(axis=0)) * np.hanning(len(head))[:, None]
    power = (np.abs(np.fft.rfft(centred, axis=0)) ** 2).sum(axis=1)[1:]
    freqs = np.fft.rfftfreq(len(head), 1 / fps)[1:]
    jaw = motion[:, INDEX["jawOpen"]]
    blink = motion[:, [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]].mean(axis=1)
    onsets = int(np.sum((blink[1:] >= 0.5) & (blink[:-1] < 0.5)))
    return {
        "yaw": spread[0],
        "pitch": spread[1],
        "roll": spread[2],
        "head < 1 Hz": power[freqs < 1.0].sum() / max(power.sum(), 1e-12),
        "jaw p50": np.percentile(jaw, 50),
        "jaw p90": np.percentile(jaw, 90),
        "blinks/min": 60 * onsets * fps / len(blink),
        "shut frames/blink": np.sum(blink >= 0.8) / onsets if onsets else float("nan"),
        "deepest blink": blink.max(),
    }


def data_set_figures(root: Path, min_seconds: float = 3.0) -> list[tuple[str, dict[str, float]]]:
    manifest = read_manifest(root)
    fps = manifest["fps"]
    listing = root / "clips.jsonl"
    names = (
        [json.loads(line) for line in listing.read_text().splitlines() if line.strip()]
        if listing.is_file()
        else []
    )
    rows = []
    for shard in manifest["shards"]:
        arrays = read_shard(root, shard["file"])
        offsets = arrays["frame_offsets"]
        for c in range(len(offsets) - 1):
            frames = slice(offsets[c], offsets[c + 1])
            valid = arrays["valid"][frames] > 0
            motion = (arrays["motion"][frames] - arrays["neutral"][c])[valid]
            if len(motion) < min_seconds * fps:
                continue
            entry = next((n for n in names if n.get("shard") == shard["file"] and n.get("index") == c), {})
            label = Path(entry["video"]).stem if "video" in entry else f"{shard['file']}:{c}"
            rows.append((label, clip_figures(motion, fps)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="+", type=Path, help="folders from tm data extract / tm data synth")
    parser.add_argument("--clips", action="store_true", help="a row per clip, not only the medians")
    parser.add_argument("--json", help="write the medians here (data set -> figure -> value)")
    args = parser.parse_args()
    table = Table(title="motion statistics: medians over clips (head spread in degrees)")
    table.add_column("data set / clip")
    table.add_column("clips", justify="right")
    for name in FIGURES:
        table.add_column(name, justify="right")
    medians = {}
    for root in args.data:
        rows = data_set_figures(root)
        if not rows:
            table.add_row(str(root), "0", *[""] * len(FIGURES))
            continue
        median = {k: float(np.nanmedian([r[k] for _, r in rows])) for k in FIGURES}
        medians[str(root)] = median
        table.add_row(
            f"[bold]{root}[/bold]", str(len(rows)), *(fmt.format(median[k]) for k, fmt in FIGURES.items())
        )
        if args.clips:
            for label, r in rows:
                table.add_row(f"  {label}", "", *(fmt.format(r[k]) for k, fmt in FIGURES.items()))
    Console(width=200).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()
