"""Blink depth as the face mesh reads it back from rendered frames (issue 28: lids meet).

    python benchmarks/blink_depth.py [PORTRAIT ...] [--crops DIR] [--size 512]

Per portrait (default: the sample astronaut), loaded as the pipeline loads it (Portrait.load,
default preset), renders the neutral motion and the motion with eyeBlinkLeft = eyeBlinkRight
at each of AMOUNTS, pasted back into the picture as a video frame is, and reads every frame
on its own with the face mesh (LandmarkTracker(static=True), as tm eval --reference does).
Depth = 1 - eye_gap(blink) / eye_gap(neutral) (reference.eye_gap: the lids' midpoints, both
eyes); a real full blink reads ~0.8-0.9. "-" where the mesh found no face.

--crops DIR writes, per portrait, the eyes at each amount side by side (PNG) to look at.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.config import load_preset
from tmcli.face import landmarks as L
from tmcli.face.rig import INDEX, neutral
from tmcli.motion.portrait import Portrait
from tmcli.tools.face_series import eye_gap

AMOUNTS = (0.5, 1.0)


def blink_motion(amount: float) -> np.ndarray:
    m = neutral(1)[0]
    m[INDEX["eyeBlinkLeft"]] = m[INDEX["eyeBlinkRight"]] = amount
    return m


def eyes_box(lm: np.ndarray, shape: tuple[int, ...], pad: float = 0.35) -> tuple[slice, slice]:
    """Rows and columns around both eyes' rings, `pad` interocular units wider."""
    ring = L.RIGHT_EYE_ABOVE + L.RIGHT_EYE_BELOW + L.LEFT_EYE_ABOVE + L.LEFT_EYE_BELOW
    (x0, y0), (x1, y1) = lm[ring, :2].min(axis=0), lm[ring, :2].max(axis=0)
    p = pad * L.interocular(lm)
    return (
        slice(max(int(y0 - p), 0), min(int(y1 + p), shape[0])),
        slice(max(int(x0 - p), 0), min(int(x1 + p), shape[1])),
    )


def measure(path: str, preset, tracker, crops: Path | None) -> dict[float, float]:
    """Depth per blink amount (nan where the mesh found no face)."""
    portrait = Portrait.load(path, preset)
    frames = {0.0: portrait.render_frame(blink_motion(0.0))}
    frames.update({a: portrait.render_frame(blink_motion(a)) for a in AMOUNTS})
    read = {a: tracker(f) for a, f in frames.items()}
    if read[0.0] is None:
        return {a: np.nan for a in AMOUNTS}
    rest = eye_gap(read[0.0])
    if crops is not None:
        from PIL import Image

        box = eyes_box(read[0.0], frames[0.0].shape)
        strip = np.concatenate([frames[a][box] for a in frames], axis=0)
        crops.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip).save(crops / f"{Path(path).stem}_eyes.png")
    return {a: np.nan if read[a] is None else 1 - eye_gap(read[a]) / rest for a in AMOUNTS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("portraits", nargs="*", default=[str(ROOT / "samples/portrait.png")])
    parser.add_argument("--crops", type=Path, help="write the eyes at each amount here (PNG per portrait)")
    parser.add_argument("--size", type=int, help="render crop side (default: the preset's output.size)")
    args = parser.parse_args()

    preset = load_preset()
    if args.size:
        preset = preset.with_overrides(output={"size": args.size})
    tracker = L.LandmarkTracker(static=True)
    header = " ".join(f"{f'blink {a:g}':>10}" for a in AMOUNTS)
    print(f"{'portrait':28} {header}")
    depths = []
    try:
        for path in args.portraits:
            try:
                depth = measure(path, preset, tracker, args.crops)
            except Exception as error:  # one bad portrait is reported, the rest go on
                print(f"{Path(path).name:28} failed: {error}")
                continue
            depths.append(depth)
            cells = " ".join("-".rjust(10) if np.isnan(depth[a]) else f"{depth[a]:>10.2f}" for a in AMOUNTS)
            print(f"{Path(path).name:28} {cells}", flush=True)
    finally:
        tracker.close()
    if len(depths) > 1:
        full = np.array([d[1.0] for d in depths])
        ok = full[~np.isnan(full)]
        print(f"full blink: median {np.median(ok):.2f}, >= 0.8 on {(ok >= 0.8).sum()} of {len(full)}")


if __name__ == "__main__":
    main()
