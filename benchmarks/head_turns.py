"""Head turns of real amplitude: what the face mesh reads back, and a contact sheet to look at.

    python benchmarks/head_turns.py [PORTRAIT] --sheet SHEET.png [--seconds 2] [--size 256]

Renders (tm's own pipeline, `motion_in`, no audio) one sinusoid per axis in turn, at FREQUENCY
and the amplitude of AMPLITUDES: yaw, then pitch, then roll, every other channel neutral. The
video is read back with the face mesh (reference.read_face_series: yaw, pitch, roll in degrees
against the first frame, which is neutral) and a table prints, per axis, the commanded and the
read-back amplitude and their ratio (the calibration: read / commanded, a least-squares slope
over that axis's segment), the largest read-back on the two other axes (cross-talk), and how
much the shoulders (SHOULDERS: below the chin, beside the neck) changed at the axis's extremes:
mean |change| (of 255) and the share of their pixels that changed by more than MOVED.

The sheet shows, per axis, the neutral frame beside the frames at the two extremes, and the
absolute difference to the neutral frame (bright where the warp moved pixels: the neck, hair,
ears and background should stay dark away from the face).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core.config import load_preset
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.face.rig import INDEX, neutral
from tmcli.motion.curves import MotionWriter
from tmcli.stream.pipeline import render
from tmcli.tools.face_series import read_face_series
from tmcli.tools.reference import AXES

FREQUENCY = 0.5  # Hz
AMPLITUDES = {"yaw": 10.0, "pitch": 6.0, "roll": 5.0}  # degrees, issue 28 point 3
SHOULDERS = ((0.25, 1.0), (1.1, 2.5))  # rows below the chin, columns either side of it (interocular units)
MOVED = 12  # a pixel changed by more than this (of 255, any channel) has moved visibly
CHANNEL = {"yaw": "headYaw", "pitch": "headPitch", "roll": "headRoll"}


def sweep_motion(fps: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(motion (T, MOTION_DIM), commanded degrees (T, 3)): each axis in turn for `seconds`."""
    per_axis = round(seconds * fps)
    t = np.arange(per_axis) / fps
    wave = np.sin(2 * np.pi * FREQUENCY * t)
    commanded = np.zeros((3 * per_axis, 3))
    for a, axis in enumerate(AXES):
        commanded[a * per_axis : (a + 1) * per_axis, a] = AMPLITUDES[axis] * wave
    motion = neutral(len(commanded))
    for a, axis in enumerate(AXES):
        motion[:, INDEX[CHANNEL[axis]]] = np.radians(commanded[:, a])
    return motion, commanded


def extremes(commanded: np.ndarray) -> dict[int, int]:
    """Frame indices worth keeping: 0 (neutral) and each axis's two extremes."""
    keep = {0}
    for a in range(3):
        keep |= {int(np.argmin(commanded[:, a])), int(np.argmax(commanded[:, a]))}
    return sorted(keep)


def shoulders(shape: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: SHOULDERS below the chin and beside the neck (interocular units of the face)."""
    (top, bottom), beside = SHOULDERS
    chin, u = landmarks[L.CHIN, :2], L.interocular(landmarks)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (
        (rows >= chin[1] + top * u)
        & (rows <= chin[1] + bottom * u)
        & (np.abs(cols - chin[0]) >= beside[0] * u)
        & (np.abs(cols - chin[0]) <= beside[1] * u)
    )


def calibration(
    commanded: np.ndarray, read: np.ndarray, frames: dict[int, np.ndarray], landmarks: np.ndarray
) -> list[dict]:
    """Per axis, over the frames that command it: amplitude commanded and read, their slope,
    cross-talk, and how much the shoulders (shoulders()) changed at the extremes."""
    away = shoulders(frames[0].shape, landmarks)
    rest = frames[0].astype(np.int16)
    rows = []
    for a, axis in enumerate(AXES):
        on = np.abs(commanded[:, a]) > 0
        on[np.argmax(on) : len(on) - np.argmax(on[::-1])] = True  # the whole segment, zero crossings too
        c, r = commanded[on, a], read[on, a]
        slope = float(c @ r / (c @ c))
        others = [b for b in range(3) if b != a]
        change = [
            np.abs(frames[i].astype(np.int16) - rest).max(axis=2)[away]
            for i in (int(np.argmin(commanded[:, a])), int(np.argmax(commanded[:, a])))
        ]
        rows.append(
            {
                "axis": axis,
                "commanded": float(np.abs(c).max()),
                "read +": float(r[c > 0].max()) if (c > 0).any() else np.nan,
                "read -": float(r[c < 0].min()) if (c < 0).any() else np.nan,
                "ratio": slope,
                "cross": float(np.abs(read[on][:, others]).max()),
                "corr": float(np.corrcoef(c, r)[0, 1]),
                "shoulders mean": max(float(d.mean()) for d in change),
                "shoulders moved": max(float((d > MOVED).mean()) for d in change),
            }
        )
    return rows


def print_table(name: str, rows: list[dict]) -> None:
    print(f"\n{name}")
    print(
        f"{'axis':6} {'commanded':>10} {'read +':>8} {'read -':>8} {'read/cmd':>9} {'corr':>6} "
        f"{'cross-talk':>11}"
        f" {'shoulders: mean':>16} {f'>{MOVED}':>6}"
    )
    for r in rows:
        print(
            f"{r['axis']:6} {r['commanded']:>9.1f}° {r['read +']:>7.1f}° {r['read -']:>7.1f}° "
            f"{r['ratio']:>9.2f} {r['corr']:>6.2f} {r['cross']:>10.1f}° {r['shoulders mean']:>16.2f} "
            f"{r['shoulders moved']:>6.1%}"
        )


def face_box(landmarks: np.ndarray, shape: tuple[int, ...], margin: float = 0.9) -> tuple[slice, slice]:
    """Rows and columns around the face (its landmarks' box, `margin` of its size wider each side):
    the head, hair, ears, neck and the background next to them."""
    (x0, y0), (x1, y1) = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    pad = margin * max(x1 - x0, y1 - y0)
    rows = slice(max(int(y0 - pad), 0), min(int(y1 + pad), shape[0]))
    return rows, slice(max(int(x0 - pad), 0), min(int(x1 + pad), shape[1]))


def contact_sheet(
    frames: dict[int, np.ndarray], commanded: np.ndarray, landmarks: np.ndarray, path: Path, title: str
) -> None:
    """Per axis a row: -extreme, neutral, +extreme, and |difference to neutral| at each extreme,
    cut to the face's surroundings (face_box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    box = face_box(landmarks, frames[0].shape)
    frames = {i: f[box] for i, f in frames.items()}
    rest = frames[0].astype(np.int16)
    fig, axes = plt.subplots(3, 5, figsize=(15, 9.4))
    for a, axis in enumerate(AXES):
        lo, hi = int(np.argmin(commanded[:, a])), int(np.argmax(commanded[:, a]))

        def diff(i):
            return np.abs(frames[i].astype(np.int16) - rest).max(axis=2)

        panels = [
            (frames[lo], f"{axis} {commanded[lo, a]:+.0f}°"),
            (frames[0], "neutral"),
            (frames[hi], f"{axis} {commanded[hi, a]:+.0f}°"),
            (diff(lo), f"|{axis} {commanded[lo, a]:+.0f}° - neutral|"),
            (diff(hi), f"|{axis} {commanded[hi, a]:+.0f}° - neutral|"),
        ]
        for c, (image, label) in enumerate(panels):
            ax = axes[a, c]
            ax.imshow(image, cmap="magma" if image.ndim == 2 else None, vmin=0, vmax=60)
            ax.set_title(label, fontsize=10)
            ax.set_axis_off()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("portrait", nargs="?", default=str(ROOT / "samples/portrait.png"))
    parser.add_argument("--sheet", type=Path, help="write the contact sheet (PNG) here")
    parser.add_argument("--seconds", type=float, default=1 / FREQUENCY, help="per axis (default: one period)")
    parser.add_argument("--size", type=int, default=256, help="render crop side (the preset's output.size)")
    parser.add_argument(
        "--crop", action="store_true", help="render the face crop, not the pasted-back portrait"
    )
    args = parser.parse_args()

    preset = load_preset().with_overrides(output={"size": args.size, "crop": args.crop})
    fps = preset.output.fps
    motion, commanded = sweep_motion(fps, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        motion_path, video = Path(tmp) / "sweep.json", Path(tmp) / "sweep.mp4"
        with MotionWriter(motion_path, fps) as writer:
            writer.write(motion)
        result = render(args.portrait, None, video, preset, motion_in=motion_path)
        series = read_face_series(video)
        keep = extremes(commanded)
        frames = {i: f for i, f in enumerate(list(read_video_frames(video))[1:]) if i in keep}
    n = min(len(series.pose), len(commanded))
    first = next(t for t in series.tracks if t is not None)
    rows = calibration(commanded[:n], series.pose[:n], frames, first)
    print(
        f"{args.portrait}: {result.frames} frames at {fps:g} fps, crop {result.render_size}, "
        f"face found in {series.found.mean():.0%}, rendered in {result.wall_seconds:.1f} s"
    )
    print_table(Path(args.portrait).name, rows)
    if args.sheet:
        ratios = ", ".join(f"{r['axis']} {r['ratio']:.2f}" for r in rows)
        contact_sheet(
            frames, commanded, first, args.sheet, f"{Path(args.portrait).name}: read/commanded {ratios}"
        )
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
