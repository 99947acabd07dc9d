"""What learned generators hear: per-video-frame features of the speech.

Two views of the same audio, concatenated per frame:
  - acoustic: the log-mel taken relative to the clip's loud frames (so a quiet recording and a
    loud one look alike), loudness, envelope, voicing and pitch;
  - phonetic: which class of phone the frame belongs to: at render time from pocketsphinx
    (the transcript aligned, or the words it recognises plus the closures its phone recogniser
    hears), in training the true phones with recogniser-like errors (data/synth.py). Its
    acoustic model was trained on real voices, so these columns carry over from the synthetic
    training speech to real recordings where the mel alone does not; the generator learns
    from the acoustic columns how far to trust them.
"""

from __future__ import annotations

import numpy as np

from .audio import FEATURE_RATE, N_MELS, AudioFeatures, to_video_frames
from .speech import Phone

FEATURES_VERSION = 2  # bump when anything here changes: data made before must be remade
PHONE_CLASSES: dict[str, frozenset[str]] = {
    "silence": frozenset({"SIL"}),
    "bilabial": frozenset({"P", "B", "M"}),
    "labiodental": frozenset({"F", "V"}),
    "rounded": frozenset({"W", "UW", "UH", "OW", "AO", "OY", "R", "SH", "ZH", "CH", "JH"}),
    "open": frozenset({"AA", "AE", "AH", "AW", "AY"}),
    "spread": frozenset({"EH", "EY", "IH", "IY", "ER", "Y"}),
    "other": frozenset(),  # every other consonant
}
MEL_FLOOR = -3.0  # log-mel floor, 12 nepers (~52 dB) under the loud frames: digital silence sits here
ACOUSTIC_DIM = N_MELS + 4
FEATURE_DIM = ACOUSTIC_DIM + len(PHONE_CLASSES)
_CLASS_OF = {label: i for i, labels in enumerate(PHONE_CLASSES.values()) for label in labels}
_OTHER = list(PHONE_CLASSES).index("other")


def phone_classes(phones: list[Phone], num_frames: int, fps: float) -> np.ndarray:
    """(T, len(PHONE_CLASSES)): the share of each frame's time each class of phone takes."""
    n = int(np.ceil(num_frames / fps * FEATURE_RATE)) + 1
    onehot = np.zeros((n, len(PHONE_CLASSES)))
    onehot[:, 0] = 1.0  # silence until a phone says otherwise
    for ph in phones:
        lo, hi = int(round(ph.start * FEATURE_RATE)), int(round(ph.end * FEATURE_RATE))
        onehot[lo:hi] = 0.0
        onehot[lo:hi, _CLASS_OF.get(ph.label, _OTHER)] = 1.0
    return to_video_frames(onehot, num_frames, fps)


def generator_features(features: AudioFeatures, phones: list[Phone]) -> np.ndarray:
    """(T, FEATURE_DIM) float32 for T = features.num_frames."""
    mel = features.mel.astype(np.float64)
    ref = np.percentile(mel.mean(axis=1), 95) if len(mel) else 0.0
    mel = np.clip((mel - ref) / 4.0, MEL_FLOOR, 3.0)
    extra = np.stack([features.rms_db / 60.0, features.envelope, features.voiced.astype(np.float64),
                      np.clip(features.pitch / 12.0, -2.0, 2.0)], axis=1)
    classes = phone_classes(phones, features.num_frames, features.fps)
    return np.concatenate([mel, extra, classes], axis=1).astype(np.float32)


def silence_features(num_frames: int) -> np.ndarray:
    """generator_features of silence: what frames before a clip's start or past its end hear."""
    row = np.zeros(FEATURE_DIM, dtype=np.float32)
    row[:N_MELS] = MEL_FLOOR
    row[N_MELS] = -1.0
    row[ACOUSTIC_DIM] = 1.0  # the silence class
    return np.tile(row, (num_frames, 1))
