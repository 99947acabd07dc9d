"""A video frame with its mouth re-made: the frame's own motion, with speech's articulation.

Each source frame is aligned and cropped as a portrait is (align.py), its motion fitted through
the rig of the video's first face (fitting.py), and its articulation channels (jaw and mouth)
replaced by the generator's. The landmarks move by the difference the rig makes between the two
motions, so head pose, eyes and brows stay where the frame has them. The crop is warped with a
spline solved for that frame alone (FrameSpline), and pasted back only where the warp changed
it and only below the nose: everything above is the source frame's own bytes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from tmcli.core.config import WarpSettings
from tmcli.face import landmarks as L
from tmcli.face.align import Alignment, align_face, image_to_tensor, uint8_frame
from tmcli.face.fitting import fit_motion, lip_gap
from tmcli.face.rig import ARTICULATION, BLENDSHAPES, INDEX, FaceRig, close_lips_shift
from tmcli.motion.interior import InteriorBank, inner_lips
from tmcli.motion.mouth import painted_teeth_colour
from tmcli.motion.warp import REMAPPED, MeshWarpRenderer

SIZES = (192, 512)  # the crop's side: the face's own resolution within these
SPAN = 3.0  # interocular units: the crop's side, from the eye line down past the chin
TEETH_FOLLOW = 0.1  # how far each frame showing its own teeth moves the painted teeth's colour
ARTICULATED = np.array([INDEX[name] for name in ARTICULATION])
# the generator's jawOpen is scaled by this in a dub: its rest is shut (lips_closed) where a
# portrait's may be parted, and at 1.0 the dubs opened 0.75x as wide as the same people speaking in
# the sources (90th percentile of the inner-lip gap, benchmarks/dub_eval.py); at 1.45, 0.9-1.15x
OPENING = 1.45
BELOW_NOSE = 0.08  # interocular units below the nose tip where the paste begins (fully at 2x)
CHANGE_SPREAD = 0.12  # interocular units the changed area is widened and feathered by
FIELD_RESOLUTION = 32  # the smooth warp's grid: the jaw's field is smooth, and each frame solves its own
BORDER_ANCHORS = 8  # fixed points a side of the crop: its edges are far from the mouth
FIELD_ABOVE_NOSE = 0.3  # interocular units above the nose tip from which the warp's field is worked out
LIP_EDGE = 0.025  # interocular units of each parted lip's inner edge read as mouth (lip_edges_inside)
LIP_COLUMNS = (L.LIPS_UPPER_INNER, L.LIPS_UPPER_OUTER, L.LIPS_LOWER_INNER, L.LIPS_LOWER_OUTER)
EDGE_FADE = 0.04  # share of the crop's side over which the paste fades out at its edges (no seam)
NOTICED = 1.0 / 255  # a change smaller than this (in [0, 1]) is no change
UPPER_MIDDLE = np.array(L.LIPS_UPPER_INNER[1:-1])  # the inner lips without their corners
LOWER_MIDDLE = np.array(L.LIPS_LOWER_INNER[1:-1])
LOWER_LIP_MIDDLE = 14  # the lower inner lip's middle point
JAW_BEYOND = 0.1  # interocular units of the lips' gap the rig does not explain before the jaw takes it
CONTACT_WIDTH = 0.012  # interocular units: the half-width of the dark line where closed lips meet
CONTACT_DARK = 0.45  # how much darker that line is than the lips at its middle
CONTACT_SHUT = 0.02  # interocular units: lips nearer than this are shut (the line drawn in full)


class MouthDub:
    """`dub(dub.prepare(frame, landmarks), motion)`: a frame H x W x 3 uint8 (host) and its
    (478, 3) landmarks in image pixels, with one frame of motion -> the frame with the motion's
    mouth, H x W x 3 uint8 tensor. `landmarks` at construction: the video's first face."""

    def __init__(
        self, frame: np.ndarray, landmarks: np.ndarray, settings: WarpSettings = WarpSettings(), device="cpu"
    ):
        self.device = torch.device(device)
        self.settings = dataclasses.replace(
            settings, field_resolution=FIELD_RESOLUTION, border_anchors=BORDER_ANCHORS
        )
        side = L.interocular(landmarks) * SPAN
        self.size = int(np.clip(2 * round(side / 2), *SIZES))
        self.rig = FaceRig(lips_closed(self.align(landmarks).to_crop(landmarks)))
        moved = np.abs(self.rig.basis[[BLENDSHAPES.index(n) for n in ARTICULATION]]).max(axis=(0, 2))
        moving = np.flatnonzero(moved > 1e-3 * self.rig.unit)
        outline = set(L.FACE_OVAL) | REMAPPED | {61, 291, 78, 308}  # every one; of the others inside, half
        self.moving = np.array(sorted(set(moving) & outline | set(moving[::2])))
        jaw = self.rig.basis[BLENDSHAPES.index("jawOpen"), :, 1]
        self.jaw = jaw / jaw[LOWER_LIP_MIDDLE]  # the jaw's move per pixel the lower lip's middle moves
        whole = align_face(landmarks, SIZES[0])  # the teeth painted as the eyes' whites are lit (mouth.py)
        image = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float().div_(255)
        points = whole.to_crop(landmarks)[:, :2]
        teeth = painted_teeth_colour(crop_frame(image, whole), points, L.interocular(points))
        self.teeth = teeth.to(self.device)
        self.bank = InteriorBank()  # the video's own open mouths (interior.py)

    def align(self, landmarks: np.ndarray) -> Alignment:
        """The lower-face crop: SPAN interocular units wide, from the eye line down."""
        return align_face(landmarks, self.size, span=SPAN, below_eyes=SPAN / 2)

    def prepare(self, frame: np.ndarray, landmarks: np.ndarray) -> Prepared:
        """What a frame needs whatever is said over it (a stage of its own, beside the renderer)."""
        alignment = self.align(landmarks)
        crop_landmarks = alignment.to_crop(landmarks)
        own = fit_motion(self.rig, crop_landmarks)
        crop = crop_frame(*footprint(frame, alignment, self.device))
        self.bank.add(crop, crop_landmarks)
        return Prepared(frame, alignment, crop_landmarks, own, self.rig.apply(own), crop)

    def deformed(self, frame: Prepared, motion: np.ndarray) -> np.ndarray:
        """The frame's landmarks (crop pixels) moved by what `motion`'s articulation changes of its
        own, the lips then parted by exactly the rig's gap for `motion` (lips_apart)."""
        spoken = frame.own.copy()
        spoken[ARTICULATED] = np.asarray(motion)[ARTICULATED]
        spoken[INDEX["jawOpen"]] *= OPENING
        posed = self.rig.apply(spoken)
        moved = jaw_to_gap(frame.landmarks + posed - frame.posed, posed, self.jaw, self.rig.unit)
        return lips_apart(moved, posed)

    def __call__(self, frame: Prepared, motion: np.ndarray) -> torch.Tensor:
        deformed = self.deformed(frame, motion)
        nose = float(frame.landmarks[L.NOSE_TIP, 1])
        from_row = nose - FIELD_ABOVE_NOSE * self.rig.unit
        source = lip_edges_inside(frame.landmarks, self.rig.unit)
        warp = MeshWarpRenderer(
            frame.crop, source, self.settings, self.device, self.moving, from_row, self.teeth
        )
        if warp.own_colour is not None:  # the video's own teeth, as they show: painted alike
            self.teeth = self.teeth + TEETH_FOLLOW * (warp.own_colour - self.teeth)
        warped = warp(deformed)
        contact_line(warped, deformed, frame.landmarks, self.rig.unit)
        self.bank.fill(warped, deformed, lip_gap(frame.landmarks), warp.lips)
        mask = changed_below(frame.crop, warped, nose, warp.unit)
        return paste(frame.image, warped, mask, frame.alignment, self.device)


@dataclasses.dataclass
class Prepared:
    """A source frame ready for its mouth: the frame, its crop and landmarks there, its own motion."""

    image: np.ndarray  # H x W x 3 uint8
    alignment: Alignment
    landmarks: np.ndarray  # (478, 3) crop pixels
    own: np.ndarray  # the frame's fitted motion
    posed: np.ndarray  # rig.apply(own)
    crop: torch.Tensor  # 1 x 3 x size x size in [0, 1]


def lips_closed(landmarks: np.ndarray) -> np.ndarray:
    """The landmarks with the lips brought together (mouthClose 1): the rig's rest. The first face
    of a talking video is often caught mid-word, and a generator's closed mouth in silence is
    closed relative to the rest: with the frame's own lips as the rest, a third of the silent
    frames stayed parted; a rest left 0.06 interocular units apart closed /p b m/ in 74% of the
    cases against 83% (benchmarks/dub_eval.py, four cases)."""
    out = np.array(landmarks, dtype=np.float64, copy=True)
    y = torch.from_numpy(out[None, :, 1])
    out[:, 1] += close_lips_shift(y, torch.ones(1, dtype=y.dtype))[0].numpy()
    return out


def lips_apart(deformed: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """`deformed` with each column's inner-lip gap set to `posed`'s (the rig's for the spoken
    motion), both lips moving half the difference with their outer contours. The difference
    between two fits carries what the rig cannot explain of the frame's own lips: a source caught
    mid-word kept 0.02 interocular units of its opening where the speech closes the lips, and a
    third of those frames read as open."""
    out = deformed.copy()
    for up_in, up_out, lo_in, lo_out in zip(*LIP_COLUMNS):
        if up_in == lo_in:  # a corner
            continue
        error = (deformed[lo_in, 1] - deformed[up_in, 1]) - max(posed[lo_in, 1] - posed[up_in, 1], 0.0)
        out[[up_in, up_out], 1] += error / 2
        out[[lo_in, lo_out], 1] -= error / 2
    return out


def jaw_to_gap(deformed: np.ndarray, posed: np.ndarray, jaw: np.ndarray, unit: float) -> np.ndarray:
    """`deformed` with the jaw moved (along `jaw`, rig.basis' jawOpen rows scaled to 1 at the lower
    lip's middle) by half of what its mean inner-lip gap is off `posed`'s beyond JAW_BEYOND. A
    mouth opened wider than the rig's jawOpen reaches (a shout, 0.5 interocular units) keeps the
    rest in the fit's difference; shut by the lips alone (lips_apart) its lower lip was stretched
    down to the chin. Smaller misfits stay the lips' (moving the jaw for them lost closures)."""
    up, lo = UPPER_MIDDLE, LOWER_MIDDLE
    gaps = np.maximum(posed[lo, 1] - posed[up, 1], 0.0)
    error = float(np.mean(deformed[lo, 1] - deformed[up, 1] - gaps))
    error = np.sign(error) * max(abs(error) - JAW_BEYOND * unit, 0.0)
    out = deformed.copy()
    out[:, 1] -= jaw * error / 2
    return out


def lip_edges_inside(landmarks: np.ndarray, unit: float) -> np.ndarray:
    """The frame's landmarks as the warp should read them: parted lips' inner contours moved
    LIP_EDGE into the lips, so that the dark, blurred inner edge of each lip counts as mouth
    interior. Lips the speech closes then meet on their red, not on a dark band (read as parted in
    a third of the frames that should show them closed). A smaller edge keeps more of a lip whose
    inner half is dark, but closes fewer: /p b m/ pooled over benchmarks/dub_eval.py's cases 0.84
    at 0.025, 0.80 at 0.018, 0.79 at 0.01 (open vowels 0.84, 0.86, 0.88). Lips that touch are
    left as they are."""
    out = landmarks.copy()
    edge = LIP_EDGE * unit
    up, lo = UPPER_MIDDLE, LOWER_MIDDLE
    parted = ((out[lo, 1] - out[up, 1] - edge) / edge).clip(0, 1)
    out[up, 1] -= edge * parted
    out[lo, 1] += edge * parted
    return out


def contact_line(crop: torch.Tensor, deformed: np.ndarray, source: np.ndarray, unit: float) -> None:
    """Darken, in place, the line where the warp shut lips that the source frame had apart.
    Squeezing an open mouth shut leaves two lips with no line between them (a wide smile's thin
    upper lip: a pink smear that the face mesh read as a mouth 0.1 interocular units open); shut
    lips meet on a shadow. Columns the source already had shut keep their own line."""
    x0, x1 = int(np.ceil(deformed[78, 0])), int(np.floor(deformed[308, 0]))
    size = crop.shape[-1]
    x0, x1 = max(x0, 0), min(x1, size - 1)
    if x1 <= x0:
        return
    columns = torch.arange(x0, x1 + 1, dtype=torch.float64)
    top, bottom = (t.double().numpy() for t in inner_lips(deformed, columns))
    source_top, source_bottom = (t.double().numpy() for t in inner_lips(source, columns))
    apart = source_bottom - source_top
    cols = columns.numpy()
    shut = np.clip(1 - (bottom - top) / (CONTACT_SHUT * unit), 0, 1)
    opened = np.clip((apart - CONTACT_SHUT * unit) / (CONTACT_SHUT * unit), 0, 1)
    ends = np.clip(np.minimum(cols - cols[0], cols[-1] - cols) / (0.1 * (cols[-1] - cols[0]) + 1e-6), 0, 1)
    weight = shut * opened * ends
    if weight.max() <= 0:
        return
    line, width = (top + bottom) / 2, CONTACT_WIDTH * unit
    y0, y1 = max(int(line.min() - 3 * width), 0), min(int(np.ceil(line.max() + 3 * width)) + 1, size)
    if y1 <= y0:
        return
    rows = torch.arange(y0, y1, dtype=crop.dtype, device=crop.device)[:, None]
    centre = torch.as_tensor(line, dtype=crop.dtype, device=crop.device)
    strength = torch.as_tensor(CONTACT_DARK * weight, dtype=crop.dtype, device=crop.device)
    shade = 1 - strength * torch.exp(-(((rows - centre) / width) ** 2))
    crop[0, :, y0:y1, x0 : x1 + 1] *= shade


def footprint(frame: np.ndarray, alignment: Alignment, device) -> tuple[torch.Tensor, Alignment]:
    """The part of a frame (H x W x 3 uint8) its crop covers, 1 x 3 x h x w in [0, 1] on `device`,
    with the alignment from that part: only those pixels are converted."""
    s = alignment.size
    inv = alignment.inverse()
    corners = np.array([[0, 0], [s, 0], [0, s], [s, s]], dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
    h, w = frame.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, (w - 1, h - 1))
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 2, (x0 + 1, y0 + 1), (w, h))
    part = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).to(device)
    matrix = alignment.matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return part.permute(2, 0, 1)[None].float().div_(255), Alignment(matrix, s)


def crop_frame(image: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """The aligned crop of a frame (1 x 3 x H x W in [0, 1]), 1 x 3 x size x size: one affine
    grid_sample (a video frame is not shrunk first: its crop is at about the frame's own scale)."""
    h, w = image.shape[-2:]
    s = alignment.size
    inv = alignment.inverse()  # crop pixels -> image pixels; in grid_sample's [-1, 1] coordinates:
    a = np.diag([2 / w, 2 / h]) @ inv[:, :2] * (s / 2)
    b = np.diag([2 / w, 2 / h]) @ (inv[:, :2] @ np.full(2, (s - 1) / 2) + inv[:, 2] + 0.5) - 1
    theta = torch.as_tensor(np.concatenate([a, b[:, None]], axis=1), dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta[None], [1, 3, s, s], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def changed_below(crop: torch.Tensor, warped: torch.Tensor, nose_y: float, unit: float) -> torch.Tensor:
    """Where the warped crop differs from the crop (widened and feathered by CHANGE_SPREAD), and
    nothing above BELOW_NOSE under the nose tip: (1, 1, S, S) in [0, 1]. Where the warp moved
    nothing, the crop's own pixels come back exactly, so the frame there stays as it was."""
    size = crop.shape[-1]
    cell = max(1, int(CHANGE_SPREAD * unit / 4))  # worked out on a grid of cells this many pixels wide
    top = min(max(int(nose_y), 0), size)  # nothing above the nose is pasted: not compared either
    changed = torch.zeros(1, 1, size, size, dtype=crop.dtype, device=crop.device)
    changed[:, :, top:] = (
        (warped[:, :, top:] - crop[:, :, top:]).abs().amax(dim=1, keepdim=True) > NOTICED
    ).float()
    changed = F.max_pool2d(changed, cell, ceil_mode=True)
    wide = F.max_pool2d(changed, 5, stride=1, padding=2)
    soft = F.avg_pool2d(wide, 5, stride=1, padding=2, count_include_pad=False)
    soft = F.interpolate(soft, size=(size, size), mode="bilinear", align_corners=False)
    rows = torch.arange(size, dtype=crop.dtype, device=crop.device)
    below = ((rows - nose_y - BELOW_NOSE * unit) / (BELOW_NOSE * unit)).clamp(0, 1)
    inside = (torch.minimum(rows, size - 1 - rows) / (EDGE_FADE * size)).clamp(0, 1)  # off the crop's edges
    return soft * (below * inside).view(1, 1, size, 1) * inside.view(1, 1, 1, size)


def paste(
    frame: np.ndarray, crop: torch.Tensor, mask: torch.Tensor, alignment: Alignment, device
) -> torch.Tensor:
    """The crop blended into the frame by `mask` (both in crop pixels), over the mask's box alone."""
    out = torch.from_numpy(np.array(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]))
    out = out.to(device)
    rows = torch.nonzero(mask[0, 0].amax(dim=1) > 0)[:, 0].tolist()
    cols = torch.nonzero(mask[0, 0].amax(dim=0) > 0)[:, 0].tolist()
    if not rows:
        return out
    s = alignment.size
    box = np.array(
        [(x, y) for x in (cols[0], cols[-1] + 1) for y in (rows[0], rows[-1] + 1)], dtype=np.float64
    )
    inv = alignment.inverse()
    corners = box @ inv[:, :2].T + inv[:, 2]
    h, w = out.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), (w, h))
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = torch.meshgrid(
        torch.arange(y0, y1, dtype=torch.float64), torch.arange(x0, x1, dtype=torch.float64), indexing="ij"
    )
    m = torch.from_numpy(alignment.matrix)
    at = torch.stack([xs * m[0, 0] + ys * m[0, 1] + m[0, 2], xs * m[1, 0] + ys * m[1, 1] + m[1, 2]], dim=-1)
    grid = ((at + 0.5) / s * 2 - 1).float()[None].to(device)
    both = torch.cat([crop, mask], dim=1)
    sampled = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    region = image_to_tensor(out[y0:y1, x0:x1].cpu().numpy()).to(device)
    alpha = sampled[:, 3:]
    blended = region + alpha * (sampled[:, :3] - region)
    out[y0:y1, x0:x1] = uint8_frame(blended)
    return out
