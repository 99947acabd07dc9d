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

from tmcli.core.console import quiet_native_output
from tmcli.core.errors import NoFaceError

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
# fmt: off
FACE_OVAL = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
    149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
]
# fmt: on
CHIN = 152
NOSE_TIP = 1


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray  # (478, 3) pixels
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the landmarks

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """The larger side of the box, pixels."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the eye corners' midpoints: the face's unit of length (stable under gaze)."""
    right = (landmarks[33, :2] + landmarks[133, :2]) / 2
    left = (landmarks[263, :2] + landmarks[362, :2]) / 2
    return float(np.linalg.norm(left - right))


MIN_FACE = 48  # pixels: the smallest face `detect_faces` promises to find, at any image size
MAX_FACES = 32  # faces listed and counted by --face-index; a crowd's smaller faces beyond are left out
MESH_MIN_FACE_SHARE = (
    0.2  # the mesh's own detector finds all faces this share of the image's larger side (1/8 measured)
)
DETECTOR_INPUT = 192  # side of the full-range face detector's input, pixels
DETECTOR_MIN_FACE = 18  # smallest face it finds reliably in that input (measured: 10-14 px is hit and miss)
FINEST_WINDOW = MIN_FACE * DETECTOR_INPUT // DETECTOR_MIN_FACE  # window side at which a MIN_FACE face is seen
MESH_FACE_SHARE = 0.5  # a face found by the detector is meshed in a crop it fills half of, ...
MESH_CROP = 256  # ... resized to this side: the mesh's own detector finds it, neither too small nor too tight


@lru_cache(maxsize=2)
def _mesh(static: bool, max_faces: int):
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True, min_detection_confidence=0.4
    )


@lru_cache(maxsize=1)
def _detector():
    import mediapipe as mp

    return mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


def _run_mesh(image: np.ndarray, static: bool, max_faces: int) -> list[np.ndarray]:
    h, w = image.shape[:2]
    with quiet_native_output():
        result = _mesh(static, max_faces).process(np.ascontiguousarray(image))
    faces = []
    for face in result.multi_face_landmarks or []:
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float64)
        faces.append(pts)
    return faces


def _face(pts: np.ndarray) -> Face:
    x0, y0 = pts[:, :2].min(axis=0)
    x1, y1 = pts[:, :2].max(axis=0)
    return Face(pts, (float(x0), float(y0), float(x1), float(y1)))


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BICUBIC))


def _whole_image_faces(image: np.ndarray, max_faces: int) -> list[Face]:
    """The fast path: the mesh over the whole picture, for faces of MESH_MIN_FACE_SHARE or more.

    Small images are enlarged and tight crops padded first: the mesh's detector misses faces
    that fill the frame or are only a few dozen pixels wide."""
    h, w = image.shape[:2]
    enlarge = max(1.0, 256.0 / min(h, w))  # the detector wants faces of more than a few dozen pixels
    padded = max(enlarge, 384.0 / max(h, w))
    attempts = [(enlarge, 0), (padded, int(0.35 * max(h, w) * padded))]  # (scale, border in pixels)
    for s, pad in attempts:
        img = _resized(image, s)
        if pad:
            img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = _run_mesh(img, static=True, max_faces=max_faces)
        if found:
            return [_face(np.concatenate([pts[:, :2] - pad, pts[:, 2:]], axis=1) / s) for pts in found]
    return []


def _windows(h: int, w: int, side: int):
    """Square windows of `side` (clipped to the image) at half-side strides: every face up to
    side / 2 lies wholly inside one."""

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        return sorted(set(list(range(0, length - side, side // 2)) + [length - side]))

    for y in starts(h):
        for x in starts(w):
            yield x, y, min(side, w - x), min(side, h - y)


def _detections(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes (x0, y0, x1, y1, pixels) the full-range detector finds in an RGB image."""
    h, w = image.shape[:2]
    with quiet_native_output():
        result = _detector().process(np.ascontiguousarray(image))
    boxes = []
    for det in result.detections or []:
        b = det.location_data.relative_bounding_box
        boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return boxes


def _mesh_in_box(image: np.ndarray, box: tuple[float, float, float, float], max_faces: int) -> Face | None:
    """Landmarks of the face the detector boxed: a square crop around it, scaled so the mesh's own
    detector finds it, meshed, mapped back to image pixels. The face nearest the crop's centre."""
    h, w = image.shape[:2]
    cx, cy = _centre(box)
    half = max(box[2] - box[0], box[3] - box[1]) / MESH_FACE_SHARE / 2
    x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
    x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
    scale = MESH_CROP / (2 * half)
    crop = _resized(image[y0:y1, x0:x1], scale)
    centre = np.array([cx - x0, cy - y0]) * scale
    if not any(_inside(centre, b) for b in _detections(crop)):
        return None  # seen large, it is no face (a button, a pattern): the mesh would fit one anyway
    found = _run_mesh(crop, static=True, max_faces=max_faces)
    if not found:
        return None
    pts = min(found, key=lambda p: np.linalg.norm(p[:, :2].mean(axis=0) - centre)) / scale
    pts[:, 0] += x0
    pts[:, 1] += y0
    return _face(pts)


def _inside(point: tuple[float, float] | np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _same_face(a: Face, b: Face) -> bool:
    return _inside(_centre(a.box), b.box) or _inside(_centre(b.box), a.box)


def detect_faces(image: np.ndarray, max_faces: int = MAX_FACES, largest: int | None = None) -> list[Face]:
    """All faces of at least MIN_FACE pixels in an RGB image, largest first.

    1. The mesh over the whole image (fast; finds every face wider than a fifth of the image).
    2. The full-range detector over windows from the whole image down to FINEST_WINDOW, coarse
       to fine, so a face of MIN_FACE is a dozen detector pixels wherever it is in any photo.
    3. Each box not inside a face already found is meshed in its own enlarged crop.
    `largest=n` stops once the n largest faces are certain (a window finds every face bigger
    than DETECTOR_MIN_FACE of its DETECTOR_INPUT, so finer ones only add smaller faces): that is
    all `find_face` needs, and a portrait whose face fills a fifth of it costs the mesh alone.
    """
    h, w = image.shape[:2]
    faces = _whole_image_faces(image, max_faces)
    tried: list[tuple[float, float, float, float]] = []  # boxes meshed, found or not
    certain = MESH_MIN_FACE_SHARE * max(h, w)  # every face at least this large (pixels) is found
    side = max(h, w)
    while certain > MIN_FACE and len(faces) < max_faces:
        faces.sort(key=lambda f: -f.area)
        if largest and len(faces) >= largest and faces[largest - 1].size >= certain:
            break
        for x, y, ww, wh in _windows(h, w, side):
            for bx0, by0, bx1, by1 in _detections(image[y : y + wh, x : x + ww]):
                box = (x + bx0, y + by0, x + bx1, y + by1)
                if any(_inside(_centre(box), b) for b in [f.box for f in faces] + tried):
                    continue
                tried.append(box)
                face = _mesh_in_box(image, box, max_faces)
                if face is not None and not any(_same_face(face, f) for f in faces):
                    faces.append(face)
        certain = side * DETECTOR_MIN_FACE / DETECTOR_INPUT
        side = max(FINEST_WINDOW, side // 2)
    return sorted(faces, key=lambda f: -f.area)[:max_faces]


def find_face(image: np.ndarray, face_index: int = 0, name: str = "the portrait") -> Face:
    """The face to animate: the largest, or the `face_index`-th by size."""
    faces = detect_faces(image, largest=face_index + 1)
    if not faces:
        raise NoFaceError(
            f"no face found in {name}", hint="use a photo with a clearly visible, roughly frontal face"
        )
    if face_index >= len(faces) or face_index < 0:
        raise NoFaceError(
            f"--face-index {face_index} asked for, but {name} has {len(faces)} face(s)",
            hint=f"use 0..{len(faces) - 1}; 0 is the largest",
        )
    return faces[face_index]


class LandmarkTracker:
    """Landmarks frame by frame through a video; None where no face.

    Tracking mode (the default) starts each frame from the last one's face region: fast and
    steady. `static=True` reads every frame on its own, for measurements: tracking reads a
    closure that lasts two or three frames late or not at all."""

    def __init__(self, static: bool = False):
        import mediapipe as mp

        with quiet_native_output():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.4
            )

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        h, w = frame.shape[:2]
        with quiet_native_output():
            result = self._mesh.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        return np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark])

    def close(self) -> None:
        self._mesh.close()
