"""The motion latent: what changes from frame to frame, apart from who the person is.

One frame of motion is a vector of MOTION_DIM channels:
  head pose   yaw, pitch, roll (radians), tx, ty (interocular units), scale (log)
  expression  blendshape coefficients with ARKit names (jawOpen, mouthClose, eyeBlinkLeft, ...)
  gaze        gazeX, gazeY in [-1, 1] (eyes right/down as seen in the image)
A clip of motion is an array (T, MOTION_DIM). Identity and appearance stay in the portrait and
its landmarks; `FaceRig.apply` turns (motion, portrait landmarks) into deformed landmarks.

Blendshapes are built per portrait from its own landmarks (mouthClose closes *its* lip gap, a
blink brings *its* upper lid onto its lower lid), so one set of coefficients means the same on
every face. Distances are in interocular units (u), y points down, left/right are the subject's.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from tmcli.face import landmarks as L

POSE = ["headYaw", "headPitch", "headRoll", "headX", "headY", "headScale"]
BLENDSHAPES = [
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthRollLower",
    "mouthRollUpper",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeWideLeft",
    "eyeWideRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "browInnerUp",
    "browDownLeft",
    "browDownRight",
    "browOuterUpLeft",
    "browOuterUpRight",
]
GAZE = ["gazeX", "gazeY"]
ARTICULATION = [name for name in BLENDSHAPES if name.startswith(("jaw", "mouth"))]  # what speech moves
CHANNELS = POSE + BLENDSHAPES + GAZE
MOTION_DIM = len(CHANNELS)
INDEX = {name: i for i, name in enumerate(CHANNELS)}
POSE_CHANNELS = slice(INDEX[POSE[0]], INDEX[POSE[-1]] + 1)
REST_GAP = (
    0.18  # largest inner-lip gap (u) at rest: a portrait caught mid-word rests with its lips this far apart
)


# the range the rig takes motion in: learned generators may step outside it, the rig never does.
# Blendshapes may be negative (a sad mouth is a negative smile; a neutral face may lower its brows).
LIMITS = {
    "headYaw": (-0.8, 0.8),
    "headPitch": (-0.6, 0.6),
    "headRoll": (-0.6, 0.6),
    "headX": (-1.5, 1.5),
    "headY": (-1.5, 1.5),
    "headScale": (-0.5, 0.5),
    **{name: (-1.0, 1.0) for name in BLENDSHAPES},
    "gazeX": (-1.0, 1.0),
    "gazeY": (-1.0, 1.0),
}
LOWER = np.array([LIMITS[name][0] for name in CHANNELS])
UPPER = np.array([LIMITS[name][1] for name in CHANNELS])


def neutral(num_frames: int = 1) -> np.ndarray:
    """Motion that leaves the portrait as it is."""
    return np.zeros((num_frames, MOTION_DIM), dtype=np.float32)


def channel(motion: np.ndarray, name: str) -> np.ndarray:
    return motion[..., INDEX[name]]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class FaceRig:
    """A portrait's landmarks plus its blendshape basis; `apply` poses and expresses them.

    `landmarks` are (478, 3) in the render crop's pixels, with the eyes level (see align.py).
    Motion is applied to `rest`: the portrait itself, except that a mouth caught wide open is
    brought to REST_GAP, so that jawOpen opens from where a mouth rests on every face.
    """

    pose = None  # None: pose_landmarks; or an exported face_rig graph's run (posed_by)

    def __init__(self, landmarks: np.ndarray):
        self.source = np.asarray(landmarks, dtype=np.float64)
        self.unit = L.interocular(self.source)
        p = self.source[:, :2]
        self.eye_mid = p[[33, 133, 263, 362]].mean(axis=0)
        corners = p[[61, 291]]
        self.mouth_centre = (p[13] + p[14]) / 2
        self.mouth_half_width = max(np.linalg.norm(corners[1] - corners[0]) / 2, 0.2 * self.unit)
        # head pivots about a point behind the face, level with the nose tip
        depth = 1.2 * self.unit
        self.pivot = np.array([self.eye_mid[0], p[L.NOSE_TIP, 1], self.source[L.NOSE_TIP, 2] + depth])
        self.basis = self._build_basis()  # (len(BLENDSHAPES), 478, 2) pixels per unit coefficient
        self.rest = self.source.copy()
        gap = (self.source[14, 1] - self.source[13, 1]) / self.unit
        if gap > REST_GAP:
            self._close_lips(self.rest, 1 - REST_GAP / gap)

    # -- the basis -------------------------------------------------------------------------
    def _local(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of every landmark relative to the mouth centre, in units u."""
        rel = (self.source[:, :2] - self.mouth_centre) / self.unit
        return rel[:, 0], rel[:, 1]

    def _build_basis(self) -> np.ndarray:
        n = len(self.source)
        x, y = self._local()
        hw = self.mouth_half_width / self.unit
        basis = {name: np.zeros((n, 2)) for name in BLENDSHAPES}
        upper = sorted(set(L.LIPS_UPPER_OUTER + L.LIPS_UPPER_INNER) - {61, 291, 78, 308})
        lower = sorted(set(L.LIPS_LOWER_OUTER + L.LIPS_LOWER_INNER) - {61, 291, 78, 308})
        corners = {"Right": [61, 78], "Left": [291, 308]}
        lips = upper + lower
        across = np.clip(np.abs(x) / hw, 0, 1)  # 0 at the mouth centre, 1 at the corners

        # jawOpen: the mandible rotates down; lower lip and chin drop, jaw angles barely move
        jaw = 0.62 * _smoothstep((y - 0.05) / 0.35) * np.clip(1 - (x / 1.15) ** 2, 0, 1) ** 1.5
        jaw[lower] = 0.52 * (1 - 0.55 * across[lower] ** 2)
        jaw[upper] = -0.02
        for idx in corners.values():
            jaw[idx] = 0.16
        basis["jawOpen"][:, 1] = jaw
        basis["jawOpen"][[61, 78], 0], basis["jawOpen"][[291, 308], 0] = 0.04, -0.04

        # lips round (funnel: open ring; pucker: pushed together and narrow)
        for name, narrow, open_ in (("mouthFunnel", 0.22, 0.06), ("mouthPucker", 0.35, -0.02)):
            basis[name][lips + [61, 78, 291, 308], 0] = -narrow * x[lips + [61, 78, 291, 308]]
            basis[name][L.LIPS_UPPER_INNER[1:-1], 1] = -open_
            basis[name][L.LIPS_LOWER_INNER[1:-1], 1] = 1.4 * open_
            basis[name][L.LIPS_UPPER_OUTER[1:-1], 1] = -0.03
            basis[name][L.LIPS_LOWER_OUTER[1:-1], 1] = 0.04

        for side, sign in (("Left", 1.0), ("Right", -1.0)):
            on_side = np.clip(sign * x / hw, 0, 1)  # 1 at this side's corner
            near_corner = np.exp(-((x - sign * hw) ** 2 + y**2) / (2 * 0.3**2))
            smile = basis[f"mouthSmile{side}"]
            smile[:, 0] = 0.10 * sign * near_corner
            smile[:, 1] = -0.10 * near_corner
            stretch = basis[f"mouthStretch{side}"]
            stretch[:, 0] = 0.10 * sign * near_corner
            stretch[:, 1] = 0.02 * near_corner
            half = 0.5 + 0.5 * on_side
            basis[f"mouthUpperUp{side}"][upper, 1] = -0.07 * half[upper]
            basis[f"mouthLowerDown{side}"][lower, 1] = 0.09 * half[lower]
            basis[f"mouthPress{side}"][L.LIPS_UPPER_OUTER[1:-1], 1] = 0.025 * half[L.LIPS_UPPER_OUTER[1:-1]]
            basis[f"mouthPress{side}"][L.LIPS_LOWER_OUTER[1:-1], 1] = -0.025 * half[L.LIPS_LOWER_OUTER[1:-1]]

        # lips roll in (F/V: the lower lip tucks under the upper teeth)
        basis["mouthRollLower"][L.LIPS_LOWER_OUTER[1:-1], 1] = -0.10
        basis["mouthRollLower"][L.LIPS_LOWER_INNER[1:-1], 1] = -0.05
        basis["mouthRollUpper"][L.LIPS_UPPER_OUTER[1:-1], 1] = 0.06
        basis["mouthRollUpper"][L.LIPS_UPPER_INNER[1:-1], 1] = 0.02

        # eyes: a blink brings the upper lid down 0.95 of the gap while the lower lid rises 0.15:
        # the lid goes a little past where they meet, so its margin covers the lower lid's wet rim
        # and any white the contour leaves (the mesh read 0.85, lids just meeting, less closed;
        # benchmarks/blink_depth.py)
        p = self.source[:, :2]
        for side, up, low, above, brow in (
            ("Left", L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER, L.LEFT_EYE_ABOVE, L.LEFT_BROW),
            ("Right", L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER, L.RIGHT_EYE_ABOVE, L.RIGHT_BROW),
        ):
            lid, under = up[1:-1], low[1:-1]
            order = np.argsort(p[low, 0])
            low_y = np.interp(p[lid, 0], p[low, 0][order], p[low, 1][order])
            gap = np.maximum(low_y - p[lid, 1], 0.0) / self.unit
            blink = basis[f"eyeBlink{side}"]
            blink[lid, 1] = 0.95 * gap
            blink[under, 1] = -0.15 * np.interp(p[under, 0], p[lid, 0], gap)
            blink[above[1:-1], 1] = 0.25 * np.interp(p[above[1:-1], 0], p[lid, 0], gap)
            basis[f"eyeWide{side}"][lid, 1] = -0.06
            basis[f"eyeWide{side}"][above[1:-1], 1] = -0.03
            basis[f"eyeSquint{side}"][under, 1] = -0.04
            spread = np.abs(p[brow, 0] - self.eye_mid[0])
            inner = [i for i, s in zip(brow, spread) if s < spread.mean()]  # nearer the nose
            outer = [i for i in brow if i not in inner]
            basis["browInnerUp"][inner, 1] += -0.12
            basis["browInnerUp"][above[1:-1], 1] += -0.02
            basis[f"browOuterUp{side}"][outer, 1] = -0.12
            basis[f"browDown{side}"][brow, 1] = 0.07
            basis[f"browDown{side}"][brow, 0] = -np.sign(p[brow, 0] - self.eye_mid[0]) * 0.03
            basis[f"browDown{side}"][above[1:-1], 1] = 0.03
        return np.stack([basis[name] for name in BLENDSHAPES]) * self.unit

    # -- apply -----------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """What `pose_landmarks` needs of this portrait (float64)."""
        return {
            "rest": torch.from_numpy(self.rest),
            "basis": torch.from_numpy(self.basis),
            "pivot": torch.from_numpy(self.pivot),
            "unit": torch.tensor(float(self.unit), dtype=torch.float64),
        }

    def posed_by(self, pose) -> FaceRig:
        """This rig, its landmarks posed by `pose` (an exported face_rig graph's run, which takes
        pose_landmarks' arguments) instead of pose_landmarks."""
        rig = copy.copy(self)
        rig.pose = pose
        return rig

    def apply(self, motion: np.ndarray) -> np.ndarray:
        """One frame of motion (MOTION_DIM,) -> deformed landmarks (478, 3) in crop pixels."""
        if not hasattr(self, "_tensors"):
            self._tensors = self.tensors()
        m = torch.as_tensor(np.asarray(motion, dtype=np.float64)).reshape(1, MOTION_DIM)
        return (self.pose or pose_landmarks)(m, **self._tensors)[0].numpy()

    def _pose(self, pts: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """pose_points on host arrays: points (N, 3), pose (6,) -> (N, 3); or poses (P, 6) -> (P, N, 3),
        all in one call (motion fitting: face/fitting.py)."""
        poses = torch.from_numpy(np.atleast_2d(np.asarray(pose, dtype=np.float64)))
        points = torch.from_numpy(np.asarray(pts, dtype=np.float64))[None].expand(len(poses), -1, -1)
        unit = torch.tensor(float(self.unit), dtype=torch.float64)
        out = pose_points(points, poses, torch.from_numpy(self.pivot), unit).numpy()
        return out if np.ndim(pose) == 2 else out[0]

    def _close_lips(self, pts: np.ndarray, amount: float) -> None:
        pts[:, 1] += close_lips_shift(torch.from_numpy(pts[None, :, 1]), torch.tensor([amount]))[0].numpy()


def close_lips_shift(y: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """mouthClose: the y shift (T, N) that brings the inner lips together by `amount` (T,) in
    [0, 1] of their gap, whatever the jaw and the portrait do; y: landmark rows (T, N)."""
    spread = RIG_CONSTANTS[2].to(y.dtype)
    gap = y[:, L.LIPS_LOWER_INNER] - y[:, L.LIPS_UPPER_INNER]
    half = 0.5 * amount.clamp(0, 1)[:, None] * gap  # (T, 11): the lip contours pair up point by point
    return half @ spread


def _rig_constants() -> tuple[torch.Tensor, ...]:
    """The rig's fixed tensors: motion limits, the lip-closing spread (11, 478), the irises (478,).
    Made once, eagerly: a cache filled inside an export's trace would keep its fake tensors."""
    spread = torch.zeros(len(L.LIPS_UPPER_INNER), L.NUM_LANDMARKS, dtype=torch.float64)
    for contour, sign in (
        (L.LIPS_UPPER_INNER, 1),
        (L.LIPS_UPPER_OUTER, 1),
        (L.LIPS_LOWER_INNER, -1),
        (L.LIPS_LOWER_OUTER, -1),
    ):
        spread[torch.arange(len(contour)), contour] += sign
    iris = torch.zeros(L.NUM_LANDMARKS, dtype=torch.float64)
    iris[L.LEFT_IRIS + L.RIGHT_IRIS] = 1.0
    return torch.as_tensor(LOWER), torch.as_tensor(UPPER), spread, iris


RIG_CONSTANTS = _rig_constants()


def pose_landmarks(
    motion: torch.Tensor, rest: torch.Tensor, basis: torch.Tensor, pivot: torch.Tensor, unit: torch.Tensor
) -> torch.Tensor:
    """The rig as tensor math: motion (T, MOTION_DIM) -> landmarks (T, 478, 3) in crop pixels.

    One code path for rendering (FaceRig.apply) and for the exported face_rig graph; the
    portrait comes in as FaceRig.tensors() (rest (478, 3), basis (27, 478, 2), pivot (3,), unit)."""
    lower, upper, _, iris = (t.to(rest.dtype) for t in RIG_CONSTANTS)
    m = torch.minimum(torch.maximum(torch.nan_to_num(motion.to(rest.dtype)), lower), upper)
    coeffs = m[:, len(POSE) : len(POSE) + len(BLENDSHAPES)]
    xy = rest[None, :, :2] + torch.einsum("ts,snk->tnk", coeffs, basis)
    y = xy[..., 1] + close_lips_shift(xy[..., 1], coeffs[:, BLENDSHAPES.index("mouthClose")])
    x = xy[..., 0] + 0.11 * unit * m[:, INDEX["gazeX"], None] * iris
    y = y + 0.06 * unit * m[:, INDEX["gazeY"], None] * iris
    pts = torch.stack([x, y, rest[None, :, 2].expand_as(x)], dim=-1)
    return pose_points(pts, m[:, : len(POSE)], pivot, unit)


def pose_points(
    pts: torch.Tensor, pose: torch.Tensor, pivot: torch.Tensor, unit: torch.Tensor
) -> torch.Tensor:
    """Head pose (T, 6: yaw, pitch, roll, tx, ty, log scale) applied to points (T, N, 3) about the pivot."""
    yaw, pitch, roll, tx, ty, log_scale = pose.unbind(dim=1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(*rows):  # 3 x 3 per frame from 9 (T,) entries
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    ry = matrix((yaw.cos(), zero, yaw.sin()), (zero, one, zero), (-yaw.sin(), zero, yaw.cos()))
    rx = matrix((one, zero, zero), (zero, pitch.cos(), -pitch.sin()), (zero, pitch.sin(), pitch.cos()))
    rz = matrix((roll.cos(), -roll.sin(), zero), (roll.sin(), roll.cos(), zero), (zero, zero, one))
    rot = rz @ ry @ rx
    out = (pts - pivot) @ rot.transpose(1, 2) * log_scale.exp()[:, None, None] + pivot
    shift = torch.stack([tx * unit, ty * unit, zero], dim=-1)
    return out + shift[:, None, :]
