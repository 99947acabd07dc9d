"""The mouth's interior, painted between the inner lips where the mouth opens beyond the portrait's.

Part of the mesh-warp renderer (meshwarp.py: its step 4): the colours come from the portrait (its
lips, its sclera's light, its skin's grain), the shapes from the deformed mouth curves. The same
functions run in the eager renderer and in the exported fixed-shape graph, so they use only
operations ONNX has and make no tensor from host numbers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tmcli.face import landmarks as L

# the mouth's contours for the column remap, top to bottom, each ordered left to right
MOUTH_CURVES = [
    L.ABOVE_LIPS,
    L.LIPS_UPPER_OUTER,
    L.LIPS_UPPER_INNER,
    L.LIPS_LOWER_INNER,
    L.LIPS_LOWER_OUTER,
    L.BELOW_LIPS,
]
MOUTH_ENDS = (61, 291)
UPPER_INNER, LOWER_INNER = 2, 3  # indices of the inner lips in MOUTH_CURVES

DEFAULT_TEETH = (
    0.84,
    0.8,
    0.72,
)  # painted teeth under white light (lit as the sclera is: MeshWarpRenderer._painted_teeth_colour)
# fmt: off
UPPER_TEETH = (
    0.135, 0.24, 0.36, 0.47, 0.58,
)  # tooth boundaries along the arch from the midline, interocular units
# fmt: on
LOWER_TEETH = (0.085, 0.17, 0.27, 0.38, 0.49)
TEETH_ARCH = 0.42  # interocular units: radius of the dental arch seen from the front
TOOTH_LENGTH = 0.16  # interocular units: an upper incisor's crown; above it, gums
OWN_INTERIOR_FADE = (
    0.02  # interocular units of opening over which painting replaces a toothless portrait's own gap
)
GRAIN_TILE = (
    0.12  # interocular units of skin below the lower lip whose grain the interior takes (mouth_grain)
)
GRAIN_LIMIT = 0.05  # at most this much grain: the skin's texture, not its edges
# outer and inner contour points of both lips' middles (pairs: index i of the first half with i of the second)
LIP_POINTS = (
    L.LIPS_UPPER_OUTER[3:8] + L.LIPS_LOWER_OUTER[3:8] + L.LIPS_UPPER_INNER[3:8] + L.LIPS_LOWER_INNER[3:8]
)


def lip_colour(image: torch.Tensor, source: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The portrait's lip colour (3, 1, 1): its mean at `points` (LIP_POINTS, as pairs of outer and
    inner contour points whose midpoints lie on the lips' red). image: 1 x 3 x S x S; source: (478, 2)."""
    size = image.shape[-1]
    pairs = source[points].view(2, -1, 2)
    grid = (((pairs[0] + pairs[1]) / 2 + 0.5) / size * 2 - 1).to(image.dtype)
    picked = F.grid_sample(
        image, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return picked[0, :, 0].mean(dim=1).view(3, 1, 1)


def tooth_shading(
    cols: torch.Tensor, mid, unit, edges: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Separate teeth along a row (C,): (brightness factor, incisal edge lift in pixels).

    Columns are placed on the dental arch (a circle of radius TEETH_ARCH, seen from the front); each
    tooth is a little darker towards its sides with a thin soft gap at its boundaries (`edges`,
    interocular units along the arch from the midline), and its biting edge rounds up there: a
    hint of separate teeth that stays subtle at 256 px instead of a picket fence."""
    radius = TEETH_ARCH * unit
    angle = torch.asin(((cols - mid) / radius).clamp(-0.98, 0.98))
    along = angle.abs() * TEETH_ARCH  # interocular units from the midline, along the arch
    nearest = along  # the midline is a boundary too
    for e in edges:
        nearest = nearest.minimum((along - e).abs())
    pixels = nearest * unit * torch.cos(angle)  # what the boundary's distance looks like from the front
    gap = torch.exp(-((pixels / (0.3 + 0.004 * unit)) ** 2))
    rounded = (1 - (nearest / 0.04).clamp(0, 1)) ** 2
    return (1 - 0.15 * gap) * (1 - 0.1 * rounded), 0.01 * unit * rounded


def mouth_grain(
    picture: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, lip_bottom: torch.Tensor, unit
) -> torch.Tensor:
    """The portrait's own grain for the painted interior (1, R, C).

    Smooth paint inside a photo's noise and JPEG texture looks pasted on; this is the fine detail
    (luma less its 3 x 3 mean, within +-GRAIN_LIMIT) of the skin just below the lower lip, its
    rows folded onto the interior's (reflected every GRAIN_TILE interocular units, so no seam).
    The chin moves with the jaw, so the grain moves with the mouth. picture: (3, S, S) the frame;
    rows (R,), cols (C,): the interior's pixel indices; lip_bottom: the lower lip's lowest point's
    row (landmark 17, deformed)."""
    size = picture.shape[-1]
    start = lip_bottom + 0.05 * unit
    tile = 2 + GRAIN_TILE * unit
    folded = tile - (torch.remainder(rows.float() - start, 2 * tile) - tile).abs()
    position = start + folded
    base = torch.floor(position)
    weight = (position - base)[:, None]  # rows are read between pixels: a float32 graph rounding a
    base = base.long()  # row the other way then changes the grain by a hair, not a row

    # four picture rows around each source row, one column either side of the region, read once;
    # neighbours come from the picture, not the region: the same however far the region reaches
    across = torch.cat([cols[:1] - 1, cols, cols[-1:] + 1]).clamp(0, size - 1)[None, :]
    near = [picture[:, (base + k).clamp(0, size - 1)[:, None], across].mean(dim=0) for k in (-1, 0, 1, 2)]
    luma = [(1 - weight) * near[k] + weight * near[k + 1] for k in range(3)]  # rows -1, 0, 1: (R, C + 2)
    rows_sum = luma[0] + luma[1] + luma[2]
    mean = (rows_sum[:, :-2] + rows_sum[:, 1:-1] + rows_sum[:, 2:]) / 9
    return (luma[1][:, 1:-1] - mean).clamp(-GRAIN_LIMIT, GRAIN_LIMIT)[None]


def mouth_paint(
    rows: torch.Tensor,
    cols: torch.Tensor,
    knots: torch.Tensor,
    knots_in: torch.Tensor,
    corners: torch.Tensor,
    unit,
    teeth: torch.Tensor,
    lips: torch.Tensor,
    own_teeth,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mouth interior over rows (R, 1) x columns (C,): (alpha (R, C), paint (3, R, C)).

    Where the portrait shows its own teeth, covers only what opens between the two halves of its
    interior (fading in over half of OWN_INTERIOR_FADE of opening, so the band tapers off at the
    corners instead of ending in a vertical edge); otherwise covers all of the opening once the
    mouth opens OWN_INTERIOR_FADE beyond the portrait's anywhere between its corners (a portrait's
    own dark, toothless gap kept above and below painted teeth read as a black sandwich: near-black
    0.5 on such a case; judged per column, a rounding mouth kept it at its corners as black strips). A flat
    dark cavity reads as a hole (near-black share inside parted lips 0.21 against VASA-1's 0.004,
    issue 29), so it is built as a mouth, back to front: the cavity's walls in the lips' colour
    darkened, a dark throat only at the centre of a wide opening; a tongue low in the opening
    once it opens past 0.08 interocular units (a narrow gap between the teeth shows dark: a
    tongue-pink band there reads as lip to the face mesh, which then reads the mouth as
    closing), shaded darker where it recedes and along its midline;
    upper teeth hanging a fixed depth below the above-lip ring with gums above their crowns
    where the upper lip lifts past them, lower teeth showing above the lower lip as the jaw
    drops, both with separate teeth (tooth_shading) and darker towards the corners; then a soft
    shadow under the upper lip. Edges are soft over about a pixel at 256-512 px so the interior
    is no sharper than the warped portrait around it.
    knots / knots_in: (C, K) mouth curves out / in; corners: the deformed inner-lip corners' x
    (78, 308); teeth: their colour (3, 1, 1); lips: lip_colour; own_teeth: the portrait shows its
    own (they then move with the lips, see remap_rows, and what opens between them is painted
    without teeth)."""
    # 1. where: the painted opening and the arch across it
    top, bottom = knots[:, UPPER_INNER], knots[:, LOWER_INNER]
    own = knots_in[:, LOWER_INNER] - knots_in[:, UPPER_INNER]
    keeps_own = torch.as_tensor(own_teeth, device=rows.device)
    half = torch.where(keeps_own, own / 2, own * 0)
    fade = (own * 0 + OWN_INTERIOR_FADE * unit) * torch.where(keeps_own, 0.5, 1.0)  # pixels of opening
    mid, half_width = (corners[0] + corners[1]) / 2, ((corners[1] - corners[0]) / 2).clamp(min=1.0)
    beyond = bottom - top - own  # (C,) how much wider than the portrait's each column opens
    widest = torch.where((cols - mid).abs() < half_width, beyond, beyond * 0 - 1e6).max()
    beyond = torch.where(keeps_own, beyond, widest.expand_as(beyond))
    alpha = (
        (rows - top - half + 0.5).clamp(0, 1)
        * (bottom - half - rows + 0.5).clamp(0, 1)
        * (beyond / fade.clamp(min=1)).clamp(0, 1)
    )  # (R, C)
    top, bottom = top + half, bottom - half  # the painted part
    height = (bottom - top).clamp(min=1.0)
    across = ((cols - mid) / half_width).clamp(-1, 1)  # (C,) -1 .. 1 corner to corner
    arch = (1 - across**2).clamp(min=0).sqrt()  # 1 mid-mouth, 0 at corners
    soft = 0.5 + 0.006 * unit  # pixels over which an edge inside the mouth goes from one layer to the next

    def ramp(distance):
        return (distance / soft + 0.5).clamp(0, 1)

    # 2. colours from the portrait: walls, throat, tongue and gums from its lips (kept off black)
    wall = lips * (0.19 / lips.amax(dim=0, keepdim=True)).clamp(min=0.4)
    colourful = ((1 - lips.amin(dim=0) / lips.amax(dim=0).clamp(min=1e-3)) / 0.3).clamp(
        0, 1
    )  # 0: a grey photo
    wall = torch.cat([wall[:1], wall[1:] * (1 - 0.2 * colourful)])  # redder than the lips, if in colour
    tongue_colour = torch.cat([wall[:1] * 1.9, wall[1:] * (1.9 - 0.2 * colourful)])
    gum_colour = lips * 0.9

    # 3. walls, darker towards the corners and in a narrow gap; a throat only in a wide opening's centre
    middle = (top + bottom) / 2
    wide = (height / (0.3 * unit)).clamp(0, 1)
    throat = wide * torch.exp(
        -((across / 0.4) ** 2) - ((rows - middle + 0.1 * height) / (0.22 * height)) ** 2
    )
    narrow = (1 - 0.4 * (1 - wide)).maximum(0.16 / wall.amax(dim=0))  # little light gets into a narrow gap
    paint = wall * narrow * (0.8 + 0.2 * arch) * (1 - 0.45 * throat)

    # 4. the tongue: behind the teeth in a narrow opening (which shows a dark gap), then a dome
    #    rising from the bottom, darker where it recedes, a groove along its midline
    tongue_top = bottom - 0.35 * (height - 0.08 * unit).clamp(min=0) * (1 - 0.5 * across**2)
    below = rows - tongue_top
    tongue = (
        tongue_colour
        * (0.75 + 0.25 * arch)
        * (0.8 + 0.2 * (below / (0.04 * unit)).clamp(0, 1))
        * (1 - 0.1 * torch.exp(-((across / 0.08) ** 2)))
    )
    paint = paint + ramp(below) * (tongue - paint)

    # 5. upper teeth (gums above their crowns) and lower teeth, separate, darker towards the corners
    painted_teeth = ~torch.as_tensor(own_teeth, device=rows.device)
    rest_depth = knots_in[:, UPPER_INNER] - knots_in[:, 0]
    upper_shade, upper_lift = tooth_shading(cols, mid, unit, UPPER_TEETH)
    upper_edge = knots[:, 0] + rest_depth + 0.10 * unit * arch - upper_lift
    gum_line = upper_edge - TOOTH_LENGTH * unit * (0.6 + 0.4 * arch)
    corner_shade = 0.55 + 0.45 * arch.sqrt()
    upper = ramp(upper_edge - rows) * ((arch - 0.15) / 0.05).clamp(0, 1) * painted_teeth
    upper_colour = (
        teeth * corner_shade * upper_shade * (0.9 + 0.1 * ((rows - gum_line) / (0.05 * unit)).clamp(0, 1))
    )
    upper_colour = upper_colour * (
        0.88 + 0.12 * ((upper_edge - rows) / (0.03 * unit)).clamp(0, 1)
    )  # a translucent biting edge
    upper_colour = upper_colour + ramp(gum_line - rows) * (gum_colour * corner_shade - upper_colour)
    paint = paint + upper * (upper_colour - paint)
    lower_shade, lower_lift = tooth_shading(cols, mid, unit, LOWER_TEETH)
    lower_shade = 0.5 + 0.5 * lower_shade  # smaller teeth, less relief: a comb otherwise
    lower_edge = bottom - (0.12 * height).clamp(max=0.035 * unit) * arch + lower_lift
    jaw_down = ((height - 0.1 * unit) / (0.1 * unit)).clamp(0, 1)
    lower = (
        ramp(rows - lower_edge) * ((arch - 0.75) / 0.15).clamp(0, 1) * jaw_down * painted_teeth
    )  # the lip hides the rest
    paint = paint + lower * (0.8 * teeth * corner_shade * lower_shade - paint)

    # 6. the upper lip shades what is just below it
    shadow = 1 - 0.3 * (1 - ((rows - top) / (0.05 * unit)).clamp(0, 1)) ** 2
    return alpha, paint * shadow


def own_teeth_colour(image: torch.Tensor, source: np.ndarray, unit: float) -> torch.Tensor | None:
    """The colour (3, 1, 1) of the teeth a crop (1 x 3 x S x S) shows between its lips (landmarks
    `source`, (478, 2) crop pixels), or None if it shows none."""
    top, bottom = source[13, 1], source[14, 1]
    if bottom - top < 0.04 * unit:
        return None
    x0, x1 = source[78, 0], source[308, 0]
    mid = (x0 + x1) / 2
    half = max((x1 - x0) / 4, 1)
    patch = image[0, :, int(top) + 1 : int(bottom) + 1, int(mid - half) : int(mid + half) + 1]
    pixels = patch.reshape(3, -1)
    if pixels.shape[1] < 4:
        return None
    luma = pixels.mean(dim=0)
    bright = pixels[:, luma >= torch.quantile(luma, 0.7)]
    colour = bright.median(dim=1).values
    saturation = 1 - colour.min() / colour.max().clamp(min=1e-3)
    if colour.mean() < 0.45 or saturation > 0.3:  # what shows is not teeth (dark, or the lips' red)
        return None
    return colour.view(3, 1, 1)


def painted_teeth_colour(image: torch.Tensor, source: np.ndarray, unit: float) -> torch.Tensor:
    """Teeth for a portrait that shows none (3, 1, 1): DEFAULT_TEETH lit as its sclera is.

    The whites of the eyes are the one part of a face as white as teeth, so their brightness
    and tint carry the portrait's lighting and white balance; sampled halfway between each
    eye's corners and its iris (0.4 of the way, clear of the iris; the brightest pixel within
    0.03 interocular units, as a lid's shade and the skin around blur into a small sclera),
    the median of the four. A sclera too dark or coloured to be white (shade, closed eyes,
    make-up) lights the teeth less, within 0.9-1.05, and tints them at most 5%."""
    centres = {33: 468, 133: 468, 362: 473, 263: 473}
    points = np.array([0.6 * source[c] + 0.4 * source[i] for c, i in centres.items()])
    r = max(int(0.03 * unit), 1)
    patches = [
        image[0, :, max(int(y) - r, 0) : int(y) + r + 1, max(int(x) - r, 0) : int(x) + r + 1].reshape(3, -1)
        for x, y in points
    ]
    sclera = torch.stack([patch[:, patch.mean(dim=0).argmax()] for patch in patches]).median(dim=0).values
    light = float(sclera.max())
    tint = (sclera / max(light, 1e-3)).clamp(0.95, 1.0)  # the lighting's colour, not a coloured eye's
    strength = min(max(light / 0.75, 0.9), 1.05)
    colour = torch.as_tensor(DEFAULT_TEETH, dtype=image.dtype, device=image.device) * tint * strength
    pixels = image[0].reshape(3, -1)
    if float((pixels.amax(dim=0) - pixels.amin(dim=0)).mean()) < 0.02:  # a grey photo: grey teeth
        colour = colour.mean().expand(3)
    return colour.clamp(max=0.97).view(3, 1, 1)
