"""Still images in: any image PIL reads, checked from its header before it is decoded, as RGB uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tmcli.core.errors import ImageError, InputError
from tmcli.core.media import media_streams

MAX_PORTRAIT_PIXELS = 8192 * 8192  # larger portraits are refused from their header, before decoding
_GIVE = "give a photo (png, jpg, webp, ...) or a video of a face (mp4, mov, ...)"
_SCALE_DOWN = "scale it down, e.g. to 4096 pixels on its longer side"


def load_image(path: str | Path) -> np.ndarray:
    """Any still image PIL reads -> H x W x 3 uint8 RGB, upright (EXIF orientation applied).

    Alpha is composited over white; greyscale, CMYK and 16-bit images become 8-bit RGB. What is
    not a still image (a folder, an empty file, a PDF, a video or an animation, one over
    MAX_PORTRAIT_PIXELS by its header) raises ImageError saying so, before anything is decoded.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    with open_image(path) as img:
        try:
            img = ImageOps.exif_transpose(img)
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(
                f"cannot read {path} as an image: {exc}",
                hint="is it cut short? open and save it again as PNG or JPEG",
            ) from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    rgb = np.asarray(img.convert("RGB"))
    if rgb.shape[0] < 16 or rgb.shape[1] < 16:
        raise ImageError(
            f"{path} is too small ({rgb.shape[1]}x{rgb.shape[0]}) to hold a face",
            hint="use a photo with the face at least 100 pixels wide",
        )
    return np.ascontiguousarray(rgb)


def check_image(path: str | Path) -> None:
    """What load_image refuses from the file's header alone (cheap: nothing is decoded)."""
    open_image(Path(path)).close()


def open_image(path: Path):
    """The image at `path`, opened (header read, pixels not decoded) and checked to be one still
    picture of a size tm takes."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image", hint="give the portrait's file")
    if not path.is_file():
        raise InputError(f"portrait not found: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes)", hint=_GIVE)
    try:
        with warnings.catch_warnings():  # sizes between PIL's warning and error are refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path} is too large to be a portrait: its header claims over "
            f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (a decompression bomb?)",
            hint=_SCALE_DOWN,
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _not_an_image(path, exc) from None
    width, height = img.size
    if width * height > MAX_PORTRAIT_PIXELS:
        img.close()
        raise ImageError(
            f"{path} is too large: {width}x{height} ({width * height / 1e6:.0f} megapixels; tm takes "
            f"up to {MAX_PORTRAIT_PIXELS / 1e6:.0f})",
            hint=_SCALE_DOWN,
        )
    if getattr(img, "is_animated", False):
        img.close()
        raise ImageError(
            f"{path} is an animation, not a still image",
            hint="tm render dubs it as a video; elsewhere give one still frame as PNG or JPEG",
        )
    return img


def _not_an_image(path: Path, exc: Exception) -> ImageError:
    """Why PIL could not open `path`, in the user's terms: a PDF, a video, audio, or something else."""
    with open(path, "rb") as f:
        head = f.read(5)
    if head == b"%PDF-":
        return ImageError(
            f"{path} is a PDF document, not an image", hint="export the page with the face as PNG or JPEG"
        )
    streams = media_streams(path)
    if "Video" in streams:
        return ImageError(
            f"{path} is a video, not an image",
            hint=f"tm render dubs videos; else give a frame: ffmpeg -i {path} -frames:v 1 portrait.png",
        )
    if "Audio" in streams:
        return ImageError(
            f"{path} is audio, not an image or a video", hint="the order is: tm render PORTRAIT AUDIO"
        )
    return ImageError(f"cannot read {path} as an image or a video: {exc}", hint=_GIVE)
