"""Eyelids in the warp: a lowered upper lid is the skin above the eye stretched down over it with
its margin and lashes kept whole (eyelid_knots), and a closing lid's stretched skin fades into
the portrait's plain skin colour (lid_colour, lid_paint), so a full blink covers the eye."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LID_MARGIN = 0.05  # interocular units: the lid's margin and lashes just above its contour, kept whole
LID_SKIN = 0.08  # interocular units of skin above the crease ring that a lowered lid stretches down
LID_OPACITY = 0.8  # at most this much of a closed lid is lid_colour, the rest its own stretched skin
LID_RAMP = 0.25  # share of a closed lid's skin, from its top, over which lid_colour fades in
LID_SAMPLE = (
    0.06  # interocular units above the crease ring and below the lower ring where the lid's skin is sampled
)


def eyelid_knots(ko: torch.Tensor, ki: torch.Tensor, unit) -> tuple[torch.Tensor, torch.Tensor]:
    """An eye region's knots out and in (C, 4: crease ring, upper lid, lower lid, below) -> (C, 5)
    each: the top raised LID_SKIN above the crease ring, and the upper lid's margin (LID_MARGIN
    above it) as a knot of its own. A lowered lid is then the skin from above the crease down to
    the margin stretched over the eye, with the dark margin and lashes whole at its edge, not a
    thin band of skin and the margin smeared over the eye's height (which the face mesh reads as
    half open). Both come in as the lid comes down LID_MARGIN; a lid that stays keeps the plain
    crease -> lid map."""
    lowered = ((ko[:, 1:2] - ko[:, :1]) - (ki[:, 1:2] - ki[:, :1])) / (LID_MARGIN * unit)
    share = lowered.clamp(0, 1)

    def knots(k):
        top = k[:, :1] - share * LID_SKIN * unit
        margin = (k[:, 1:2] - share * LID_MARGIN * unit).maximum(top)
        return torch.cat([top, margin, k[:, 1:]], dim=1)

    return knots(ko), knots(ki)


def lid_colour(
    image: torch.Tensor, source: torch.Tensor, above: torch.Tensor, below: torch.Tensor, unit
) -> torch.Tensor:
    """The skin a closed lid shows (3, 1, 1): the portrait's mean colour LID_SAMPLE above the
    crease ring and below the lower ring (indices `above`, `below`) of an eye, away from the
    crease's shadow and the lid margin's highlight. image: 1 x 3 x S x S; source: (478, 2)."""
    size = image.shape[-1]
    zero = source[0, 0] * 0  # no tensor made from host numbers (GraphedWarp captures this)
    lift = torch.stack([zero, zero + unit * LID_SAMPLE])
    points = torch.cat([source[above] - lift, source[below] + lift])  # (N, 2) pixels
    grid = ((points + 0.5) / size * 2 - 1).to(image.dtype)
    picked = F.grid_sample(
        image, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return picked[0, :, 0].mean(dim=1).view(3, 1, 1)


def lid_paint(rows: torch.Tensor, knots: torch.Tensor, knots_in: torch.Tensor) -> torch.Tensor:
    """How much of lid_colour covers rows (R, 1) of an eye's columns: alpha (R, C), from its
    knots out / in (C, 5: eyelid_knots).

    A lowered lid is the skin above it stretched over the eye, and that thin band carries the
    crease's shadow or the lid's highlight in streaks, which the face mesh reads as an eye still
    open (blink depth median 0.61 over 29 portraits, benchmarks/blink_depth.py; a real blink
    reads 0.8-0.9). Between the crease ring and the lid's margin the stretched band fades, up to
    LID_OPACITY, into plain skin as the lid covers the eye (the share of the opening covered,
    squared: a half blink keeps its own lid; less towards the corners); the margin and lashes
    stay. Where the lid has not come down (eyeBlink = 0) alpha is 0: the frame is unchanged."""
    top, margin = knots[:, 0], knots[:, 1]
    opening = (knots[:, 3] - knots_in[:, 2]).clamp(min=1.0)  # down to where the lower lid is now
    covered = ((knots[:, 2] - knots_in[:, 2]) / opening).clamp(0, 1) ** 2  # (C,)
    gap = knots_in[:, 3] - knots_in[:, 2]
    taper = (gap / (0.6 * gap.max()).clamp(min=1.0)).clamp(0, 1)  # fades out towards the corners
    covered = LID_OPACITY * covered * taper * taper * (3 - 2 * taper)
    down = ((rows - top) / (LID_RAMP * (margin - top)).clamp(min=1.0)).clamp(0, 1)  # (R, C)
    return covered * down * down * (3 - 2 * down) * (margin - rows + 0.5).clamp(0, 1)
