"""The faces of a picture listed for a person choosing `tm render --face-index`: numbers, boxes,
sizes, and a preview with each face boxed and numbered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmcli.core.errors import NoFaceError, OutputError
from tmcli.core.images import load_image
from tmcli.core.media import check_writable
from tmcli.face.landmarks import Face, detect_faces

BOX_COLOUR = (255, 220, 0)
LABEL_COLOUR = (0, 0, 0)
LINE_SHARE = 1 / 400  # box line width, as a share of the image's larger side
LABEL_SHARE = 0.3  # label height, as a share of the face's size


@dataclass(frozen=True)
class ListedFace:
    index: int  # what --face-index takes: 0 is the largest
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the landmarks, pixels
    width: int  # pixels
    height: int  # pixels


def list_faces(path: str | Path) -> tuple[np.ndarray, list[Face]]:
    """The picture (as tm reads portraits) and its faces, numbered as `--face-index` counts them."""
    image = load_image(path)
    faces = detect_faces(image)
    if not faces:
        raise NoFaceError(
            f"no face found in {path}",
            hint="faces must be roughly frontal and at least a few dozen pixels wide",
        )
    return image, faces


def describe(faces: list[Face]) -> list[ListedFace]:
    listed = []
    for index, face in enumerate(faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        listed.append(ListedFace(index, (x0, y0, x1, y1), x1 - x0, y1 - y0))
    return listed


def write_preview(image: np.ndarray, faces: list[Face], path: str | Path) -> None:
    """`image` with each face boxed and labelled with its index, as a PNG of the same size."""
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    check_writable(path)
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    line = max(2, round(max(image.shape[:2]) * LINE_SHARE))
    for listed, face in zip(describe(faces), faces):
        draw.rectangle(listed.box, outline=BOX_COLOUR, width=line)
        font = ImageFont.load_default(size=max(12, round(face.size * LABEL_SHARE)))
        label = str(listed.index)
        corner = (
            listed.box[0],
            max(listed.box[1], font.size + 2 * line),
        )  # above the box, inside the picture
        left, top, right, bottom = draw.textbbox(corner, label, font=font, anchor="lb")
        draw.rectangle((left - line, top - line, right + line, bottom + line), fill=BOX_COLOUR)
        draw.text(corner, label, fill=LABEL_COLOUR, font=font, anchor="lb")
    try:
        picture.save(path, format="PNG")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None
