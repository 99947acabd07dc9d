"""`tm data extract`: real talking-head videos -> training clips in the synthetic data's format.

Each frame's face-mesh landmarks are fitted with the motion latent that reproduces them through
a FaceRig built from the video's own most closed-lipped frame: a rigid pose first (on points no
blendshape moves), then blendshape coefficients by bounded least squares on the unposed points,
then gaze from the irises. Every frame shares the reference frame's crop alignment, so head
motion shows up as pose rather than being aligned away.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tmcli.core.audio import extract_features, load_audio, num_video_frames
from tmcli.core.errors import InputError, NoFaceError
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.face.align import align_face
from tmcli.face.rig import BLENDSHAPES, INDEX, MOTION_DIM, POSE, FaceRig
from tmcli.motion.controls import EMOTION_SHAPES, EMOTIONS, Controls
from tmcli.speech.alignment import speech_phones
from tmcli.speech.features import generator_features
from tmcli.train.shards import CLIPS, Clip, ShardWriter

FIT_SIZE = 256  # crop side the fit works in (the ridge weights below are relative to it)
RIDGE = 1e-3  # coefficient prior, in squared interocular units: keeps unseen shapes near 0
CLOSE_PRIOR = 3e-3  # pulls mouthClose towards "are the lips shut?" where the jaw leaves it free
LIPS_SHUT = 0.035  # inner-lip gap (u) at or below which lips count as shut (as in evaluate.py)
POSE_STD = 0.03  # head-rotation std (rad) that counts as pose intensity 1
BLINK_LEVEL = 0.5
_EYE_CORNERS = [33, 133, 263, 362]
_NOSE = [168, 6, 197, 195, 5, 4, 1]
_INNER_PAIRS = [(82, 87), (13, 14), (312, 317)]
_CLOSE = BLENDSHAPES.index("mouthClose")
_LINEAR = [i for i in range(len(BLENDSHAPES)) if i != _CLOSE]
_B0 = len(POSE)


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
            here = rig._pose(a, pose)[:, :2]
            jac = np.stack(
                [(rig._pose(a, pose + step)[:, :2] - here).ravel() / 1e-6 for step in 1e-6 * np.eye(6)],
                axis=1,
            )
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


_fitters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _lip_gap(landmarks: np.ndarray) -> float:
    """Inner-lip opening in interocular units, however the head is turned."""
    return float(
        np.mean([np.linalg.norm(landmarks[b, :2] - landmarks[a, :2]) for a, b in _INNER_PAIRS])
        / L.interocular(landmarks)
    )


def _track(path: Path) -> tuple[float, list[np.ndarray | None]]:
    """(fps, landmarks per video frame or None where no face)."""
    frames = read_video_frames(path)
    video_fps = next(frames)
    tracker = L.LandmarkTracker()
    try:
        tracks = [None if (lm := tracker(frame)) is None else lm.astype(np.float32) for frame in frames]
    finally:
        tracker.close()
    if not tracks:
        raise InputError(f"{path} has no video frames")
    return video_fps, tracks


def extract_clip(video: str | Path, fps: float = 25.0) -> Clip:
    """One video -> a Clip of its audio, features and fitted motion (`valid` False where no face)."""
    path = Path(video).resolve()
    audio = load_audio(path)
    video_fps, tracks = _track(path)
    faces = [i for i, lm in enumerate(tracks) if lm is not None]
    if not faces:
        raise NoFaceError(f"no face found in any frame of {path}")
    ref = min(faces, key=lambda i: _lip_gap(tracks[i]))  # first of the most closed-lipped frames
    alignment = align_face(tracks[ref].astype(np.float64), FIT_SIZE)
    rig = FaceRig(alignment.to_crop(tracks[ref].astype(np.float64)))
    num_frames = num_video_frames(len(audio), fps)
    source = np.round(np.arange(num_frames) * (video_fps or fps) / fps).astype(int)
    motion, valid = np.zeros((num_frames, MOTION_DIM), np.float32), np.zeros(num_frames, bool)
    fitted: dict[int, np.ndarray] = {}
    for k, j in enumerate(source):
        if j < len(tracks) and tracks[j] is not None:
            if j not in fitted:
                fitted[j] = fit_motion(rig, alignment.to_crop(tracks[j].astype(np.float64)))
            motion[k], valid[k] = fitted[j], True
    stat = path.stat()
    return Clip(
        audio=audio,
        features=generator_features(extract_features(audio, fps), speech_phones(audio)),
        motion=motion,
        valid=valid,
        controls=measure_controls(motion, valid, fps),
        neutral=np.zeros(MOTION_DIM, np.float32),
        info={
            "video": str(path),
            "size": stat.st_size,
            "mtime": stat.st_mtime,
            "frames_with_face": len(faces),
        },
    )


def measure_controls(motion: np.ndarray, valid: np.ndarray, fps: float) -> np.ndarray:
    """The Controls vector a clip shows, so real clips carry the same conditions as synthetic ones.

    Emotion strengths are the bounded least-squares mix of tmcli.controls' emotion offsets that
    best explains the mean expression (jawOpen left out: speech dominates it).
    """
    from scipy.optimize import lsq_linear

    seen = motion[valid].astype(np.float64) if valid.any() else np.zeros((1, MOTION_DIM))
    mean = seen.mean(axis=0)
    shapes = sorted({s for offsets in EMOTION_SHAPES.values() for s in offsets} - {"jawOpen"})
    mix = np.array([[EMOTION_SHAPES[e].get(s, 0.0) for e in EMOTIONS] for s in shapes])
    emotion = lsq_linear(mix, mean[[INDEX[s] for s in shapes]], bounds=(0.0, 1.0)).x
    rotation = seen[:, [INDEX["headYaw"], INDEX["headPitch"], INDEX["headRoll"]]]
    blink = np.where(valid, (motion[:, INDEX["eyeBlinkLeft"]] + motion[:, INDEX["eyeBlinkRight"]]) / 2, 0.0)
    above = blink > BLINK_LEVEL
    blinks = int(above[0]) + int(np.sum(above[1:] & ~above[:-1]))
    minutes = max(valid.sum(), 1) / fps / 60
    return Controls(
        gaze=(float(mean[INDEX["gazeX"]]), float(mean[INDEX["gazeY"]])),
        emotion=tuple(float(x) for x in emotion),
        pose_intensity=float(np.sqrt(rotation.var(axis=0).sum()) / POSE_STD),
        blink_rate=blinks / minutes,
    ).vector()


def _key(path: Path) -> tuple[str, int, float]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime


def extract_videos(
    videos: list[Path],
    out_dir: Path,
    fps: float = 25.0,
    on_clip: Callable[[Path, Clip | None], None] | None = None,
) -> int:
    """Append each video's clip to the data set at out_dir; returns the clips added.

    Resumable: videos already listed (same path, size and mtime) are skipped, with on_clip(video,
    None). Clips extracted before a failure are written, so a rerun does not redo them.
    """
    writer = ShardWriter(out_dir, fps, source="extract")  # first: it drops clip lines of unfinished shards
    listed = Path(out_dir) / CLIPS
    lines = listed.read_text().splitlines() if listed.is_file() else []
    done = {(c["video"], c["size"], c["mtime"]) for c in map(json.loads, lines) if "video" in c}
    added = 0
    try:
        for video in videos:
            path = Path(video).resolve()
            if not path.is_file():
                raise InputError(f"video not found: {path}")
            key = _key(path)
            clip = None
            if key not in done:
                clip = extract_clip(path, fps)
                writer.add(clip)
                done.add(key)
                added += 1
            if on_clip:
                on_clip(Path(video), clip)
    finally:
        writer.flush()
    return added
