"""The render crop: a square around the face with the eyes level, and the way back.

Rendering happens in the crop (`size` x `size`, eyes level and at a fixed scale) so every stage
sees faces of the same size; `Compositor` puts the rendered crop back into the full image with
a feathered edge. The warp is the identity near the crop border, so no seam shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EYE_SPAN = 0.25  # interocular distance as a fraction of the crop side
EYES_ABOVE_CENTRE = 0.45  # interocular units from the eye line down to the crop centre


@dataclass(frozen=True)
class Alignment:
    matrix: np.ndarray  # (2, 3) image pixels -> crop pixels (a similarity)
    size: int  # crop side in pixels

    @property
    def scale(self) -> float:
        return float(np.hypot(*self.matrix[0, :2]))

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        out = np.array(pts, dtype=np.float64, copy=True)
        out[..., :2] = pts[..., :2] @ self.matrix[:, :2].T + self.matrix[:, 2]
        if out.shape[-1] > 2:
            out[..., 2] = pts[..., 2] * self.scale
        return out

    def inverse(self) -> np.ndarray:
        a = self.matrix[:, :2]
        inv = np.linalg.inv(a)
        return np.concatenate([inv, -inv @ self.matrix[:, 2:]], axis=1)


def align_face(
    landmarks: np.ndarray, size: int, span: float = 1 / EYE_SPAN, below_eyes: float = EYES_ABOVE_CENTRE
) -> Alignment:
    """The crop (`size` pixels, eyes level) `span` interocular units wide, its centre `below_eyes`
    units below the eyes' midpoint: by default the whole face (a lower-face crop: dubbing)."""
    right = (landmarks[33, :2] + landmarks[133, :2]) / 2
    left = (landmarks[263, :2] + landmarks[362, :2]) / 2
    eye_axis = left - right
    iod = float(np.linalg.norm(eye_axis))
    angle = np.arctan2(eye_axis[1], eye_axis[0])
    scale = size / (span * iod)
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    rot = np.array([[c, -s], [s, c]])
    down = np.array([-eye_axis[1], eye_axis[0]]) / iod  # perpendicular to the eye line, pointing down
    centre = (right + left) / 2 + below_eyes * iod * down
    offset = np.array([size / 2, size / 2]) - rot @ centre
    return Alignment(np.concatenate([rot, offset[:, None]], axis=1), size)


def _normalised_grid(points: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel positions (..., 2) -> grid_sample's [-1, 1] coordinates (align_corners=False)."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=points.dtype)
    return (points + 0.5) * scale - 1.0


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float in [0, 1]."""
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def crop_image(image: np.ndarray, alignment: Alignment) -> torch.Tensor:
    """The aligned crop, 1 x 3 x size x size in [0, 1]. Large images are shrunk with a filter
    first, so the crop is not aliased."""
    from PIL import Image

    matrix = alignment.matrix.copy()
    if alignment.scale < 0.9:
        h, w = image.shape[:2]
        pre = alignment.scale
        image = np.asarray(
            Image.fromarray(image).resize((max(1, round(w * pre)), max(1, round(h * pre))), Image.LANCZOS)
        )
        matrix[:, :2] /= pre
    src = image_to_tensor(image)
    size = alignment.size
    inv = np.linalg.inv(matrix[:, :2])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    crop_pts = np.stack([xs, ys], axis=-1) - matrix[:, 2]
    img_pts = torch.from_numpy(crop_pts @ inv.T).float()
    grid = _normalised_grid(img_pts, src.shape[3], src.shape[2])[None]
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Compositor:
    """Pastes rendered crops back into the full portrait (feathered at the crop's border)."""

    FEATHER = 0.06  # fraction of the crop side over which the crop fades into the portrait

    def __init__(self, image: np.ndarray, alignment: Alignment, device: torch.device | str = "cpu"):
        h, w = image.shape[:2]
        self.height, self.width = h - h % 2, w - w % 2  # H.264 yuv420p wants even sizes
        background = np.ascontiguousarray(image[: self.height, : self.width])
        size = alignment.size
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        inv = alignment.inverse()
        img_corners = corners @ inv[:, :2].T + inv[:, 2]
        x0, y0 = np.floor(img_corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(img_corners.max(axis=0)).astype(int)
        self.x0, self.y0 = max(x0, 0), max(y0, 0)
        self.x1, self.y1 = min(x1, self.width), min(y1, self.height)
        ys, xs = np.mgrid[self.y0 : self.y1, self.x0 : self.x1].astype(np.float64)
        crop_pts = np.stack([xs, ys], axis=-1) @ alignment.matrix[:, :2].T + alignment.matrix[:, 2]
        self.grid = _normalised_grid(torch.from_numpy(crop_pts).float(), size, size)[None].to(device)
        edge = np.minimum(crop_pts, size - crop_pts).min(axis=-1) / (self.FEATHER * size)
        ramp = np.clip(edge, 0, 1)
        self.mask = torch.from_numpy(ramp * ramp * (3 - 2 * ramp)).float()[None, None].to(device)
        self.region = image_to_tensor(background[self.y0 : self.y1, self.x0 : self.x1]).to(device)
        self.background = torch.from_numpy(background.copy()).to(device)

    def __call__(self, crop: torch.Tensor) -> torch.Tensor:
        """1 x 3 x size x size in [0, 1] -> full frame, H x W x 3 uint8, on the crop's device."""
        pasted = F.grid_sample(crop, self.grid, mode="bilinear", padding_mode="border", align_corners=False)
        region = self.region + self.mask * (pasted - self.region)
        frame = self.background.clone()
        frame[self.y0 : self.y1, self.x0 : self.x1] = uint8_frame(region)
        return frame


def uint8_frame(image: torch.Tensor) -> torch.Tensor:
    """1 x 3 x H x W in [0, 1] -> H x W x 3 uint8, on the same device."""
    return (image[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 1] -> H x W x 3 uint8 numpy."""
    return uint8_frame(image).cpu().numpy()
