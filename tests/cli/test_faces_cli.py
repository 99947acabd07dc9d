"""tm faces: the listing, the preview and the JSON, and a render of the face it numbers."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tmcli.cli.app import app
from tmcli.core.errors import NoFaceError

from conftest import SAMPLES, SPEECH

GROUP = SAMPLES / "extra" / "group_6faces.jpg"
runner = CliRunner()


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    preview = tmp_path_factory.mktemp("faces") / "preview.png"
    result = runner.invoke(app, ["faces", str(GROUP), "--preview", str(preview), "--json", "-"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), preview


def test_json_lists_the_six_faces_largest_first(listed):
    faces, _ = listed
    assert [f["index"] for f in faces] == list(range(6))
    areas = [f["width"] * f["height"] for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert all(f["box"][2] - f["box"][0] == f["width"] for f in faces)


def test_preview_is_the_picture_with_boxes(listed):
    _, preview = listed
    with Image.open(preview) as drawn, Image.open(GROUP) as original:
        assert drawn.format == "PNG" and drawn.size == original.size


def test_table_shows_each_face(listed):
    faces, _ = listed
    result = runner.invoke(app, ["faces", str(GROUP)])
    assert result.exit_code == 0
    for face in faces:
        assert (
            ",".join(map(str, face["box"])) in result.output
            and f"{face['width']} x {face['height']}" in result.output
        )


def test_a_picture_without_a_face_is_tms_error(tmp_path):
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(wall)
    result = runner.invoke(app, ["faces", str(wall)])
    assert isinstance(result.exception, NoFaceError)


@pytest.mark.slow
def test_render_moves_only_the_numbered_face(listed, tmp_path):
    """--face-index 5 animates the smallest face; the other five stay as they were."""
    from tmcli.core.images import load_image
    from tmcli.core.media import read_video_frames

    faces, _ = listed
    out = tmp_path / "five.mp4"
    result = runner.invoke(
        app,
        [
            "render",
            str(GROUP),
            str(SPEECH),
            "-o",
            str(out),
            "--face-index",
            "5",
            "--generator",
            "phonetic",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    photo = load_image(GROUP).astype(np.float32)
    frames = read_video_frames(out)
    next(frames)  # the frame rate
    change = np.max([np.abs(frame.astype(np.float32) - photo).mean(axis=2) for frame in frames], axis=0)

    def moved(face):
        x0, y0, x1, y1 = face["box"]
        return change[y0:y1, x0:x1].mean()

    assert moved(faces[5]) > 2 * max(moved(f) for f in faces[:5])
