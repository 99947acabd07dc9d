"""tm faces: the faces in a picture, numbered as `tm render --face-index` counts them."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tmcli.cli import options
from tmcli.core.console import console


def faces(
    image: Annotated[Path, typer.Argument(help="A picture with one or more faces.")],
    preview: Annotated[
        Optional[Path],
        typer.Option(help="Also write a PNG of the picture with each face boxed and numbered."),
    ] = None,
    json_out: options.Json = None,
) -> None:
    """List the faces in IMAGE, largest first; pick one with `tm render --face-index N`."""
    from tmcli.face.listing import describe, list_faces, write_preview

    picture, found = list_faces(image)
    listed = describe(found)
    if preview:
        write_preview(picture, found, preview)
    if json_out == "-":
        json.dump([asdict(face) for face in listed], sys.stdout, indent=2)
        print()
    else:
        table = Table(title=f"tm faces: {image.name}")
        for column in ("index", "box x0,y0,x1,y1", "size (w x h)"):
            table.add_column(column, justify="right")
        for face in listed:
            table.add_row(str(face.index), ",".join(map(str, face.box)), f"{face.width} x {face.height}")
        console.print(table)
        if json_out:
            Path(json_out).write_text(json.dumps([asdict(face) for face in listed], indent=2) + "\n")
    if preview:
        console.print(f"wrote {preview}")
