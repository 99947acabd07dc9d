import subprocess

import numpy as np
import pytest
from PIL import Image

from tmcli.core.audio import ffmpeg_exe
from tmcli.core.errors import ImageError, InputError, OutputError
from tmcli.core.images import load_image
from tmcli.core.media import VideoWriter, read_video_frames


def test_odd_images_become_upright_8bit_rgb(tmp_path, portrait_image):
    h, w = portrait_image.shape[:2]
    rgba = np.dstack([portrait_image, np.full((h, w), 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # transparent corner -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    got = load_image(tmp_path / "rgba.png")
    assert got.shape == (h, w, 3) and (got[:10, :10] == 255).all()
    assert np.array_equal(got[20:, 20:], portrait_image[20:, 20:])

    Image.fromarray(portrait_image).convert("L").save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").shape == (h, w, 3)

    sixteen = portrait_image[..., 0].astype(np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    got = load_image(tmp_path / "deep.png")
    assert np.abs(got[..., 0].astype(int) - portrait_image[..., 0]).max() <= 1

    # stored rotated, with an EXIF tag saying "rotate 90 CW to view": loads upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(portrait_image, 1)).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    got = load_image(tmp_path / "rot.jpg")
    assert got.shape == portrait_image.shape
    assert np.abs(got.astype(int) - portrait_image).mean() < 6


def test_bad_images(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "text.png")


def _write(path, frames, audio=None, fps=25):
    with VideoWriter(path, frames[0].shape[1], frames[0].shape[0], fps, audio_path=audio) as w:
        for f in frames:
            w.write(f)


def test_writer_round_trip(tmp_path):
    frames = [np.full((64, 96, 3), v, np.uint8) for v in range(0, 250, 10)]
    out = tmp_path / "out.mp4"
    _write(out, frames)
    reader = read_video_frames(out)
    assert next(reader) == 25
    back = list(reader)
    assert len(back) == len(frames)
    assert all(abs(int(b.mean()) - int(f.mean())) <= 2 for b, f in zip(back, frames))
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_writer_muxes_audio_and_starts_fast(tmp_path):
    from conftest import SPEECH

    out = tmp_path / "a.mp4"
    _write(out, [np.zeros((32, 32, 3), np.uint8)] * 100, audio=SPEECH)
    info = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True
    ).stderr
    assert "Video: h264" in info and "yuv420p" in info and "Audio: aac" in info
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart


def test_failed_render_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 32, 32, 25) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("renderer broke")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_outputs(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="in the way"):
        VideoWriter(tmp_path / "file" / "x.mp4", 32, 32, 25).__enter__()
    with pytest.raises(OutputError, match="directory"):
        VideoWriter(tmp_path, 32, 32, 25).__enter__()
