"""A talking-head video read back with the face mesh, frame by frame: lip gap, mouth shape, eye
gap, head rotation and the share of the mouth's interior that is near-black or teeth-like.
reference.py compares two of these series."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmcli.core.errors import NoFaceError
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.tools.evaluate import OPEN as LIPS_APART
from tmcli.tools.evaluate import fill_missing, mouth_aperture, track_video

# points that move with the skull, not with speech or the eyes: upper face oval, nose, eye corners
MOUTH_CORNERS, MOUTH_TOP, MOUTH_BOTTOM = (61, 291), 0, 17
TEETH_VALUE, TEETH_SATURATION = 0.55, 0.35  # teeth-like: HSV value above, saturation below
# fmt: off
RIGID = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 234, 127, 162, 21, 54, 103, 67, 109, 1, 4, 5, 6, 168, 197,
    195, 98, 327, 33, 133, 263, 362,
]
# fmt: on
EYE_LIDS = [(159, 145), (386, 374)]  # (upper, lower) lid midpoints, right and left eye
INNER_LIPS = (
    L.LIPS_UPPER_INNER + L.LIPS_LOWER_INNER[-2:0:-1]
)  # the opening's outline, corner to corner and back
DARK = 0.15  # a pixel is near-black when its brightest channel is below this


@dataclass(frozen=True)
class FaceSeries:
    """One video's face, per frame (frames without a face interpolated from their neighbours)."""

    fps: float
    tracks: list  # (478, 3) landmarks or None per frame
    gap: np.ndarray  # (T,) inner-lip gap, interocular units
    shape: np.ndarray  # (T,) mouth width / height
    eye: np.ndarray  # (T,) eye gap, interocular units
    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees against the first frame with a face
    found: np.ndarray  # (T,) bool
    interior: np.ndarray | None = None  # (T, 3) interior_counts per frame; None: the frames were not read

    @property
    def seconds(self) -> float:
        return len(self.gap) / self.fps

    def cut(self, seconds: float) -> FaceSeries:
        n = min(len(self.gap), max(round(seconds * self.fps), 1))
        return FaceSeries(
            self.fps,
            self.tracks[:n],
            self.gap[:n],
            self.shape[:n],
            self.eye[:n],
            self.pose[:n],
            self.found[:n],
            None if self.interior is None else self.interior[:n],
        )

    def interior_shares(self) -> tuple[float, float]:
        """(near-black, teeth-like) shares of the pixels inside the parted lips, pooled over the
        frames (nan: the lips are never apart, or the frames were not read)."""
        total, dark, teeth = np.zeros(3) if self.interior is None else self.interior.sum(axis=0)
        if total == 0:
            return float("nan"), float("nan")
        return float(dark / total), float(teeth / total)

    def at(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """gap, shape, eye and pose linearly interpolated at `times` (seconds)."""
        own = np.arange(len(self.gap)) / self.fps
        series = {"gap": self.gap, "shape": self.shape, "eye": self.eye}
        out = {name: np.interp(times, own, values) for name, values in series.items()}
        out["pose"] = np.stack([np.interp(times, own, axis) for axis in self.pose.T], axis=1)
        return out


def _unit(lm: np.ndarray) -> float:
    return max(L.interocular(lm), 1e-6)


def mouth_shape(lm: np.ndarray) -> float:
    """Outer mouth width / height."""
    width = np.linalg.norm(lm[MOUTH_CORNERS[1], :2] - lm[MOUTH_CORNERS[0], :2])
    return float(width / max(np.linalg.norm(lm[MOUTH_BOTTOM, :2] - lm[MOUTH_TOP, :2]), 1e-6))


def eye_gap(lm: np.ndarray) -> float:
    """Distance between the lids' midpoints, both eyes averaged, interocular units."""
    return float(
        np.mean([np.linalg.norm(lm[lower, :2] - lm[upper, :2]) for upper, lower in EYE_LIDS]) / _unit(lm)
    )


def head_rotation(lm: np.ndarray, first: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of the rotation that takes `first`'s rigid points onto
    `lm`'s (a least-squares fit with scale: Kabsch / Umeyama). Yaw turns about the image's
    vertical axis, pitch about its horizontal one, roll in the image plane."""
    from scipy.spatial.transform import Rotation

    p, q = lm[RIGID] - lm[RIGID].mean(axis=0), first[RIGID] - first[RIGID].mean(axis=0)
    u, _, vt = np.linalg.svd(q.T @ p)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return Rotation.from_matrix(rotation).as_euler("YXZ", degrees=True)


def interior_counts(frame: np.ndarray, lm: np.ndarray | None) -> np.ndarray:
    """(pixels, near-black, teeth-like) inside the inner-lip polygon of `frame` (H x W x 3 uint8)
    with landmarks `lm` in its pixels; zeros where there is no face or the lips are not apart
    (a closed mouth's polygon is the lips' own edge)."""
    from skimage.draw import polygon

    if lm is None or mouth_aperture(lm) < LIPS_APART:
        return np.zeros(3)
    outline = lm[INNER_LIPS, :2]
    rows, cols = polygon(outline[:, 1], outline[:, 0], frame.shape[:2])
    pixels = frame[rows, cols].astype(np.float64) / 255
    value, low = pixels.max(axis=1), pixels.min(axis=1)
    saturation = (value - low) / np.maximum(value, 1e-6)
    teeth = (value > TEETH_VALUE) & (saturation < TEETH_SATURATION)
    return np.array([len(pixels), np.sum(value < DARK), np.sum(teeth)], dtype=np.float64)


def face_series(
    fps: float, tracks: list[np.ndarray | None], frames: Iterable[np.ndarray] | None = None
) -> FaceSeries:
    """A video's figures from its landmarks per frame (and, given its frames, the mouth interior's)."""
    found = np.array([t is not None for t in tracks])
    if not found.any():
        raise NoFaceError("no face found in any frame")
    first = tracks[int(np.argmax(found))]

    def per_frame(measure, width: int = 0) -> np.ndarray:
        blank = np.full(width, np.nan) if width else np.nan
        return fill_missing(np.array([measure(t) if t is not None else blank for t in tracks]), found)

    return FaceSeries(
        float(fps),
        tracks,
        gap=per_frame(mouth_aperture),
        shape=per_frame(mouth_shape),
        eye=per_frame(eye_gap),
        pose=per_frame(lambda t: head_rotation(t, first), 3),
        found=found,
        interior=None
        if frames is None
        else np.array([interior_counts(f, t) for f, t in zip(frames, tracks)]),
    )


def read_face_series(path: str | Path, what: str = "the video") -> FaceSeries:
    fps, tracks, _ = track_video(path)
    frames = read_video_frames(path)
    next(frames)  # the fps
    try:
        return face_series(fps, tracks, frames)
    except NoFaceError:
        raise NoFaceError(
            f"no face found in {what} {path} ({len(tracks)} frames)",
            hint="give a video of one face, seen from the front, at least 100 pixels wide",
        ) from None
