"""Dense face landmarks from mediapipe's face mesh (478 points with irises).

mediapipe 0.10.21 ships the face detector and mesh models inside its wheel, so this works on a
fresh machine with no download. Coordinates returned here are pixels: x, y in the image and z
(depth, smaller = nearer the camera) on the same scale as x.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..console import quiet_native_output
from ..errors import NoFaceError

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging, before it loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NUM_LANDMARKS = 478

# Named landmark groups of the mediapipe mesh, ordered along each contour (image left to right
# for the horizontal ones). "Left"/"right" are the subject's, as in ARKit: left = image right.
LIPS_UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIPS_UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIPS_LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
LIPS_LOWER_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
ABOVE_LIPS = [57, 186, 92, 165, 167, 164, 393, 391, 322, 410, 287]  # ring between nose and upper lip
BELOW_LIPS = [57, 43, 106, 182, 83, 18, 313, 406, 335, 273, 287]  # ring between lower lip and chin
RIGHT_EYE_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133]
RIGHT_EYE_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_EYE_UPPER = [362, 398, 384, 385, 386, 387, 388, 466, 263]
LEFT_EYE_LOWER = [362, 382, 381, 380, 374, 373, 390, 249, 263]
RIGHT_EYE_ABOVE = [130, 247, 30, 29, 27, 28, 56, 190, 243]  # crease ring above the upper lid
RIGHT_EYE_BELOW = [130, 25, 110, 24, 23, 22, 26, 112, 243]
LEFT_EYE_ABOVE = [463, 414, 286, 258, 257, 259, 260, 467, 359]
LEFT_EYE_BELOW = [463, 341, 256, 252, 253, 254, 339, 255, 359]
RIGHT_BROW = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
LEFT_BROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
RIGHT_IRIS = [468, 469, 470, 471, 472]  # centre first
LEFT_IRIS = [473, 474, 475, 476, 477]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
CHIN = 152
NOSE_TIP = 1


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray  # (478, 3) pixels
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the landmarks

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the eye corners' midpoints: the face's unit of length (stable under gaze)."""
    right = (landmarks[33, :2] + landmarks[133, :2]) / 2
    left = (landmarks[263, :2] + landmarks[362, :2]) / 2
    return float(np.linalg.norm(left - right))


@lru_cache(maxsize=2)
def _mesh(static: bool, max_faces: int):
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=max_faces,
                                           refine_landmarks=True, min_detection_confidence=0.4)


def _run_mesh(image: np.ndarray, static: bool, max_faces: int) -> list[np.ndarray]:
    h, w = image.shape[:2]
    with quiet_native_output():
        result = _mesh(static, max_faces).process(np.ascontiguousarray(image))
    faces = []
    for face in result.multi_face_landmarks or []:
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float64)
        faces.append(pts)
    return faces


def detect_faces(image: np.ndarray, max_faces: int = 8) -> list[Face]:
    """All faces in an RGB image, largest first.

    Small images are enlarged and tight crops padded before detection: the detector misses
    faces that fill the frame or are only a few dozen pixels wide.
    """
    from PIL import Image

    h, w = image.shape[:2]
    enlarge = max(1.0, 256.0 / min(h, w))  # the detector wants faces of more than a few dozen pixels
    padded = max(enlarge, 384.0 / max(h, w))
    attempts = [(enlarge, 0), (padded, int(0.35 * max(h, w) * padded))]  # (scale, border in pixels)

    for s, pad in attempts:
        img = image
        if s != 1.0:
            img = np.asarray(Image.fromarray(image).resize((round(w * s), round(h * s)), Image.BICUBIC))
        if pad:
            img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = _run_mesh(img, static=True, max_faces=max_faces)
        if found:
            faces = []
            for pts in found:
                pts = pts.copy()
                pts[:, :2] -= pad
                pts /= s
                x0, y0 = pts[:, :2].min(axis=0)
                x1, y1 = pts[:, :2].max(axis=0)
                faces.append(Face(pts, (x0, y0, x1, y1)))
            return sorted(faces, key=lambda f: -f.area)
    return []


def find_face(image: np.ndarray, face_index: int = 0, name: str = "the portrait") -> Face:
    """The face to animate: the largest, or the `face_index`-th by size."""
    faces = detect_faces(image)
    if not faces:
        raise NoFaceError(f"no face found in {name}", hint="use a photo with a clearly visible, roughly frontal face")
    if face_index >= len(faces) or face_index < 0:
        raise NoFaceError(f"--face-index {face_index} asked for, but {name} has {len(faces)} face(s)",
                          hint=f"use 0..{len(faces) - 1}; 0 is the largest")
    return faces[face_index]


class LandmarkTracker:
    """Landmarks frame by frame through a video; None where no face.

    Tracking mode (the default) starts each frame from the last one's face region: fast and
    steady. `static=True` reads every frame on its own, for measurements: tracking reads a
    closure that lasts two or three frames late or not at all."""

    def __init__(self, static: bool = False):
        import mediapipe as mp

        with quiet_native_output():
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                                         refine_landmarks=True, min_detection_confidence=0.4)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        h, w = frame.shape[:2]
        with quiet_native_output():
            result = self._mesh.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        return np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark])

    def close(self) -> None:
        self._mesh.close()
