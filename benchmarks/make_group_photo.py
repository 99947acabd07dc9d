"""Make samples/extra/group_6faces.jpg: six public-domain faces, 100-130 px wide, on a gradient.

    python benchmarks/make_group_photo.py [-o samples/extra/group_6faces.jpg]

A test picture for "faces of any size": a group photo whose faces are too small for the
face mesh's own (short-range) detector. Each head is cut from a sample with a feathered oval
and scaled so its face (the landmark box's width, measured once with `tm faces` on the source)
gets a known width; widths differ so the largest-first order is known. Deterministic: the same
inputs and Pillow give the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
OUTPUT = SAMPLES / "extra" / "group_6faces.jpg"
WIDTH, HEIGHT = 1280, 886

# (file, mirrored, face box x0, y0, x1, y1 in the source, face width wanted, face centre wanted)
# Front row last so it is pasted over the back row; the largest faces are in front.
HEADS = [
    ("extra/fr_biden.jpg", False, (423, 223, 712, 565), 112, (330, 250)),
    ("extra/grace_hopper.jpg", False, (172, 132, 356, 333), 106, (640, 230)),
    ("portrait.png", True, (178, 71, 270, 177), 100, (950, 250)),
    ("extra/fr_obama.jpg", False, (370, 124, 611, 423), 130, (210, 580)),
    ("portrait.png", False, (178, 71, 270, 177), 124, (640, 600)),
    ("extra/fr_obama2.jpg", False, (196, 274, 482, 622), 118, (1070, 580)),
]
MARGIN = (0.4, 0.6, 0.4, 0.9)  # head cut around the face box: left, top, right, bottom in face widths
FEATHER = 0.04  # blur of the oval's edge, in head widths


def gradient(width: int, height: int) -> Image.Image:
    """A soft top-to-bottom gradient, blue-grey to warm grey: a plain studio backdrop."""
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    top, bottom = np.array([150, 165, 185]), np.array([205, 195, 180])
    rows = (1 - t) * top + t * bottom
    return Image.fromarray(np.broadcast_to(rows, (height, width, 3)).astype(np.uint8))


def head(path: Path, mirrored: bool, box: tuple[int, int, int, int], face_width: int):
    """The head around `box`, scaled so the face is `face_width` wide, with an oval alpha mask;
    also where the face centre lies in the cut."""
    image = Image.open(path).convert("RGB")
    x0, y0, x1, y1 = box
    fw = x1 - x0
    left, top, right, bottom = (int(m * fw) for m in MARGIN)
    cut = (max(x0 - left, 0), max(y0 - top, 0), min(x1 + right, image.width), min(y1 + bottom, image.height))
    piece = image.crop(cut)
    centre = ((x0 + x1) / 2 - cut[0], (y0 + y1) / 2 - cut[1])
    if mirrored:
        piece = ImageOps.mirror(piece)
        centre = (piece.width - centre[0], centre[1])
    scale = face_width / fw
    piece = piece.resize((round(piece.width * scale), round(piece.height * scale)), Image.LANCZOS)
    mask = Image.new("L", piece.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, piece.width - 1, piece.height - 1), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(FEATHER * piece.width))
    return piece, mask, (centre[0] * scale, centre[1] * scale)


def make_group_photo() -> Image.Image:
    canvas = gradient(WIDTH, HEIGHT)
    for name, mirrored, box, face_width, (cx, cy) in HEADS:
        piece, mask, (fx, fy) = head(SAMPLES / name, mirrored, box, face_width)
        canvas.paste(piece, (round(cx - fx), round(cy - fy)), mask)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    make_group_photo().save(args.output, quality=92)
    print(f"wrote {args.output} ({WIDTH}x{HEIGHT}, {len(HEADS)} faces)")


if __name__ == "__main__":
    main()
