"""Controls: what a user can ask of a learned generator besides the audio.

Each control is one condition group of the MotionDiT, dropped at random in training so that
classifier-free guidance can strengthen each one on its own. The same vector layout is used
by the training data (the values a synthetic clip was made with, or the values measured on a
real clip) and at render time (the values asked for on the command line).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tmcli.core.errors import ConfigError
from tmcli.face.rig import INDEX, MOTION_DIM

EMOTIONS = ("happy", "sad", "surprised")
GROUPS: dict[str, int] = {"gaze": 2, "emotion": len(EMOTIONS), "pose_intensity": 1, "blink_rate": 1}
CONTROL_DIM = sum(GROUPS.values())
BLINK_SCALE = 30.0  # blinks per minute that map to 1.0 in the vector

# blendshape offsets each emotion adds at full strength (a smile lifts the corners, sadness
# lowers them and raises the inner brows, surprise raises the brows and widens the eyes)
EMOTION_SHAPES: dict[str, dict[str, float]] = {
    "happy": {"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7, "eyeSquintLeft": 0.35, "eyeSquintRight": 0.35},
    "sad": {
        "mouthSmileLeft": -0.45,
        "mouthSmileRight": -0.45,
        "browInnerUp": 0.6,
        "mouthPressLeft": 0.3,
        "mouthPressRight": 0.3,
    },
    "surprised": {
        "browInnerUp": 0.6,
        "browOuterUpLeft": 0.7,
        "browOuterUpRight": 0.7,
        "eyeWideLeft": 0.6,
        "eyeWideRight": 0.6,
        "jawOpen": 0.08,
    },
}


@dataclasses.dataclass(frozen=True)
class Controls:
    gaze: tuple[float, float] = (0.0, 0.0)  # where the eyes rest, x right / y down, [-1, 1]
    emotion: tuple[float, ...] = (0.0,) * len(EMOTIONS)  # strength of each of EMOTIONS, [0, 1]
    pose_intensity: float = 1.0  # head motion relative to a calm speaker (0 = still)
    blink_rate: float = 15.0  # blinks per minute

    def vector(self) -> np.ndarray:
        return np.array(
            [*self.gaze, *self.emotion, self.pose_intensity, self.blink_rate / BLINK_SCALE], dtype=np.float32
        )

    @classmethod
    def from_vector(cls, v: np.ndarray) -> Controls:
        v = [float(x) for x in v]
        return cls((v[0], v[1]), tuple(v[2:5]), v[5], v[6] * BLINK_SCALE)

    def expression_offset(self) -> np.ndarray:
        """(MOTION_DIM,) blendshape offset of this emotion mix."""
        offset = np.zeros(MOTION_DIM, dtype=np.float32)
        for name, strength in zip(EMOTIONS, self.emotion):
            for shape, value in EMOTION_SHAPES[name].items():
                offset[INDEX[shape]] += strength * value
        return offset


def parse_gaze(text: str) -> tuple[float, float]:
    """'0.3,-0.1' -> (0.3, -0.1): where the eyes rest, X,Y in [-1, 1]."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--gaze takes two numbers X,Y, got {text!r}") from None
    return x, y


def parse_emotion(text: str) -> tuple[float, ...]:
    """'neutral', 'happy', 'sad:0.5' or 'happy:0.6,surprised:0.3' -> strengths of EMOTIONS."""
    strengths = dict.fromkeys(EMOTIONS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition(":")
        if name == "neutral" and not value:
            continue
        if name not in strengths:
            raise ConfigError(
                f"unknown emotion {name!r}",
                hint=f"use neutral or {', '.join(EMOTIONS)}, optionally NAME:STRENGTH",
            )
        try:
            strengths[name] = float(value) if value else 1.0
        except ValueError:
            raise ConfigError(f"emotion strength must be a number, got {value!r}") from None
        if not 0.0 <= strengths[name] <= 1.5:
            raise ConfigError(f"emotion strength must be in [0, 1.5], got {strengths[name]}")
    return tuple(strengths[name] for name in EMOTIONS)
