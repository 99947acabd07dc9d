"""The warp's building blocks: the thin-plate spline kernel and its field on a coarse grid, contour
curves sampled at pixel columns, and the per-column vertical remap between two sets of curves."""

from __future__ import annotations

import numpy as np
import torch


def tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return 0.5 * d2 * np.log(np.maximum(d2, 1e-12))


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
