"""The mouth's interior from the video itself, for dubbing.

A video that talks shows its own teeth, tongue and throat in the frames where its mouth is open.
`InteriorBank` keeps one such interior for each opening (BINS), sampled between the inner lips on a
grid that runs from one mouth corner to the other and from the upper lip to the lower: the first
frame seen at each opening. Where a dubbed frame opens wider than its own source frame, the
interior of the nearest opening is laid between its inner lips on the same grid, its colour
matched through the lips' (lighting drifts), instead of the painted interior of the portrait path.
Until the video has shown an open mouth, and where the dub opens far wider than any it has shown,
the painted one stays: a narrow opening stretched to a wide one is a grille of vertical streaks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tmcli.face import landmarks as L
from tmcli.face.fitting import lip_gap
from tmcli.motion.fields import curve_index, curves_at
from tmcli.motion.mouth import LIP_POINTS, lip_colour

BINS = np.linspace(0.10, 0.40, 7)  # inner-lip gaps (interocular units) the bank keeps an interior for
GRID = (24, 64)  # the interior's samples: upper lip to lower lip, corner to corner
WIDER = 0.03  # interocular units a dub must open beyond its source frame before the bank fills it
FADE = 0.03  # interocular units of extra opening over which the bank's interior fades in
EDGE = 0.15  # share of the gap at each lip over which the bank's interior blends into the warp's
INNER = curve_index([L.LIPS_UPPER_INNER, L.LIPS_LOWER_INNER])
CORNERS = (78, 308)
STRETCH = (1.4, 1.8)  # an interior stretched this much taller than it was fades out to the painted one


def inner_lips(landmarks: np.ndarray, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper and lower inner lip's row at each column (C,)."""
    at = curves_at(columns.double(), torch.from_numpy(landmarks[None, :, :2]), INNER)[0]
    return at[:, 0].float(), at[:, 1].float()


class InteriorBank:
    def __init__(self):
        self.entries: dict[int, tuple[float, torch.Tensor, torch.Tensor]] = {}  # bin -> gap, interior, lips

    def add(self, crop: torch.Tensor, landmarks: np.ndarray) -> None:
        """Keep the interior of a source frame (its crop 1 x 3 x S x S, landmarks in its pixels) if
        its opening's bin has none yet."""
        gap = lip_gap(landmarks)
        if gap < BINS[0] - (BINS[1] - BINS[0]) / 2:
            return
        k = int(np.argmin(np.abs(BINS - gap)))
        if k in self.entries:
            return
        left, right = landmarks[list(CORNERS), 0]
        columns = torch.linspace(float(left), float(right), GRID[1])
        top, bottom = inner_lips(landmarks, columns)
        v = torch.linspace(0, 1, GRID[0])[:, None]
        rows = top + v * (bottom - top)
        size = crop.shape[-1]
        grid = torch.stack([columns.expand_as(rows), rows], dim=-1) / (size - 1) * 2 - 1
        image = crop.float().cpu()
        interior = F.grid_sample(image, grid[None], mode="bilinear", align_corners=True)[0]
        lips = lip_colour(
            image, torch.as_tensor(landmarks[:, :2], dtype=torch.float32), torch.tensor(LIP_POINTS)
        )
        self.entries[k] = (gap, interior, lips)

    def fill(self, frame: torch.Tensor, deformed: np.ndarray, own_gap: float, lips: torch.Tensor) -> None:
        """Lay the bank's interior between the inner lips of a warped crop (1 x 3 x S x S, in
        place) where its mouth (`deformed`, crop pixels) opens wider than its source's (own_gap,
        fitting.lip_gap), from the nearest opening the bank holds unless that is far narrower."""
        gap = lip_gap(deformed)
        weight = min(max((gap - own_gap - WIDER) / FADE, 0.0), 1.0)
        entries = list(self.entries.values())
        if weight == 0.0 or not entries:
            return
        their_gap, interior, their_lips = min(entries, key=lambda e: abs(e[0] - gap))
        weight *= min(max((STRETCH[1] - gap / their_gap) / (STRETCH[1] - STRETCH[0]), 0.0), 1.0)
        if weight == 0.0:
            return
        size = frame.shape[-1]
        left, right = deformed[list(CORNERS), 0]
        x0, x1 = max(int(np.floor(left)), 0), min(int(np.ceil(right)), size - 1)
        if x1 <= x0:
            return
        columns = torch.arange(x0, x1 + 1, dtype=torch.float32)
        top, bottom = inner_lips(deformed, columns)
        y0, y1 = max(int(top.min()), 0), min(int(np.ceil(float(bottom.max()))) + 1, size)
        if y1 <= y0:
            return
        rows = torch.arange(y0, y1, dtype=torch.float32)[:, None]
        height = (bottom - top).clamp(min=1e-3)
        v = (rows - top) / height
        u = ((columns - float(left)) / max(float(right - left), 1e-3)).expand_as(v)
        grid = torch.stack([u * 2 - 1, v * 2 - 1], dim=-1)[None]
        colour = (lips.cpu() / their_lips.clamp(min=1e-3)).clamp(0.8, 1.25)
        sampled = F.grid_sample(interior[None] * colour, grid, mode="bilinear", align_corners=True)[0]
        inside = ((v / EDGE).clamp(0, 1) * ((1 - v) / EDGE).clamp(0, 1)) * (height >= 1.0)
        alpha = (weight * inside).to(frame.device)
        region = frame[0, :, y0:y1, x0 : x1 + 1]
        frame[0, :, y0:y1, x0 : x1 + 1] = region + alpha * (sampled.to(frame.device) - region)
