"""MeshWarpRenderer: a portrait re-posed by warping it along its own landmarks.

No learned weights: the warp is built from the portrait's landmarks, so it works on any face on
a fresh machine. A frame is made in four steps:

1. A smooth warp (thin-plate splines, plus fixed anchors on the crop border and on the shoulders
   beside the neck: x through every landmark, y through all but the lips' and eyelids' contours)
   carries head pose, jaw, cheeks and brows, and brings every lip and lid point near its column.
   The spline's weights depend only on the portrait, so per frame it is one small matrix
   product on a coarse grid, inverted by fixed-point iteration (forward -> backward warp).
2. Lips and eyelids open and close by a per-column vertical remap between contour curves
   (above-lip ring, outer lip, inner lip, ...). Unlike a smooth spline this can tear (lips that
   touch in the portrait part) and fold (lips that are apart in the portrait close on /p b m/)
   exactly, at pixel resolution. A lowered upper lid is the skin above it stretched over the
   eye with its margin kept whole at the edge (eyelid_knots), so a full blink covers the eye.
3. One `grid_sample` of the portrait crop through the combined sampling grid.
4. A closing lid's stretched skin fades into the portrait's plain skin (lid_paint), and the
   mouth interior (walls, throat, tongue, teeth and gums, coloured from the portrait's lips and
   sclera: mouth.py) is painted between the inner lips.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from tmcli.core.config import WarpSettings
from tmcli.face import landmarks as L
from tmcli.motion.eyelids import eyelid_knots, lid_colour, lid_paint
from tmcli.motion.fields import (
    FrameSpline,
    curve_index,
    curves_at,
    edge_fade,
    forward_field,
    remap_rows,
    tps_kernel,
)
from tmcli.motion.mouth import (
    LIP_POINTS,
    LOWER_INNER,
    MOUTH_CURVES,
    MOUTH_ENDS,
    UPPER_INNER,
    lip_colour,
    mouth_grain,
    mouth_paint,
    own_teeth_colour,
    painted_teeth_colour,
)

# Eye contours handled by the column remap (step 2), top to bottom, each ordered left to right.
EYE_REGIONS = [
    ([L.RIGHT_EYE_ABOVE, L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER, L.RIGHT_EYE_BELOW], (33, 133)),
    ([L.LEFT_EYE_ABOVE, L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER, L.LEFT_EYE_BELOW], (362, 263)),
]
CORNERS = {61, 291, 78, 308, 33, 133, 362, 263}
REMAPPED = (
    set(
        L.LIPS_UPPER_OUTER
        + L.LIPS_UPPER_INNER
        + L.LIPS_LOWER_INNER
        + L.LIPS_LOWER_OUTER
        + L.RIGHT_EYE_UPPER
        + L.RIGHT_EYE_LOWER
        + L.LEFT_EYE_UPPER
        + L.LEFT_EYE_LOWER
    )
    - CORNERS
)

# fixed points on the shoulders, beside the neck: the body stays put while the head turns and the
# neck takes the shear (with the border anchors alone, collar and lapels drifted with the head: at
# 10 degrees of yaw a third of the crop's lower corner changed visibly; benchmarks/head_turns.py)
SHOULDER_DROP = (0.25, 0.6)  # rows, interocular units below the chin
SHOULDER_SPAN = (1.1, 2.4, 0.3)  # from, to, step: interocular units either side of the chin
SHOULDER_CLEARANCE = 0.3  # interocular units: no shoulder point nearer a landmark (a wide jaw, a tilted head)

INVERSE_STEP = 0.5  # damping of the smooth warp's inversion (_backward_field)


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int, device: torch.device) -> torch.Tensor:
    """(S, S, 2): each pixel's x, y; made once per size (a dub builds a renderer per frame)."""
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32, device=device),
        torch.arange(size, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1)


class MeshWarpRenderer:
    """Renders a crop (1 x 3 x S x S, [0, 1]) posed by deformed landmarks (478, 3) in crop pixels."""

    def __init__(
        self,
        crop: torch.Tensor,
        landmarks: np.ndarray,
        settings: WarpSettings = WarpSettings(),
        device: torch.device | str = "cpu",
        moving: np.ndarray | None = None,
        from_row: float = 0.0,
        teeth: torch.Tensor | None = None,
    ):
        """moving: the landmarks that may move (a video frame whose mouth alone is re-made); their
        spline is then solved for each frame through them and fixed points (FrameSpline), the eyes
        are left as they are, the field is 0 above `from_row` (pixels), and the renderer is meant for
        one frame (teeth: the colour its teeth are painted, 3 x 1 x 1, kept from frame to frame).
        None: any landmark may move,
        the spline is solved once for the portrait (a fixed matrix applied to each frame)."""
        self.device = torch.device(device)
        self.image = crop.to(self.device)
        self.size = size = crop.shape[-1]
        self.settings = settings
        self.source = np.asarray(landmarks, dtype=np.float64)[:, :2]
        self.unit = L.interocular(np.asarray(landmarks))
        self.control = np.array(sorted(set(range(len(self.source))) - REMAPPED))
        anchors = np.concatenate(
            [self._border_anchors(size, settings.border_anchors), self._shoulder_anchors()]
        )
        g = settings.field_resolution
        axis = np.linspace(0, size - 1, g) / size
        gx, gy = np.meshgrid(axis, axis)
        grid_pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
        # x through every landmark, y through the control points only (see _forward_field)
        every = np.arange(len(self.source))
        if moving is None:
            self.frame_spline = None
            self.field_matrix = self._tensor(
                np.stack(
                    [self._spline(every, anchors, grid_pts), self._spline(self.control, anchors, grid_pts)]
                )
            )
            self.top = 0  # every row is warped
        else:
            cell = size / (settings.field_resolution - 1)  # above from_row less a grid cell, nothing moves
            self.top = max(int(from_row - cell) - 1, 0)
            self.frame_spline = FrameSpline(
                self.source,
                moving,
                np.intersect1d(moving, self.control),
                anchors,
                grid_pts,
                size,
                settings,
                from_row,
            )
        self.coarse_pixels = self._tensor(grid_pts * size).reshape(g, g, 2)
        self.pixels = pixel_grid(size, self.device)  # (S, S, 2) x, y
        self.own_colour = own_teeth_colour(
            self.image, self.source, self.unit
        )  # None: it shows none, paint them
        self.own_teeth = self.own_colour is not None
        own_or_painted = self.own_colour if self.own_teeth else teeth
        self.teeth = (
            own_or_painted
            if own_or_painted is not None
            else painted_teeth_colour(self.image, self.source, self.unit)
        )
        self.lips = lip_colour(
            self.image, self._tensor(self.source), torch.as_tensor(LIP_POINTS, device=self.device)
        )
        eyes = [] if moving is not None else EYE_REGIONS
        self.lids = [
            lid_colour(
                self.image,
                self._tensor(self.source),
                torch.as_tensor(curves[0], device=self.device),
                torch.as_tensor(curves[-1], device=self.device),
                self.unit,
            )
            for curves, _ in eyes
        ]
        self.regions = [(curve_index(curves), ends) for curves, ends in [(MOUTH_CURVES, MOUTH_ENDS)] + eyes]

    def _tensor(self, array) -> torch.Tensor:
        """Host numbers (landmarks, knots) -> float32 on the renderer's device."""
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.device)

    def _spline(self, moving: np.ndarray, anchors: np.ndarray, grid_pts: np.ndarray) -> np.ndarray:
        """(G, 478): a thin-plate spline through landmarks `moving` and the fixed `anchors`,
        evaluated on the coarse grid, as a matrix from every landmark's displacement (columns
        of the others are 0)."""
        size = self.size
        pts = np.concatenate([self.source[moving], anchors]) / size
        n = len(pts)
        k = tps_kernel(pts, pts) + self.settings.stiffness * np.eye(n)
        p = np.concatenate([np.ones((n, 1)), pts], axis=1)
        lhs = np.zeros((n + 3, n + 3))
        lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
        basis = np.concatenate([tps_kernel(grid_pts, pts), np.ones((len(grid_pts), 1)), grid_pts], axis=1)
        weights = np.linalg.solve(lhs, np.eye(n + 3)[:, : len(moving)])  # displacement -> spline
        matrix = np.zeros((len(grid_pts), len(self.source)))
        matrix[:, moving] = basis @ weights
        return matrix

    def _arange(self, start: int, stop: int) -> torch.Tensor:
        return torch.arange(start, stop, dtype=torch.float32, device=self.device)

    @staticmethod
    def _border_anchors(size: int, per_side: int) -> np.ndarray:
        t = np.linspace(0, size - 1, per_side + 1)[:-1]
        e = size - 1
        return np.concatenate(
            [
                np.stack([t, 0 * t], 1),
                np.stack([e + 0 * t, t], 1),
                np.stack([e - t, e + 0 * t], 1),
                np.stack([0 * t, e - t], 1),
            ]
        )

    def _shoulder_anchors(self) -> np.ndarray:
        """Fixed points (N, 2) on the shoulders (SHOULDER_DROP, SHOULDER_SPAN) that fall inside the
        crop, clear of its border anchors and SHOULDER_CLEARANCE from every landmark (a fixed point
        next to a moving one would fold the spline)."""
        chin, u, edge = self.source[L.CHIN], self.unit, self.size / 64
        xs = np.arange(*SHOULDER_SPAN) * u
        pts = np.array(
            [
                (chin[0] + side * x, chin[1] + drop * u)
                for drop in SHOULDER_DROP
                for x in xs
                for side in (-1, 1)
            ]
        ).reshape(-1, 2)
        inside = ((pts >= edge) & (pts <= self.size - 1 - edge)).all(axis=1)
        nearest = np.sqrt(((pts[:, None, :] - self.source[None]) ** 2).sum(-1)).min(axis=1, initial=np.inf)
        return pts[inside & (nearest >= SHOULDER_CLEARANCE * u)]

    # -- step 1: smooth warp ------------------------------------------------------------------
    def _forward_field(self, deformed: np.ndarray) -> torch.Tensor:
        if self.frame_spline is not None:
            return self.frame_spline.field(self._tensor(deformed - self.source))
        return forward_field(
            self.field_matrix, self._tensor(deformed - self.source), self.settings.field_resolution
        )

    def _sample(self, field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup of a coarse (g, g, 2) field at pixel positions (..., 2)."""
        norm = points / (self.size - 1) * 2 - 1
        shape = norm.shape[:-1]
        out = F.grid_sample(
            field.permute(2, 0, 1)[None],
            norm.reshape(1, 1, -1, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        return out[0, :, 0].T.reshape(*shape, 2)

    def _backward_field(self, forward: torch.Tensor) -> torch.Tensor:
        """Invert x -> x + f(x) on the coarse grid: b(y) = -f(y + b(y)), by damped fixed-point steps.

        The plain iteration diverges where the field stretches by more than twice (|f'| > 1: the
        lower lip and chin as the jaw drops), and the lower lip then showed its own edge twice
        (per frame of speech the worst error was 22 px at the 95th percentile); steps of
        INVERSE_STEP converge there (12 steps: 0.9 px at the 95th percentile, 2.1 px at worst). A
        longer step converged faster but, where random motion folds the warp, amplified float
        rounding past the exported graph's tolerance (tm export's check)."""
        back = -forward
        for _ in range(self.settings.inverse_iterations):
            back = back + INVERSE_STEP * (-self._sample(forward, self.coarse_pixels + back) - back)
        return back

    def _dense(self, back_coarse: torch.Tensor, top: int) -> torch.Tensor:
        """The backward field at every pixel of the rows from `top` down (S - top, S, 2)."""
        if top:
            return self._sample(back_coarse, self.pixels[top:])
        return F.interpolate(
            back_coarse.permute(2, 0, 1)[None],
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=True,
        )[0].permute(1, 2, 0)

    # -- step 2: column remap -----------------------------------------------------------------
    def _remap(
        self,
        deformed: np.ndarray,
        settled: np.ndarray,
        index: torch.Tensor,
        ends: tuple[int, int],
        rigid: int | None = None,
        eye: bool = False,
    ):
        """The column remap (remap_rows) over the region's box.

        Segment `rigid` (the mouth opening) is shifted, not stretched: the upper half of the
        portrait's own mouth interior moves with the upper lip, the lower half with the lower lip,
        so its teeth keep their size; what opens between the halves is painted.
        Returns (x0, y0, source_y (R, C), knots_out (C, K), knots_in (C, K)) or None."""
        x0 = int(np.floor(min(deformed[ends[0], 0], settled[ends[0], 0])))
        x1 = int(np.ceil(max(deformed[ends[1], 0], settled[ends[1], 0])))
        x0, x1 = max(x0, 0), min(x1, self.size - 1)
        if x1 <= x0:
            return None
        columns = torch.arange(x0, x1 + 1, dtype=torch.float64)
        out_knots, in_knots = curves_at(columns, torch.from_numpy(np.stack([deformed, settled])), index)
        if eye:
            out_knots, in_knots = eyelid_knots(out_knots, in_knots, self.unit)
        y0 = max(int(np.floor(float(out_knots[:, 0].min()))), 0)
        y1 = min(int(np.ceil(float(out_knots[:, -1].max()))), self.size - 1)
        if y1 <= y0:
            return None
        ko, ki = self._tensor(out_knots), self._tensor(in_knots)
        fade = edge_fade(self._arange(x0, x1 + 1), *self._tensor([x0 - 1, x1 + 1]), self.unit)
        return x0, y0, remap_rows(self._arange(y0, y1 + 1), ko, ki, rigid, fade), ko, ki  # source_y: (R, C)

    # -- step 4: mouth interior ------------------------------------------------------------------
    def _paint_mouth(
        self,
        frame: torch.Tensor,
        x0: int,
        y0: int,
        knots: torch.Tensor,
        knots_in: torch.Tensor,
        deformed: np.ndarray,
    ) -> None:
        """Paint the mouth's interior (mouth_paint) where it opens beyond the portrait's."""
        top, bottom = knots[:, UPPER_INNER], knots[:, LOWER_INNER]
        if float((bottom - top).max()) < 0.05:
            return
        c = len(top)
        y1 = min(int(np.ceil(float(bottom.max()))) + 1, self.size)
        y0 = max(int(np.floor(float(top.min()))), 0, y0)
        if y1 <= y0:  # the mouth is outside the crop
            return
        alpha, paint = mouth_paint(
            self._arange(y0, y1)[:, None],
            self._arange(x0, x0 + c),
            knots,
            knots_in,
            self._tensor(deformed[[78, 308], 0]),
            self.unit,
            self.teeth,
            self.lips,
            self.own_teeth,
        )
        if float(alpha.max()) <= 0:
            return
        rows, cols = torch.arange(y0, y1, device=self.device), torch.arange(x0, x0 + c, device=self.device)
        paint = paint + mouth_grain(frame[0], rows, cols, self._tensor(deformed[17, 1]), self.unit)
        region = frame[0, :, y0:y1, x0 : x0 + c]
        frame[0, :, y0:y1, x0 : x0 + c] = region + alpha * (paint - region)

    # -- a frame ----------------------------------------------------------------------------------
    def __call__(self, deformed: np.ndarray) -> torch.Tensor:
        deformed = np.asarray(deformed, dtype=np.float64)[:, :2]
        forward = self._forward_field(deformed)
        back_coarse = self._backward_field(forward)
        # where the smooth warp alone puts every landmark (the remap's input side)
        settled = self.source + self._sample(forward, self._tensor(self.source)).double().cpu().numpy()
        settled[self.control] = deformed[self.control]
        settled[:, 0] = deformed[:, 0]  # the x spline runs through every landmark
        top = self.top
        positions = self.pixels[top:] + self._dense(back_coarse, top)
        mouth, lids = None, []
        for k, (index, ends) in enumerate(self.regions):
            is_mouth = k == 0
            remap = self._remap(
                deformed, settled, index, ends, rigid=UPPER_INNER if is_mouth else None, eye=not is_mouth
            )
            if remap is None:
                continue
            x0, y0, source_y, knots, knots_in = remap
            r, c = source_y.shape
            mid = torch.stack([self.pixels[y0 : y0 + r, x0 : x0 + c, 0], source_y], dim=-1)
            positions[y0 - top : y0 - top + r, x0 : x0 + c] = mid + self._sample(back_coarse, mid)
            if is_mouth:
                mouth = (x0, y0, knots, knots_in)
            else:
                lids.append((x0, y0, r, c, knots, knots_in, self.lids[k - 1]))
        grid = (positions + 0.5) / self.size * 2 - 1
        frame = F.grid_sample(
            self.image, grid[None], mode="bilinear", padding_mode="border", align_corners=False
        )
        if top:
            frame = torch.cat([self.image[:, :, :top], frame], dim=2)
        for x0, y0, r, c, knots, knots_in, colour in lids:
            alpha = lid_paint(self._arange(y0, y0 + r)[:, None], knots, knots_in)
            region = frame[0, :, y0 : y0 + r, x0 : x0 + c]
            frame[0, :, y0 : y0 + r, x0 : x0 + c] = region + alpha * (colour - region)
        if mouth is not None:
            self._paint_mouth(frame, *mouth, deformed)
        return frame
