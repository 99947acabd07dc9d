"""Motion curves: tm's motion to and from files that animation tools read.

Two formats, chosen by the file's extension:
- `.json`: tm's own, lossless: fps, the channel names, per frame the head pose, the named
  blendshapes and the gaze, and the portrait's landmarks (image pixels).
- `.csv`: the column layout of Apple's ARKit face capture as Live Link Face writes it
  (Timecode, BlendShapeCount = 61 curves, the 52 ARKit blendshapes in their standard order, head yaw /
  pitch / roll, each eye's yaw / pitch / roll), so the same speech can drive a 3D character
  in Unreal, Unity or Blender. Channels tm does not model are zeros (UNMODELLED); tm's head
  translation and scale have no column and are left out (read back as rest).

Both are written as the motion comes (memory does not grow with the length) to a temporary
file renamed at the end, so a failed render leaves no partial file.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from tmcli.core.errors import InputError
from tmcli.core.media import check_writable, publish, temp_beside
from tmcli.face.rig import BLENDSHAPES, CHANNELS, INDEX, MOTION_DIM, POSE, neutral

FORMAT, VERSION = "tm-motion", 1
ARKIT_BLENDSHAPES = [
    "EyeBlinkLeft",
    "EyeLookDownLeft",
    "EyeLookInLeft",
    "EyeLookOutLeft",
    "EyeLookUpLeft",
    "EyeSquintLeft",
    "EyeWideLeft",
    "EyeBlinkRight",
    "EyeLookDownRight",
    "EyeLookInRight",
    "EyeLookOutRight",
    "EyeLookUpRight",
    "EyeSquintRight",
    "EyeWideRight",
    "JawForward",
    "JawRight",
    "JawLeft",
    "JawOpen",
    "MouthClose",
    "MouthFunnel",
    "MouthPucker",
    "MouthRight",
    "MouthLeft",
    "MouthSmileLeft",
    "MouthSmileRight",
    "MouthFrownLeft",
    "MouthFrownRight",
    "MouthDimpleLeft",
    "MouthDimpleRight",
    "MouthStretchLeft",
    "MouthStretchRight",
    "MouthRollLower",
    "MouthRollUpper",
    "MouthShrugLower",
    "MouthShrugUpper",
    "MouthPressLeft",
    "MouthPressRight",
    "MouthLowerDownLeft",
    "MouthLowerDownRight",
    "MouthUpperUpLeft",
    "MouthUpperUpRight",
    "BrowDownLeft",
    "BrowDownRight",
    "BrowInnerUp",
    "BrowOuterUpLeft",
    "BrowOuterUpRight",
    "CheekPuff",
    "CheekSquintLeft",
    "CheekSquintRight",
    "NoseSneerLeft",
    "NoseSneerRight",
    "TongueOut",
]
HEAD_AND_EYES = [
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
]
CSV_COLUMNS = ["Timecode", "BlendShapeCount", *ARKIT_BLENDSHAPES, *HEAD_AND_EYES]
TM_TO_ARKIT = {name: name[0].upper() + name[1:] for name in BLENDSHAPES}  # tm uses ARKit's names
# gaze: x right / y down of the picture in [-1, 1]; as eye angles, in radians
GAZE_RADIANS = 0.35
EYE_LOOK = {  # ARKit shape -> (gaze axis, sign): looking to the picture's right is the subject's left
    "EyeLookOutLeft": ("gazeX", 1),
    "EyeLookInRight": ("gazeX", 1),
    "EyeLookInLeft": ("gazeX", -1),
    "EyeLookOutRight": ("gazeX", -1),
    "EyeLookDownLeft": ("gazeY", 1),
    "EyeLookDownRight": ("gazeY", 1),
    "EyeLookUpLeft": ("gazeY", -1),
    "EyeLookUpRight": ("gazeY", -1),
}
UNMODELLED = [n for n in ARKIT_BLENDSHAPES if n not in TM_TO_ARKIT.values() and n not in EYE_LOOK]


def motion_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".csv"):
        raise InputError(f"{path}: motion files are .json (tm's own) or .csv (ARKit / Live Link Face)")
    return suffix[1:]


def timecode(frame: int, fps: float) -> str:
    """Live Link Face's HH:MM:SS:FF.mmm."""
    seconds = frame / fps
    whole = int(seconds)
    sub = frame - round(whole * fps)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{sub:02d}.000"


def to_csv_row(frame: int, m: np.ndarray, fps: float) -> list[str]:
    values = dict.fromkeys(ARKIT_BLENDSHAPES + HEAD_AND_EYES, 0.0)
    for name, arkit in TM_TO_ARKIT.items():
        values[arkit] = float(m[INDEX[name]])
    for shape, (axis, sign) in EYE_LOOK.items():
        values[shape] = max(0.0, sign * float(m[INDEX[axis]]))
    values.update(
        HeadYaw=float(m[INDEX["headYaw"]]),
        HeadPitch=float(m[INDEX["headPitch"]]),
        HeadRoll=float(m[INDEX["headRoll"]]),
    )
    for eye in ("LeftEye", "RightEye"):
        values[f"{eye}Yaw"] = float(m[INDEX["gazeX"]]) * GAZE_RADIANS
        values[f"{eye}Pitch"] = float(m[INDEX["gazeY"]]) * GAZE_RADIANS
    # 9 significant digits: a float32 comes back exactly
    return [timecode(frame, fps), str(len(CSV_COLUMNS) - 2)] + [f"{values[c]:.9g}" for c in CSV_COLUMNS[2:]]


def frame_record(m: np.ndarray) -> dict:
    """One frame of tm's JSON: pose, named blendshapes, gaze."""
    return {
        "pose": {name: float(m[INDEX[name]]) for name in POSE},
        "blendshapes": {name: float(m[INDEX[name]]) for name in BLENDSHAPES},
        "gaze": {"x": float(m[INDEX["gazeX"]]), "y": float(m[INDEX["gazeY"]])},
    }


class MotionWriter:
    """Writes motion blocks (frames, MOTION_DIM) to `path` as they come; renamed into place on success."""

    def __init__(
        self, path: str | Path, fps: float, landmarks: np.ndarray | None = None, source: dict | None = None
    ):
        self.path, self.fps = Path(path), fps
        self.format = motion_format(path)
        self.landmarks, self.source = landmarks, source or {}
        self.frames = 0

    def __enter__(self) -> MotionWriter:
        check_writable(self.path)
        self.tmp = temp_beside(self.path, f".partial.{self.format}")
        self.file = open(self.tmp, "w", newline="")
        if self.format == "csv":
            self.csv = csv.writer(self.file)
            self.csv.writerow(CSV_COLUMNS)
        else:  # the header, then frames one by one, then the closing brackets
            head = {
                "format": FORMAT,
                "version": VERSION,
                "fps": self.fps,
                "channels": CHANNELS,
                "pose_units": "radians (yaw, pitch, roll); head x, y in interocular distances; "
                "scale a factor",
                "gaze_units": "[-1, 1], right and down of the picture positive",
                "source": self.source,
                "portrait_landmarks": None
                if self.landmarks is None
                else np.round(self.landmarks, 3).tolist(),
            }
            self.file.write(json.dumps(head)[:-1] + ', "frames": [\n')
        return self

    def write(self, block: np.ndarray) -> None:
        for m in np.asarray(block, dtype=np.float32).reshape(-1, MOTION_DIM):
            if self.format == "csv":
                self.csv.writerow(to_csv_row(self.frames, m, self.fps))
            else:
                self.file.write(("" if self.frames == 0 else ",\n") + json.dumps(frame_record(m)))
            self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.format == "json":
                self.file.write(f'\n], "num_frames": {self.frames}}}\n')
            self.file.close()
            if exc_type is None:
                publish(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def read_motion(path: str | Path, fps: float) -> np.ndarray:
    """A motion file -> motion (frames, MOTION_DIM), checked; `fps` must match a JSON file's."""
    path = Path(path)
    kind = motion_format(path)
    if not path.is_file():
        raise InputError(f"motion file not found: {path}")
    try:
        motion = _read_json(path, fps) if kind == "json" else _read_csv(path)
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the motion file {path}: {str(exc).splitlines()[0]}") from None
    if not len(motion):
        raise InputError(f"the motion file {path} has no frames")
    if not np.isfinite(motion).all():
        raise InputError(f"the motion file {path} holds values that are not numbers (nan or inf)")
    return motion


def _read_json(path: Path, fps: float) -> np.ndarray:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'{path} is not a tm motion file (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise InputError(
            f"{path} is tm motion version {data.get('version')}; this tm reads version {VERSION}"
        )
    if not math.isclose(float(data["fps"]), fps):
        raise InputError(
            f"{path} is {data['fps']:g} fps motion; asked for {fps:g} fps",
            hint=f"render with --fps {data['fps']:g}",
        )
    motion = np.empty((len(data["frames"]), MOTION_DIM), dtype=np.float32)
    for i, frame in enumerate(data["frames"]):
        named = {
            **frame["pose"],
            **frame["blendshapes"],
            "gazeX": frame["gaze"]["x"],
            "gazeY": frame["gaze"]["y"],
        }
        missing = set(CHANNELS) - set(named)
        if missing:
            raise InputError(f"{path}, frame {i}: no {sorted(missing)[0]}")
        motion[i] = [named[c] for c in CHANNELS]
    return motion


def _read_csv(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = [h.strip() for h in next(rows, [])]
        missing = [c for c in ARKIT_BLENDSHAPES + HEAD_AND_EYES[:3] if c not in header]
        if missing:
            raise InputError(f"{path}: not an ARKit / Live Link Face CSV (no column {missing[0]})")
        col = {name: i for i, name in enumerate(header)}
        frames = []
        for row in rows:
            if not row:
                continue
            get = lambda name: float(row[col[name]]) if name in col else 0.0  # noqa: E731
            m = neutral(1)[0].astype(np.float32)
            for name, arkit in TM_TO_ARKIT.items():
                m[INDEX[name]] = get(arkit)
            m[INDEX["headYaw"]], m[INDEX["headPitch"]], m[INDEX["headRoll"]] = (
                get(c) for c in HEAD_AND_EYES[:3]
            )
            yaw = (get("LeftEyeYaw") + get("RightEyeYaw")) / 2
            pitch = (get("LeftEyePitch") + get("RightEyePitch")) / 2
            if yaw or pitch:
                gaze = (yaw / GAZE_RADIANS, pitch / GAZE_RADIANS)
            else:  # no eye angles: from the look shapes
                gaze = tuple(
                    sum(sign * get(s) for s, (a, sign) in EYE_LOOK.items() if a == axis) / 2
                    for axis in ("gazeX", "gazeY")
                )
            m[INDEX["gazeX"]], m[INDEX["gazeY"]] = gaze
            frames.append(m)
    return np.array(frames, dtype=np.float32).reshape(-1, MOTION_DIM)
