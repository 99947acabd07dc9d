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

import numpy as np

from . import landmarks as L

POSE = ["headYaw", "headPitch", "headRoll", "headX", "headY", "headScale"]
BLENDSHAPES = [
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight",
    "browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight",
]
GAZE = ["gazeX", "gazeY"]
CHANNELS = POSE + BLENDSHAPES + GAZE
MOTION_DIM = len(CHANNELS)
INDEX = {name: i for i, name in enumerate(CHANNELS)}
REST_GAP = 0.18  # largest inner-lip gap (u) at rest: a portrait caught mid-word rests with its lips this far apart


# the range the rig takes motion in: learned generators may step outside it, the rig never does.
# Blendshapes may be negative (a sad mouth is a negative smile; a neutral face may lower its brows).
LIMITS = {"headYaw": (-0.8, 0.8), "headPitch": (-0.6, 0.6), "headRoll": (-0.6, 0.6), "headX": (-1.5, 1.5),
          "headY": (-1.5, 1.5), "headScale": (-0.5, 0.5), **{name: (-1.0, 1.0) for name in BLENDSHAPES},
          "gazeX": (-1.0, 1.0), "gazeY": (-1.0, 1.0)}
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

    def __init__(self, landmarks: np.ndarray):
        self.source = np.asarray(landmarks, dtype=np.float64)
        self.unit = L.interocular(self.source)
        p = self.source[:, :2]
        self.eye_mid = (p[[33, 133, 263, 362]].mean(axis=0))
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
            near_corner = np.exp(-((x - sign * hw) ** 2 + y ** 2) / (2 * 0.3 ** 2))
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

        # eyes: a blink brings the upper lid down onto the lower lid
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
            blink[lid, 1] = 0.85 * gap
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
    def apply(self, motion: np.ndarray) -> np.ndarray:
        """One frame of motion (MOTION_DIM,) -> deformed landmarks (478, 3) in crop pixels."""
        m = np.clip(np.nan_to_num(np.asarray(motion, dtype=np.float64)), LOWER, UPPER)
        coeffs = m[len(POSE): len(POSE) + len(BLENDSHAPES)]
        pts = self.rest.copy()
        pts[:, :2] += np.tensordot(coeffs, self.basis, axes=1)
        self._close_lips(pts, coeffs[BLENDSHAPES.index("mouthClose")])
        gx, gy = m[INDEX["gazeX"]], m[INDEX["gazeY"]]
        for iris in (L.LEFT_IRIS, L.RIGHT_IRIS):
            pts[iris, 0] += 0.11 * gx * self.unit
            pts[iris, 1] += 0.06 * gy * self.unit
        return self._pose(pts, m[: len(POSE)])

    def _close_lips(self, pts: np.ndarray, amount: float) -> None:
        """mouthClose: bring the inner lips together, whatever the jaw and the portrait do."""
        if amount <= 0:
            return
        amount = min(float(amount), 1.0)
        gap = pts[L.LIPS_LOWER_INNER, 1] - pts[L.LIPS_UPPER_INNER, 1]
        half = 0.5 * amount * gap
        pts[L.LIPS_UPPER_INNER, 1] += half
        pts[L.LIPS_UPPER_OUTER, 1] += half
        pts[L.LIPS_LOWER_INNER, 1] -= half
        pts[L.LIPS_LOWER_OUTER, 1] -= half

    def _pose(self, pts: np.ndarray, pose: np.ndarray) -> np.ndarray:
        yaw, pitch, roll, tx, ty, log_scale = pose
        cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        rot = rz @ ry @ rx
        out = (pts - self.pivot) @ rot.T * np.exp(log_scale) + self.pivot
        out[:, 0] += tx * self.unit
        out[:, 1] += ty * self.unit
        return out
