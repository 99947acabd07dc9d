"""Motion fitted to landmarks: the motion latent that reproduces a frame's face-mesh landmarks
through a portrait's FaceRig. A rigid pose first (on points no blendshape moves), then blendshape
coefficients by bounded least squares on the unposed points, then gaze from the irises. Used on
real videos for training data (train/extract.py), and wherever a video's own motion is needed."""

from __future__ import annotations

import weakref

import numpy as np

from tmcli.face import landmarks as L
from tmcli.face.rig import BLENDSHAPES, INDEX, MOTION_DIM, POSE, FaceRig

RIDGE = 1e-3  # coefficient prior, in squared interocular units: keeps unseen shapes near 0
CLOSE_PRIOR = 3e-3  # pulls mouthClose towards "are the lips shut?" where the jaw leaves it free
LIPS_SHUT = 0.035  # inner-lip gap (u) at or below which lips count as shut (as in evaluate.py)
_EYE_CORNERS = [33, 133, 263, 362]
_NOSE = [168, 6, 197, 195, 5, 4, 1]
_INNER_PAIRS = [(82, 87), (13, 14), (312, 317)]
_CLOSE = BLENDSHAPES.index("mouthClose")
_LINEAR = [i for i in range(len(BLENDSHAPES)) if i != _CLOSE]
_B0 = len(POSE)
_fitters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Fitter:
    """What fitting needs of one rig, computed once: the stable points the pose is fitted on,
    the points the blendshapes move, and the blendshape fit's design matrices."""

    def __init__(self, rig: FaceRig):
        self.rig, u = rig, rig.unit
        moved = np.abs(rig.basis).max(axis=(0, 2))
        oval = [i for i in L.FACE_OVAL if rig.rest[i, 1] < rig.rest[L.NOSE_TIP, 1]]
        self.stable = np.array([i for i in _EYE_CORNERS + _NOSE + oval if moved[i] < 1e-3 * u])
        ui, uo, li, lo = L.LIPS_UPPER_INNER, L.LIPS_UPPER_OUTER, L.LIPS_LOWER_INNER, L.LIPS_LOWER_OUTER
        irises = set(L.LEFT_IRIS + L.RIGHT_IRIS)
        self.points = np.array(
            sorted((set(np.flatnonzero(moved > 1e-3 * u)) | set(ui + uo + li + lo)) - irises)
        )
        row = {p: 2 * k + 1 for k, p in enumerate(self.points)}  # y row of each point
        self.B = rig.basis[_LINEAR][:, self.points].reshape(len(_LINEAR), -1).T
        # mouthClose moves the lips by +-amount/2 of each column's gap, gap = g0 + G @ coeffs
        K = np.zeros((len(self.B), len(ui)))
        for i in range(len(ui)):
            for p, sign in ((ui[i], 0.5), (uo[i], 0.5), (li[i], -0.5), (lo[i], -0.5)):
                K[row[p], i] += sign
        self.KG = K @ (rig.basis[_LINEAR][:, li, 1] - rig.basis[_LINEAR][:, ui, 1]).T
        self.e = K @ (rig.rest[li, 1] - rig.rest[ui, 1])
        self.P = (self.B.T @ self.B, self.B.T @ self.KG + self.KG.T @ self.B, self.KG.T @ self.KG)
        self.ridge, self.prior = RIDGE * u**2, CLOSE_PRIOR * u**2
        self.lower = np.array([-0.6 if BLENDSHAPES[i].startswith("mouthSmile") else 0.0 for i in _LINEAR])
        self.grid = np.linspace(0.0, 1.0, 21)

    def unpose(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the stable points -> (pose (6,), 2D points with the pose undone).

        A 3D similarity (Umeyama) fit starts Gauss-Newton steps on the image-plane points alone:
        the mesh's depth is its least reliable coordinate (it makes pitch follow the jaw). The
        pose is undone with the rig's own depths, which no blendshape changes.
        """
        rig = self.rig
        a, b = rig.rest[self.stable], pts[self.stable]
        ac, bc = a.mean(axis=0), b.mean(axis=0)
        u_, s, vt = np.linalg.svd((a - ac).T @ (b - bc))
        d = np.sign(np.linalg.det(vt.T @ u_.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u_.T
        scale = (s[0] + s[1] + d * s[2]) / ((a - ac) ** 2).sum()
        t = (bc - rig.pivot - scale * rot @ (ac - rig.pivot)) / rig.unit
        pose = np.array(
            [
                np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)),
                np.arctan2(rot[2, 1], rot[2, 2]),
                np.arctan2(rot[1, 0], rot[0, 0]),
                t[0],
                t[1],
                np.log(scale),
            ]
        )
        for _ in range(4):
            posed = rig._pose(a, np.concatenate([pose[None], pose + 1e-6 * np.eye(6)]))[:, :, :2]
            here = posed[0]
            jac = np.stack([(p - here).ravel() / 1e-6 for p in posed[1:]], axis=1)
            delta = np.linalg.lstsq(jac, (b[:, :2] - here).ravel(), rcond=None)[0]
            pose += delta
            if np.abs(delta).max() < 1e-5:
                break
        rot = rig._pose(np.eye(3) + rig.pivot, pose) - rig._pose(rig.pivot[None], pose)  # (scale * R).T
        shift = (
            pts[:, :2] - rig.pivot[:2] - pose[3:5] * rig.unit - (rig.rest[:, 2:] - rig.pivot[2]) * rot[2, :2]
        )
        return pose, np.linalg.solve(rot[:2, :2].T, shift.T).T + rig.pivot[:2]

    def blendshapes(self, disp: np.ndarray, shut: float) -> np.ndarray:
        """Coefficients for 2D displacements from rest; mouthClose (bilinear with the rest) is
        found on a grid with the others unbounded, then refined in turn with them bounded."""
        from scipy.optimize import lsq_linear

        d = disp[self.points].ravel()
        bd, kd, be, ke = self.B.T @ d, self.KG.T @ d, self.B.T @ self.e, self.KG.T @ self.e

        def normal(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Ridge normal equations (H, q) of the coefficients at mouthClose = a."""
            p0, p1, p2 = self.P
            a2, a3 = a[..., None], a[..., None, None]
            return p0 + a3 * p1 + a3**2 * p2 + self.ridge * np.eye(len(p0)), bd + a2 * (kd - be) - a2**2 * ke

        h, q = normal(self.grid)
        c = np.linalg.solve(h, q[..., None])[..., 0]
        cost = (
            d @ d
            - 2 * self.grid * (d @ self.e)
            + self.grid**2 * (self.e @ self.e)
            - (q * c).sum(1)
            + self.prior * (self.grid - shut) ** 2
        )
        k = int(np.clip(np.argmin(cost), 1, len(self.grid) - 2))  # parabola through the best three
        curve = cost[k - 1] - 2 * cost[k] + cost[k + 1]
        step = 0.5 * (cost[k - 1] - cost[k + 1]) / curve if curve > 0 else 0.0
        close = np.clip(self.grid[k] + np.clip(step, -1, 1) * (self.grid[1] - self.grid[0]), 0, 1)
        h, q = normal(close)
        chol = np.linalg.cholesky(h)  # the bounded problem on 26 rows instead of hundreds
        coeffs = lsq_linear(chol.T, np.linalg.solve(chol, q), bounds=(self.lower, 1.0), method="bvls").x
        v = self.e + self.KG @ coeffs
        close = np.clip((v @ (d - self.B @ coeffs) + self.prior * shut) / (v @ v + self.prior), 0.0, 1.0)
        out = np.zeros(len(BLENDSHAPES))
        out[_LINEAR], out[_CLOSE] = coeffs, close
        return out


def fit_motion(rig: FaceRig, landmarks: np.ndarray) -> np.ndarray:
    """(478,3) landmarks in the rig's crop coordinates -> motion (MOTION_DIM,) float32 that best
    reproduces them through rig.apply."""
    fitter = _fitters.get(rig) or _fitters.setdefault(rig, _Fitter(rig))
    pose, pts = fitter.unpose(np.asarray(landmarks, dtype=np.float64))
    disp = pts - rig.rest[:, :2]
    gap = np.mean([pts[b, 1] - pts[a, 1] for a, b in _INNER_PAIRS]) / rig.unit
    motion = np.zeros(MOTION_DIM)
    motion[:_B0] = pose
    motion[_B0 : _B0 + len(BLENDSHAPES)] = fitter.blendshapes(disp, float(np.clip(1 - gap / LIPS_SHUT, 0, 1)))
    iris = disp[L.LEFT_IRIS + L.RIGHT_IRIS].mean(axis=0) - disp[_EYE_CORNERS].mean(axis=0)
    motion[INDEX["gazeX"]] = np.clip(iris[0] / (0.11 * rig.unit), -1, 1)
    motion[INDEX["gazeY"]] = np.clip(iris[1] / (0.06 * rig.unit), -1, 1)
    return motion.astype(np.float32)


def lip_gap(landmarks: np.ndarray) -> float:
    """Inner-lip opening in interocular units, however the head is turned."""
    return float(
        np.mean([np.linalg.norm(landmarks[b, :2] - landmarks[a, :2]) for a, b in _INNER_PAIRS])
        / L.interocular(landmarks)
    )
