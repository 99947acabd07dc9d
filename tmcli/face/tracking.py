"""One face followed through a video: landmarks per frame, smoothed over time, None where it is lost.

The face mesh runs on a square region around the face rather than on the whole frame: its own
detector only finds faces that fill much of its input, so a small face in a wide shot is found
once by `detect_faces` (any size, the largest or the `face_index`-th) and then followed in its
region, which moves only when the face nears its edge. The mesh reads each frame of the region on
its own (static mode): in its tracking mode the lips lagged a frame or two behind their pixels,
and a warp that takes the lips from where they are not smears them. Where the mesh loses the face
(a cutaway, a turned head, a hand), the frame has no landmarks and the face is looked for again a
few times a second. The landmarks are smoothed by a One Euro filter in interocular units: still
faces stop trembling, moving ones keep up (the warp needs them where the pixels are). Below the
nose speech moves the face faster than a head moves, so the mouth and jaw are filtered less.
"""

from __future__ import annotations

import numpy as np

from tmcli.core.filters import OneEuroFilter
from tmcli.face.landmarks import MESH_FACE_SHARE, NOSE_TIP, LandmarkTracker, detect_faces, interocular

SMOOTH_CUTOFF = 3.0  # Hz at rest
SPEECH_CUTOFF = 12.0  # Hz at rest below the nose: at 3 Hz the lips lagged a frame behind their pixels
SMOOTH_BETA = 3.0  # per interocular unit a second of speed: a moving face is filtered less
LOOKS_PER_SECOND = 4  # how often a lost face is looked for
RECENTRE = 0.15  # the region follows once the face's centre is off by this share of its side
MAX_REGION = 640  # pixels: a larger region is shrunk before meshing (the mesh works at 192)


class FaceTracker:
    """`tracker(frame)` -> (478, 3) landmarks in the frame's pixels, or None (no face there)."""

    def __init__(self, fps: float, face_index: int = 0):
        self.fps, self.face_index = fps, face_index
        self.mesh = LandmarkTracker(static=True)
        self.region: tuple[int, int, int] | None = None  # x0, y0, side
        self.filter: OneEuroFilter | None = None
        self.unit = 1.0
        self.lost_frames = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        if self.region is None and not self._find(frame):
            return None
        landmarks = self._mesh(frame)
        if landmarks is None:  # lost: look again from the next frame
            self.region, self.filter, self.lost_frames = None, None, 0
            return None
        self._follow(landmarks, frame.shape)
        if self.filter is None:
            self.unit = max(interocular(landmarks), 1.0)
            self.filter = OneEuroFilter(self.fps, cutoffs(landmarks), SMOOTH_BETA)
        return self.filter(landmarks.reshape(1, -1) / self.unit).reshape(-1, 3) * self.unit

    def close(self) -> None:
        self.mesh.close()

    def _find(self, frame: np.ndarray) -> bool:
        """Look for the face (every 1/LOOKS_PER_SECOND s while it is lost); set its region."""
        self.lost_frames += 1
        if (self.lost_frames - 1) % max(1, round(self.fps / LOOKS_PER_SECOND)):
            return False
        faces = detect_faces(frame, largest=self.face_index + 1)
        if len(faces) <= self.face_index:
            return False
        self._follow(faces[self.face_index].landmarks, frame.shape, force=True)
        return True

    def _follow(self, landmarks: np.ndarray, shape: tuple, force: bool = False) -> None:
        """Centre the region on the face when it has drifted (or `force`)."""
        lo, hi = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
        centre, face = (lo + hi) / 2, float(max(hi - lo))
        side = int(min(face / MESH_FACE_SHARE, max(shape[:2])))
        if not force and self.region is not None:
            x0, y0, old = self.region
            off = np.abs(centre - (x0 + old / 2, y0 + old / 2)).max() / old
            if off < RECENTRE and 0.8 < side / old < 1.25:
                return
        x0 = int(np.clip(centre[0] - side / 2, 0, max(shape[1] - side, 0)))
        y0 = int(np.clip(centre[1] - side / 2, 0, max(shape[0] - side, 0)))
        self.region = (x0, y0, side)

    def _mesh(self, frame: np.ndarray) -> np.ndarray | None:
        x0, y0, side = self.region
        crop = frame[y0 : y0 + side, x0 : x0 + side]
        scale = min(1.0, MAX_REGION / max(crop.shape[:2]))
        if scale < 1.0:
            from PIL import Image

            h, w = crop.shape[:2]
            crop = np.asarray(
                Image.fromarray(crop).resize((round(w * scale), round(h * scale)), Image.BILINEAR)
            )
        found = self.mesh(crop)
        if found is None:
            return None
        found = found / scale
        found[:, 0] += x0
        found[:, 1] += y0
        return found


def cutoffs(landmarks: np.ndarray) -> np.ndarray:
    """The One Euro filter's cutoff for each coordinate of `landmarks` (478, 3), flattened:
    SPEECH_CUTOFF for points below the nose tip along the face's own vertical, SMOOTH_CUTOFF above."""
    p = landmarks[:, :2]
    down = p[[13, 14]].mean(axis=0) - p[[33, 133, 263, 362]].mean(axis=0)  # eyes' middle to mouth
    below = (p - p[NOSE_TIP]) @ (down / max(np.linalg.norm(down), 1e-6)) > 0
    return np.repeat(np.where(below, SPEECH_CUTOFF, SMOOTH_CUTOFF), landmarks.shape[1])
