"""The warp in fixed shapes: `FixedShapeWarp`, the renderer with fixed windows where it slices
boxes that follow the landmarks (the graph `tm export` writes), and `GraphedWarp`, the renderer
captured once as a CUDA graph and replayed per frame."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tmcli.core.runtime import capture_cuda_graph
from tmcli.motion.eyelids import eyelid_knots, lid_colour, lid_paint
from tmcli.motion.fields import curve_index, curves_at, edge_fade, forward_field, remap_rows
from tmcli.motion.mouth import (
    LIP_POINTS,
    LOWER_INNER,
    MOUTH_CURVES,
    MOUTH_ENDS,
    UPPER_INNER,
    lip_colour,
    mouth_grain,
    mouth_paint,
)
from tmcli.motion.warp import EYE_REGIONS, MeshWarpRenderer


class FixedShapeWarp(torch.nn.Module):
    """MeshWarpRenderer's frame with every shape fixed and the portrait's tensors as inputs: the
    form export needs. Deformed landmarks (478, 3) in crop pixels (x and y used) and a portrait
    (`portrait_inputs`) -> the crop (1, 3, S, S) in [0, 1].

    The renderer remaps lips and eyelids inside boxes that follow each frame's landmarks; here
    each region is a window of fixed size (`WINDOWS` interocular distances, at most the crop;
    the crop's alignment makes the interocular distance S / 4) placed at the box's corner, and
    masks stand where the renderer slices and returns early. A box larger than its window would
    be cut: the renderer's mouth box reaches 2 interocular distances at twice the motion's
    spread on the sample portraits, and the export's check compares the two."""

    WINDOWS = {"mouth": 2.5, "eye": 1.0}  # window side, in interocular distances
    INPUTS = ("landmarks", "image", "source", "field_matrix", "unit", "teeth", "own_teeth")
    OUTPUTS = ("frame",)

    def __init__(self, renderer: MeshWarpRenderer):
        super().__init__()
        self.renderer, s = renderer, renderer.size  # its portrait-free parts: grids, settings, control set
        self.size = s

        # the contours as index tensors on the renderer's device: indexing with a Python list
        # copies it from the host on every call, which a CUDA graph cannot capture
        def indices(curves):
            return curve_index(curves).to(renderer.device)

        def ring(curve):
            return torch.as_tensor(curve, device=renderer.device)

        self.regions = [(indices(MOUTH_CURVES), MOUTH_ENDS, self._window("mouth"), UPPER_INNER, None)] + [
            (indices(curves), ends, self._window("eye"), None, (ring(curves[0]), ring(curves[-1])))
            for curves, ends in EYE_REGIONS
        ]  # an eye's last item: the rings lid_colour samples
        is_control = torch.zeros(len(renderer.source), dtype=torch.bool)
        is_control[torch.as_tensor(renderer.control)] = True
        self.register_buffer("is_control", is_control, persistent=False)
        self.register_buffer("lip_points", torch.as_tensor(LIP_POINTS), persistent=False)

    def _window(self, kind: str) -> int:
        return min(self.size, int(np.ceil(self.WINDOWS[kind] * self.size / 4)))

    @staticmethod
    def portrait_inputs(renderer: MeshWarpRenderer) -> tuple[torch.Tensor, ...]:
        """A portrait's tensors, in INPUTS order after the landmarks (float32 on the CPU)."""
        return (
            renderer.image.float().cpu(),
            renderer._tensor(renderer.source).cpu(),
            renderer.field_matrix.float().cpu(),
            torch.tensor(float(renderer.unit)),
            renderer.teeth.float().cpu(),
            torch.tensor([renderer.own_teeth]),
        )

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The renderer's portrait at rest: its own landmarks (478, 3), as the face_rig graph gives them."""
        portrait = self.portrait_inputs(self.renderer)
        return (torch.cat([portrait[1], torch.zeros(len(portrait[1]), 1)], dim=1), *portrait)

    def _box(self, lo: torch.Tensor, hi: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer indices of a window of `window` pixels covering [lo, hi] from lo (moved in to
        stay inside the crop), and which of them are in [lo, hi]."""
        start = lo.clamp(0, self.size - window).long()
        index = start + torch.arange(window, device=lo.device)
        return index, (index >= lo) & (index <= hi)

    def forward(self, landmarks, image, source, field_matrix, unit, teeth, own_teeth):
        r, s = self.renderer, self.size
        deformed = landmarks[:, :2].float()
        forward = forward_field(field_matrix, deformed - source, r.settings.field_resolution)
        back_coarse = r._backward_field(forward)
        settled = torch.where(self.is_control[:, None], deformed, source + r._sample(forward, source))
        settled = torch.stack(
            [deformed[:, 0], settled[:, 1]], dim=1
        )  # the x spline runs through every landmark
        back = F.interpolate(
            back_coarse.permute(2, 0, 1)[None], size=(s, s), mode="bilinear", align_corners=True
        )[0].permute(1, 2, 0)
        positions = r.pixels + back
        mouth, lids = None, []
        for curves, ends, window, rigid, rings in self.regions:
            x0 = torch.floor(torch.minimum(deformed[ends[0], 0], settled[ends[0], 0])).clamp(min=0)
            x1 = torch.ceil(torch.maximum(deformed[ends[1], 0], settled[ends[1], 0])).clamp(max=s - 1)
            cols, col_ok = self._box(x0, x1, window)
            col_ok = col_ok & (x1 > x0)
            columns = cols.float()
            ko, ki = curves_at(columns, torch.stack([deformed, settled]), curves)
            if rings is not None:
                ko, ki = eyelid_knots(ko, ki, unit)
            inf = torch.full_like(columns, float("inf"))
            y0 = torch.floor(torch.where(col_ok, ko[:, 0], inf).min()).clamp(min=0)
            y1 = torch.ceil(torch.where(col_ok, ko[:, -1], -inf).max()).clamp(max=s - 1)
            rows, row_ok = self._box(y0, y1, window)
            source_y = remap_rows(
                rows.float(), ko, ki, rigid, edge_fade(columns, x0 - 1, x1 + 1, unit)
            )  # (R, C)
            mid = torch.stack([columns[None].expand_as(source_y), source_y], dim=-1)
            ok = (row_ok[:, None] & col_ok[None, :] & (y1 > y0))[..., None]
            here = (rows[:, None], cols[None, :])
            positions = positions.index_put(
                here, torch.where(ok, mid + r._sample(back_coarse, mid), positions[here])
            )
            if rigid is not None:
                mouth = (rows, cols, col_ok, y0, y1, ko, ki)
            else:
                lids.append((rows, cols, ok[..., 0], ko, ki, lid_colour(image, source, *rings, unit)))
        grid = (positions + 0.5) / s * 2 - 1
        frame = F.grid_sample(image, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
        for rows, cols, ok, ko, ki, colour in lids:
            here = (rows[:, None], cols[None, :])
            region = frame[0].permute(1, 2, 0)[here].permute(2, 0, 1)  # (3, R, C)
            alpha = lid_paint(rows.float()[:, None], ko, ki) * ok
            painted = region + alpha * (colour - region)
            frame = frame[0].permute(1, 2, 0).index_put(here, painted.permute(1, 2, 0)).permute(2, 0, 1)[None]
        rows, cols, col_ok, y0, y1, ko, ki = mouth
        top, bottom = ko[:, UPPER_INNER], ko[:, LOWER_INNER]
        inf = torch.full_like(top, float("inf"))
        opens = (torch.where(col_ok, bottom - top, -inf).max() >= 0.05) & (y1 > y0)
        paint_top = torch.maximum(torch.floor(torch.where(col_ok, top, inf).min()), y0)
        paint_end = torch.ceil(torch.where(col_ok, bottom, -inf).max()) + 1
        corners = torch.stack([deformed[78, 0], deformed[308, 0]])
        lips = lip_colour(image, source, self.lip_points)
        alpha, paint = mouth_paint(
            rows.float()[:, None], cols.float(), ko, ki, corners, unit, teeth, lips, own_teeth
        )
        paint = paint + mouth_grain(frame[0], rows, cols, deformed[17, 1], unit)
        ok = (rows[:, None] >= paint_top) & (rows[:, None] < paint_end) & col_ok[None, :] & opens
        picture = frame[0].permute(1, 2, 0)  # (S, S, 3)
        here = (rows[:, None], cols[None, :])
        region = picture[here].permute(2, 0, 1)  # (3, R, C)
        painted = region + (alpha * ok) * (paint - region)
        return picture.index_put(here, painted.permute(1, 2, 0)).permute(2, 0, 1)[None]


class GraphedWarp:
    """FixedShapeWarp captured once as a CUDA graph and replayed for every frame.

    On a GPU the eager renderer's frame is a few hundred tiny kernels and several host syncs
    (its boxes follow each frame's landmarks), which cost far more than the arithmetic; the
    fixed-shape form has no sync and replays as one launch. Called like MeshWarpRenderer:
    deformed landmarks (478, 3) -> the crop (1, 3, S, S); the tensor returned is overwritten by
    the next call, so use it (on the same stream) first, as the pipeline does."""

    def __init__(self, renderer: MeshWarpRenderer):
        device = renderer.device
        self.renderer = renderer
        self.warp = FixedShapeWarp(renderer).to(device)
        self.portrait = tuple(t.to(device) for t in FixedShapeWarp.portrait_inputs(renderer))
        rest = self.warp.example_inputs()[0]
        self.landmarks = rest.to(device)
        self.staging = torch.empty_like(rest).pin_memory()
        self.copied = torch.cuda.Event()
        self.copied.record()
        with torch.no_grad():
            self.graph, self.frame = capture_cuda_graph(
                lambda: self.warp(self.landmarks, *self.portrait), device
            )

    @property
    def size(self) -> int:
        return self.renderer.size

    def __call__(self, deformed: np.ndarray) -> torch.Tensor:
        self.copied.synchronize()  # the last frame's landmarks have left the staging buffer
        self.staging.copy_(torch.from_numpy(np.asarray(deformed, dtype=np.float32)))
        self.landmarks.copy_(self.staging, non_blocking=True)
        self.copied.record()
        self.graph.replay()
        return self.frame
