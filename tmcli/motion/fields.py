"""The warp's building blocks: the thin-plate spline kernel and its field on a coarse grid, contour
curves sampled at pixel columns, and the per-column vertical remap between two sets of curves."""

from __future__ import annotations

import numpy as np
import torch


def tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return 0.5 * d2 * np.log(np.maximum(d2, 1e-12))


HELD_EVERY = 5  # FrameSpline holds one in this many of the landmarks that do not move


class FrameSpline:
    """The smooth warp of one frame whose landmarks move only in part: thin-plate splines through
    the `moving` landmarks (x) and the `moving` control points (y), held by a fifth of the other
    landmarks and the fixed `anchors`, solved for that frame's displacements alone and evaluated
    on the grid rows from `from_row` (pixels) down (the field is 0 above). Without the portrait's
    (G, 478) matrix it costs a few milliseconds a frame where the portrait's splines cost ~250
    (dubbing a video solves one for each source frame)."""

    def __init__(self, source, x_points, y_points, anchors, grid_pts, size: int, settings, from_row=0.0):
        held = np.setdiff1d(np.arange(len(source)), x_points)[::HELD_EVERY]
        self.resolution, self.stiffness = settings.field_resolution, settings.stiffness
        self.points = np.concatenate([x_points, held])
        self.knots = torch.from_numpy(np.concatenate([source[self.points], anchors]) / size)
        # y's knots are x's without the moving points that are not control points
        y_rows = np.flatnonzero(np.isin(x_points, y_points))
        self.y_knots = torch.from_numpy(np.concatenate([y_rows, np.arange(len(x_points), len(self.knots))]))
        self.rows = torch.from_numpy(grid_pts[:, 1] * size >= from_row)
        self.grid = torch.from_numpy(grid_pts)[self.rows].float()

    @staticmethod
    def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """tps_kernel on tensors, by one matrix product."""
        d2 = torch.addmm((a * a).sum(1)[:, None] + (b * b).sum(1)[None], a, b.T, alpha=-2).clamp_(min=0)
        return d2.clamp(min=1e-12).log_().mul_(d2).mul_(0.5)

    def field(self, displacement: torch.Tensor) -> torch.Tensor:
        """(478, 2) landmark displacements (pixels) -> the field on the coarse grid (g, g, 2)."""
        out = torch.zeros(len(self.rows), 2)
        values = torch.zeros(len(self.knots), 2, dtype=self.knots.dtype)
        values[: len(self.points)] = displacement[self.points].double().cpu()
        kernel, grid_kernel = (
            self._kernel(self.knots, self.knots),
            self._kernel(self.grid, self.knots.float()),
        )
        weights = torch.zeros(len(self.knots) + 3, 2)
        for axis, used in enumerate((torch.arange(len(self.knots)), self.y_knots)):
            knots = self.knots[used]
            n = len(knots)
            lhs = torch.zeros(n + 3, n + 3, dtype=knots.dtype)
            lhs[:n, :n] = kernel[used][:, used] + self.stiffness * torch.eye(n, dtype=knots.dtype)
            lhs[:n, n], lhs[n, :n] = 1, 1
            lhs[:n, n + 1 :], lhs[n + 1 :, :n] = knots, knots.T
            w = torch.linalg.solve(lhs, torch.cat([values[used, axis], torch.zeros(3, dtype=knots.dtype)]))
            weights[used, axis], weights[-3:, axis] = w[:n].float(), w[n:].float()
        out[self.rows] = grid_kernel @ weights[:-3] + weights[-3] + self.grid @ weights[-2:]
        return out.reshape(self.resolution, self.resolution, 2).to(displacement.device)


def _count_at_most(sorted_values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """searchsorted(sorted_values, query, right=True) along the last axis, as a count (ONNX has
    no searchsorted; the knot lists are a few points long)."""
    return (sorted_values <= query).sum(dim=-1)


def forward_field(matrix: torch.Tensor, displacement: torch.Tensor, resolution: int) -> torch.Tensor:
    """The smooth warp's displacement on the coarse grid (g, g, 2), pixels, from every landmark's
    (478, 2) through the portrait's splines (2, g * g, 478: MeshWarpRenderer.field_matrix).

    x follows every landmark, y only the control points: the column remap moves lips and lids
    along columns only, so each should already be at its own column. With x through the control
    points alone, a rounding mouth's lip points missed their columns by 6-9 px (mean; 10-17 at
    worst) and an open-mouthed portrait's own gap stayed open beside its corners as dark strips;
    now 3-4 px (the coarse grid cannot follow the lips' steep sideways field exactly)."""
    x = matrix[0] @ displacement[:, 0]
    y = matrix[1] @ displacement[:, 1]
    return torch.stack([x, y], dim=-1).reshape(resolution, resolution, 2)


def curve_index(curves: list[list[int]]) -> torch.Tensor:
    """Landmark indices of curves (K, L): each padded to the longest by repeating its last point
    (a repeated point changes nothing in curves_at)."""
    longest = max(len(c) for c in curves)
    return torch.tensor([c + c[-1:] * (longest - len(c)) for c in curves])


def curves_at(columns: torch.Tensor, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """y of each curve at each column: points (B, N, 2), index (K, L: curve_index) -> (B, C, K),
    made non-decreasing from top to bottom.

    A curve is linear between its points taken in x order and flat beyond its ends (np.interp).
    All curves and landmark sets at once: one curve at a time was 3.4 ms of a 192 px frame's 11."""
    b, (k, n) = points.shape[0], index.shape
    picked = points[:, index.reshape(-1)].reshape(b, k, n, 2)
    order = torch.argsort(picked[..., 0], dim=-1)
    x, y = picked[..., 0].gather(-1, order), picked[..., 1].gather(-1, order)  # (B, K, L)
    j = _count_at_most(x[:, :, None, :], columns[None, None, :, None]).clamp(1, n - 1)  # (B, K, C)
    lo, hi = x.gather(-1, j - 1), x.gather(-1, j)
    t = ((columns - lo) / (hi - lo).clamp(min=1e-9)).clamp(0, 1)
    below, above = y.gather(-1, j - 1), y.gather(-1, j)
    at = below + t * (above - below)
    ys = [at[:, 0]]
    for curve in range(1, k):
        ys.append(torch.maximum(at[:, curve], ys[-1]))  # not above the curve before
    return torch.stack(ys, dim=-1)


def remap_rows(
    rows: torch.Tensor, ko: torch.Tensor, ki: torch.Tensor, rigid: int | None, fade: torch.Tensor
) -> torch.Tensor:
    """Per column, the piecewise-linear map from output rows to rows after the smooth warp:
    (R,) rows, (C, K) knots out and in -> source rows (R, C). Outside the outer knots, rows
    stay. Segment `rigid` (the mouth opening) is shifted, not stretched (see MeshWarpRenderer).
    fade (C,): how much of the map each column takes (edge_fade; the rest stays as rows)."""
    query = rows[None, :].expand(ko.shape[0], -1)  # (C, R)
    j = (_count_at_most(ko[:, None, :], query[:, :, None]) - 1).clamp(0, ko.shape[1] - 2)
    lo, hi = ko.gather(1, j), ko.gather(1, j + 1)
    t = ((query - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
    mapped = ki.gather(1, j) + t * (ki.gather(1, j + 1) - ki.gather(1, j))
    if rigid is not None:
        top_in, bottom_in = ki[:, rigid : rigid + 1], ki[:, rigid + 1 : rigid + 2]
        from_top, from_bottom = query - ko[:, rigid : rigid + 1], ko[:, rigid + 1 : rigid + 2] - query
        half = (bottom_in - top_in) / 2
        shifted = torch.where(
            from_top <= from_bottom, top_in + from_top.minimum(half), bottom_in - from_bottom.minimum(half)
        )
        mapped = torch.where(j == rigid, shifted, mapped)
    inside = (query >= ko[:, :1]) & (query <= ko[:, -1:])
    return torch.where(inside, query + fade[:, None] * (mapped - query), query).T


def edge_fade(columns: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, unit) -> torch.Tensor:
    """(C,) 1 inside a region's box, falling to 0 over EDGE_FADE at its ends: the remap meets the
    smooth warp there without a step (the rounded mouth's corners showed a vertical seam)."""
    width = EDGE_FADE * unit
    return ((columns - x0) / width).clamp(0, 1) * ((x1 - columns) / width).clamp(0, 1)


EDGE_FADE = 0.04  # interocular units over which a remapped region's ends blend into the smooth warp
