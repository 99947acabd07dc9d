"""PhoneticDriver: the baseline generator. Phones with timings -> motion curves.

Visemes per phone are blended by dominance functions (Cohen & Massaro's coarticulation: each
phone pulls the lips towards its target with a strength that decays away from it, so lips
anticipate the next phone); the jaw follows the speech envelope so loud syllables open wider;
/p b m/ always reach a full lip closure; prosody drives small nods and brow raises; blinks,
gaze shifts and idle head motion come from a seeded random generator.
"""

from __future__ import annotations

import numpy as np

from tmcli.core.audio import AudioFeatures
from tmcli.core.config import DriverSettings
from tmcli.face.rig import INDEX, neutral
from tmcli.motion.controls import Controls
from tmcli.speech.phones import BILABIALS, Phone

# viseme targets: jaw, close, funnel, pucker, stretch, rollLower, upperUp
_V = dict
VISEMES: dict[str, dict[str, float]] = {
    "SIL": _V(close=1.0),
    "P": _V(close=1.0),
    "B": _V(close=1.0),
    "M": _V(close=1.0),
    "F": _V(jaw=0.05, rollLower=0.8, upperUp=0.3, close=0.3),
    "V": _V(jaw=0.05, rollLower=0.8, upperUp=0.3, close=0.3),
    "TH": _V(jaw=0.15),
    "DH": _V(jaw=0.15),
    "T": _V(jaw=0.12, stretch=0.2),
    "D": _V(jaw=0.12, stretch=0.2),
    "N": _V(jaw=0.12, stretch=0.15),
    "L": _V(jaw=0.18),
    "S": _V(jaw=0.08, stretch=0.3),
    "Z": _V(jaw=0.08, stretch=0.3),
    "SH": _V(jaw=0.1, funnel=0.6, pucker=0.2),
    "ZH": _V(jaw=0.1, funnel=0.6, pucker=0.2),
    "CH": _V(jaw=0.1, funnel=0.5, pucker=0.2),
    "JH": _V(jaw=0.1, funnel=0.5, pucker=0.2),
    "K": _V(jaw=0.2),
    "G": _V(jaw=0.2),
    "NG": _V(jaw=0.15),
    "HH": _V(jaw=0.25),
    "R": _V(jaw=0.12, funnel=0.3, pucker=0.3),
    "W": _V(jaw=0.05, pucker=0.8),
    "Y": _V(jaw=0.1, stretch=0.3),
    "AA": _V(jaw=0.62),
    "AE": _V(jaw=0.5, stretch=0.3),
    "AH": _V(jaw=0.45),
    "AO": _V(jaw=0.52, funnel=0.4),
    "AW": _V(jaw=0.5, funnel=0.3),
    "AY": _V(jaw=0.5),
    "EH": _V(jaw=0.38, stretch=0.3),
    "ER": _V(jaw=0.2, funnel=0.3),
    "EY": _V(jaw=0.32, stretch=0.4),
    "IH": _V(jaw=0.22, stretch=0.4),
    "IY": _V(jaw=0.15, stretch=0.6),
    "OW": _V(jaw=0.35, funnel=0.5, pucker=0.4),
    "OY": _V(jaw=0.4, funnel=0.4),
    "UH": _V(jaw=0.2, pucker=0.5),
    "UW": _V(jaw=0.12, pucker=0.9),
}
KEYS = ["jaw", "close", "funnel", "pucker", "stretch", "rollLower", "upperUp"]
MIN_CLOSURE = 0.08  # s: bilabial closures last 60-120 ms in speech
STRESSED = 0.05  # stress() above this: a stressed syllable (turns and blinks start there)
PHRASE_SEMITONES = 1.0  # a phrase this far above (below) the speaker's median pitch turns the head fully
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def _strength(label: str) -> tuple[float, float]:
    """(dominance, time constant in s): bilabials and labiodentals must be seen, so they win."""
    if label in BILABIALS:
        return 3.0, 0.03
    if label in ("F", "V"):
        return 2.0, 0.03
    if label in VOWELS:
        return 1.0, 0.06
    if label == "SIL":
        return 0.7, 0.05
    return 0.4, 0.04


class PhoneticDriver:
    def __init__(self, settings: DriverSettings = DriverSettings()):
        self.settings = settings

    def __call__(
        self, phones: list[Phone], features: AudioFeatures, seed: int = 0, controls: Controls | None = None
    ) -> np.ndarray:
        """Motion (T, MOTION_DIM) for T = features.num_frames frames, steered by the same
        controls as the learned generators (which learn from this driver's motion)."""
        s = self.settings
        controls = controls or Controls()
        n, fps = features.num_frames, features.fps
        rng = np.random.default_rng(seed)
        times = (np.arange(n) + 0.5) / fps + s.lead
        visemes = self._coarticulate(phones, times)
        motion = neutral(n)
        jaw = visemes["jaw"] * (s.envelope_floor + (1 - s.envelope_floor) * features.envelope) * s.jaw_gain
        close = visemes["close"].copy()
        self._force_closures(phones, close, jaw, fps, s.lead)
        motion[:, INDEX["jawOpen"]] = np.clip(jaw, 0, 1)
        motion[:, INDEX["mouthClose"]] = np.clip(close, 0, 1)
        motion[:, INDEX["mouthFunnel"]] = visemes["funnel"]
        motion[:, INDEX["mouthPucker"]] = visemes["pucker"]
        for side in ("Left", "Right"):
            motion[:, INDEX[f"mouthStretch{side}"]] = 0.6 * visemes["stretch"]
            motion[:, INDEX[f"mouthUpperUp{side}"]] = visemes["upperUp"]
        motion[:, INDEX["mouthRollLower"]] = visemes["rollLower"]
        resumes, emphasis = speech_resumes(features), stress(features)
        self._prosody(motion, features, rng, controls.pose_intensity, resumes, emphasis)
        self._blinks(motion, features, rng, 60.0 / controls.blink_rate, resumes, emphasis)
        self._gaze(motion, fps, rng, *controls.gaze)
        return motion + controls.expression_offset()

    @staticmethod
    def _coarticulate(phones: list[Phone], times: np.ndarray) -> dict[str, np.ndarray]:
        if not phones:
            phones = [Phone("SIL", 0.0, float(times[-1]) + 1.0)]
        total = np.zeros(len(times))
        acc = {k: np.zeros(len(times)) for k in KEYS}
        for ph in phones:
            label = ph.label if ph.label in VISEMES else "AH"
            weight, tau = _strength(label)
            half = (ph.end - ph.start) / 2
            outside = np.maximum(np.abs(times - (ph.start + half)) - half, 0)
            dom = weight * np.exp(-outside / tau)
            total += dom
            for k in KEYS:
                acc[k] += dom * VISEMES[label].get(k, 0.0)
        total = np.maximum(total, 1e-9)
        return {k: v / total for k, v in acc.items()}

    @staticmethod
    def _force_closures(
        phones: list[Phone], close: np.ndarray, jaw: np.ndarray, fps: float, lead: float
    ) -> None:
        """Every /p b m/ shows closed lips for at least MIN_CLOSURE (a single closed frame between
        fast jaw moves is lost to the encoder and to a viewer), centred on the phone."""
        hold = max(1, int(round(MIN_CLOSURE * fps)))
        for ph in phones:
            if ph.label not in BILABIALS:
                continue
            start, end = (ph.start - lead) * fps, (ph.end - lead) * fps  # in frames
            middle = (start + end) / 2
            first = min(int(np.floor(start + 0.25)), int(np.floor(middle - hold / 2 + 0.5)))
            last = max(int(np.ceil(end - 0.25)), first + hold)
            frames = slice(max(first, 0), last)
            close[frames] = 1.0
            jaw[frames] = np.minimum(jaw[frames], 0.05)

    def _prosody(
        self,
        motion: np.ndarray,
        features: AudioFeatures,
        rng: np.random.Generator,
        k: float,
        resumes: list[int],
        emphasis: np.ndarray,
    ) -> None:
        """Head motion tied to the speech, as real speakers move (amplitudes: DriverSettings): the head
        turns at each phrase to a side set by the phrase's pitch, nods on stressed syllables, rises with
        the voice's pitch and sways slowly underneath; k scales it all. Everything but the sway is a
        function of the audio heard so far, so a streaming generator can learn it rather than average
        it away: turns to a random side, or alternating ones, the distilled student kept at a quarter."""
        s, n, fps = self.settings, len(motion), features.fps
        t = np.arange(n) / fps

        def sway(amplitude: float) -> np.ndarray:
            freqs = rng.uniform(0.05, 0.35, 3)
            phases = rng.uniform(0, 2 * np.pi, 3)
            weights = rng.uniform(0.5, 1.0, 3)
            return (
                amplitude
                * (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
                / weights.sum()
            )

        sways = [sway(s.head_sway), sway(0.7 * s.head_sway), sway(0.6 * s.head_sway)]
        breath = rng.uniform(0, 6.3)
        turn = _settle(
            phrase_pitch(features, phrase_starts(features, resumes, emphasis)), s.head_settle * fps
        )
        raised = _settle(
            np.where(features.voiced, np.clip(features.pitch / 4.0, -1, 1), 0.0), s.head_settle * fps
        )
        motion[:, INDEX["headYaw"]] = k * (s.head_turn * turn + sways[0])
        motion[:, INDEX["headPitch"]] = k * (s.head_nod * (emphasis / 0.3 - 0.5 * raised) + sways[1])
        motion[:, INDEX["headRoll"]] = k * (0.3 * s.head_turn * turn + sways[2])
        motion[:, INDEX["headY"]] = k * 0.006 * np.sin(2 * np.pi * 0.25 * t + breath)
        motion[:, INDEX["browInnerUp"]] = (
            self.settings.brow_gain * 0.5 * _smooth(np.clip(raised, 0, 1), 0.15 * fps)
        )

    def _blinks(
        self,
        motion: np.ndarray,
        features: AudioFeatures,
        rng: np.random.Generator,
        interval: float,
        resumes: list[int],
        emphasis: np.ndarray,
    ) -> None:
        """Blinks about `interval` s apart where the speech gives a cue, as real speakers blink: where
        speech resumes after a pause once 0.5 x interval has passed since the last blink, or on a
        stressed syllable once the whole interval has; with no cue for 1-1.5 x interval (silence),
        one comes anyway. Cued blinks a streaming generator can foresee; random ones it averages into
        half blinks. The lids close in 80 ms, stay shut for `blink_hold` s and open in 160 ms."""
        n, fps, hold = len(motion), features.fps, self.settings.blink_hold
        t = np.arange(n) / fps
        blink = np.zeros(n)
        blink_rng = np.random.default_rng(rng.integers(2**32))  # its own stream: the gaze's draws stay put
        resumed = set(resumes)
        stressed = set(np.flatnonzero((emphasis[1:] > STRESSED) & (emphasis[:-1] <= STRESSED)) + 1)
        last, due = -np.inf, blink_rng.uniform(0.5, 1.5) * interval
        for frame in range(n):
            now = frame / fps
            cued = (frame in resumed and now >= last + 0.5 * interval) or (
                frame in stressed and now >= last + interval
            )
            if not (cued or now >= due):
                continue
            shape = np.interp(
                t - now, [0.0, 0.08, 0.08 + hold, 0.24 + hold], [0.0, 1.0, 1.0, 0.0], left=0.0, right=0.0
            )
            blink = np.maximum(blink, shape)
            last, due = now, now + blink_rng.uniform(1.0, 1.5) * interval
        motion[:, INDEX["eyeBlinkLeft"]] = blink
        motion[:, INDEX["eyeBlinkRight"]] = blink

    def _gaze(
        self, motion: np.ndarray, fps: float, rng: np.random.Generator, rest_x: float, rest_y: float
    ) -> None:
        """Fixations held 1-3 s around the resting gaze, with quick saccades between them."""
        n = len(motion)
        gx, gy = np.full(n, rest_x), np.full(n, rest_y)
        start = 0
        while start < n:
            length = int(rng.uniform(1.0, 3.0) * fps)
            gx[start : start + length] += rng.normal(0, 0.12)
            gy[start : start + length] += rng.normal(0, 0.06)
            start += length
        motion[:, INDEX["gazeX"]] = np.clip(_smooth(gx, 0.8), -1, 1)
        motion[:, INDEX["gazeY"]] = np.clip(_smooth(gy, 0.8), -1, 1)


def speech_resumes(features: AudioFeatures, pause: float = 0.2) -> list[int]:
    """Frames where speech begins after a pause of `pause` s or more (the first word included)."""
    starts, quiet = [], pause * features.fps
    for frame, on in enumerate(_speaking(features)):
        if on and quiet >= pause * features.fps:
            starts.append(frame)
        quiet = 0 if on else quiet + 1
    return starts


def phrase_starts(
    features: AudioFeatures, resumes: list[int], emphasis: np.ndarray, longest: float = 2.0
) -> list[int]:
    """Frames where a phrase begins: where speech resumes after a pause (`resumes`), and within a
    long phrase at the first stressed syllable (`emphasis`: stress()) `longest` s after the last."""
    fps, speaking, resumed = features.fps, _speaking(features), set(resumes)
    starts, last = [], -(10**9)
    for frame in range(len(speaking)):
        if frame in resumed or (
            speaking[frame] and frame - last >= longest * fps and emphasis[frame] > STRESSED
        ):
            starts.append(frame)
            last = frame
    return starts


def phrase_pitch(features: AudioFeatures, starts: list[int]) -> np.ndarray:
    """(T,) in [-1, 1]: the mean pitch of the voiced speech heard so far in the current phrase, in
    PHRASE_SEMITONES from the speaker's median; held through pauses. A phrase said higher than the
    speaker's usual turns the head one way, a lower one the other (causal in the audio)."""
    speaking, begins = _speaking(features), set(starts)
    level = np.zeros(features.num_frames)
    total, count, current = 0.0, 0, 0.0
    for frame in range(features.num_frames):
        if frame in begins:
            total, count = 0.0, 0
        if speaking[frame] and features.voiced[frame]:
            total, count = total + features.pitch[frame], count + 1
            current = float(np.clip(total / count / PHRASE_SEMITONES, -1.0, 1.0))
        level[frame] = current
    return level


def _speaking(features: AudioFeatures) -> np.ndarray:
    """(T,) bool: the smoothed envelope says someone is speaking."""
    return _smooth(features.envelope, 0.05 * features.fps) > 0.1


def stress(features: AudioFeatures) -> np.ndarray:
    """How far the envelope rises above its recent level (a causal 0.25 s baseline): peaks on
    stressed syllables, known 0.1 s after they begin."""
    baseline = _settle(features.envelope, 0.25 * features.fps)
    return _smooth(np.clip(features.envelope - baseline, 0, None), 0.04 * features.fps)


def _settle(x: np.ndarray, frames: float) -> np.ndarray:
    """A causal, critically damped approach to `x` (two one-pole filters, time constant `frames`):
    steps become moves that start when the step does and settle within ~4 time constants."""
    from scipy.signal import lfilter

    if frames <= 0 or len(x) < 2:
        return np.asarray(x, dtype=np.float64)
    a = np.exp(-1.0 / frames)
    once = lfilter([1 - a], [1, -a], np.asarray(x, dtype=np.float64), zi=[a * x[0]])[0]
    return lfilter([1 - a], [1, -a], once, zi=[a * once[0]])[0]


def _smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing (edges reflected)."""
    if sigma_frames <= 0 or len(x) < 2:
        return np.asarray(x, dtype=np.float64)
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(x, dtype=np.float64), sigma_frames, mode="nearest")
