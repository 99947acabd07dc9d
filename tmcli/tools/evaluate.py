"""Lip-sync and stability figures measured on rendered video, with no downloaded judge.

The mouth aperture is read back from the frames with the same face mesh used to build the
portrait, so the figures say what a viewer sees, not what the generator intended:
- offset: the lag (in frames, + = video late) at which aperture best correlates with the speech
  envelope, and that correlation;
- closure: the share of /p b m/ during which the lips are seen closed on at least one frame;
- open vowels: the share of /aa ae ah ao aw ay/ that show an open mouth;
- silence: the share of frames in pauses >= 0.3 s with closed lips, and landmark jitter there;
- stability: how much the picture changes outside the face (mean absolute difference to the
  first frame, 0-255), which catches a warp that drags the background or tears the neck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmcli.core import audio as audio_mod
from tmcli.core.errors import InputError
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.speech.alignment import speech_phones
from tmcli.speech.phones import BILABIALS

CLOSED = 0.035  # inner-lip gap below this (interocular units) counts as closed lips
OPEN = 0.10  # inner-lip gap above this counts as an open mouth
MAX_LAG = 5  # frames searched either way for the audio/video offset
OPEN_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY"}
INNER_PAIRS = [(82, 87), (13, 14), (312, 317)]


@dataclass(frozen=True)
class EvalReport:
    frames: int
    fps: float
    face_found: float  # share of frames with a face
    offset_frames: int
    offset_ms: float  # the correlation peak between frames (parabola through the best three lags)
    correlation: float  # at the offset
    correlation_at_zero: float
    bilabials: int
    bilabial_closed: float
    open_vowels: int
    open_vowel_open: float
    silence_frames: int
    silence_closed: float
    silence_jitter: float  # mean |2nd difference| of landmarks in silence, % of interocular distance
    background_change: float  # mean |frame - first frame| outside the face, 0-255
    phones_from: str

    def rows(self) -> list[tuple[str, str, str]]:
        def pct(x: float) -> str:
            return "n/a" if np.isnan(x) else f"{100 * x:.0f}%"

        return [
            ("frames (face found)", f"{self.frames} ({pct(self.face_found)})", ""),
            ("audio/video offset", f"{self.offset_frames:+d} frames ({self.offset_ms:+.0f} ms)", "|x| <= 1"),
            (
                "aperture~envelope correlation",
                f"{self.correlation:.2f} (at 0: {self.correlation_at_zero:.2f})",
                ">= 0.50",
            ),
            (f"lips closed on /p b m/ (n={self.bilabials})", pct(self.bilabial_closed), ">= 85%"),
            (f"open on open vowels (n={self.open_vowels})", pct(self.open_vowel_open), ">= 80%"),
            (f"closed in silence ({self.silence_frames} frames)", pct(self.silence_closed), ""),
            ("jitter in silence", f"{self.silence_jitter:.2f}% IOD", ""),
            ("change outside the face", f"{self.background_change:.2f} / 255", ""),
            ("phones from", self.phones_from, ""),
        ]

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(self).items()}


def mouth_aperture(landmarks: np.ndarray) -> float:
    """Inner-lip gap in interocular units, averaged over the middle of the mouth."""
    gap = np.mean([landmarks[b, 1] - landmarks[a, 1] for a, b in INNER_PAIRS])
    return float(max(gap, 0.0) / max(L.interocular(landmarks), 1e-6))


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """values (T,) or (T, K) with the frames where no face was found linearly interpolated from
    their neighbours (left as they are if no frame has a face)."""
    if not found.any() or found.all():
        return values
    t, known = np.arange(len(values)), np.flatnonzero(found)
    if values.ndim == 1:
        return np.where(found, values, np.interp(t, known, values[found]))
    filled = np.stack([np.interp(t, known, column[found]) for column in values.T], axis=1)
    return np.where(found[:, None], values, filled)


def landmark_jitter(tracks: list[np.ndarray | None], where: np.ndarray | None = None) -> float:
    """Mean |2nd difference| of the landmarks (x, y), % of the interocular distance, over the
    frames `where` is true for (all by default) that have a face with a face on either side."""
    found = np.array([t is not None for t in tracks])
    where = found if where is None else where & found
    both = where[2:] & where[1:-1] & where[:-2]
    if not both.any():
        return float("nan")
    pts = np.stack([t[:, :2] if t is not None else np.zeros((L.NUM_LANDMARKS, 2)) for t in tracks])
    iod = np.array([L.interocular(t) if t is not None else np.nan for t in tracks])
    second = np.abs(pts[2:] - 2 * pts[1:-1] + pts[:-2]).mean(axis=(1, 2)) / iod[1:-1]
    return float(100 * np.nanmean(second[both]))


def track_video(path: str | Path) -> tuple[float, list[np.ndarray | None], float]:
    """(fps, landmarks per frame, background change) for a video."""
    frames = read_video_frames(path)
    fps = next(frames)
    tracker = L.LandmarkTracker(static=True)  # each frame measured on its own
    tracks: list[np.ndarray | None] = []
    first, mask, diffs = None, None, []
    try:
        for frame in frames:
            lm = tracker(frame)
            tracks.append(lm)
            if first is None and lm is not None:
                first, mask = frame.astype(np.int16), _outside_face(frame.shape, lm)
            elif first is not None and mask.any():
                diffs.append(np.abs(frame.astype(np.int16) - first)[mask].mean())
    finally:
        tracker.close()
    if not tracks:
        raise InputError(f"{path} has no video frames")
    return fps, tracks, float(np.mean(diffs)) if diffs else 0.0


def _outside_face(shape: tuple[int, ...], lm: np.ndarray) -> np.ndarray:
    """Pixels farther than 0.6 interocular distances from the face oval's hull (and the neck below)."""
    from scipy.ndimage import distance_transform_edt
    from skimage.draw import polygon

    inside = np.zeros(shape[:2], dtype=bool)
    oval = lm[L.FACE_OVAL, :2]
    chin = lm[L.CHIN, :2]
    neck = np.array(
        [
            [oval[:, 0].min(), chin[1]],
            [oval[:, 0].max(), chin[1]],
            [oval[:, 0].max(), shape[0]],
            [oval[:, 0].min(), shape[0]],
        ]
    )
    for poly in (oval, neck):
        rr, cc = polygon(poly[:, 1], poly[:, 0], shape[:2])
        inside[rr, cc] = True
    return distance_transform_edt(~inside) > 0.6 * L.interocular(lm)


def _frames_of(start: float, end: float, fps: float, n: int) -> slice:
    a = int(np.floor(start * fps))
    b = max(int(np.ceil(end * fps)), a + 1)
    return slice(max(a, 0), min(b, n))


def _peak_shift(values: list[float], i: int) -> float:
    """Where between samples the peak at index i lies, in (-0.5, 0.5), from a parabola."""
    if not 0 < i < len(values) - 1 or any(np.isnan(values[j]) for j in (i - 1, i, i + 1)):
        return 0.0
    a, b, c = values[i - 1], values[i], values[i + 1]
    curvature = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def _lagged_correlation(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Correlation of x[t] with y[t - lag] (lag > 0: x, the video, comes later)."""
    if lag > 0:
        x, y = x[lag:], y[:-lag]
    elif lag < 0:
        x, y = x[:lag], y[-lag:]
    if len(x) < 3 or x.std() < 1e-9 or y.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def lag_search(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[float, int, list[float]]:
    """(best correlation, its lag, the correlation at every lag from -max_lag to max_lag) of x[t]
    with y[t - lag]: lag > 0 means x comes later. nan and lag 0 when no lag can be measured."""
    lags = range(-max_lag, max_lag + 1)
    corrs = [_lagged_correlation(x, y, lag) for lag in lags]
    valid = [(c, lag) for c, lag in zip(corrs, lags) if not np.isnan(c)]
    best, lag = max(valid) if valid else (float("nan"), 0)
    return float(best), int(lag), corrs


def evaluate_video(video: str | Path, audio_path: str | Path, transcript: str | None = None) -> EvalReport:
    samples = audio_mod.load_audio(audio_path)
    fps, tracks, background = track_video(video)
    n = len(tracks)
    found = np.array([t is not None for t in tracks])
    aperture = fill_missing(np.array([mouth_aperture(t) if t is not None else np.nan for t in tracks]), found)
    envelope = audio_mod.envelope_from_db(audio_mod.to_video_frames(audio_mod.loudness_db(samples), n, fps))

    best, offset, corrs = lag_search(aperture, envelope, MAX_LAG)
    offset_ms = (
        1000 * (offset + _peak_shift(corrs, offset + MAX_LAG)) / fps if not np.isnan(best) else float("nan")
    )

    phones = speech_phones(samples, transcript)
    spans = [(p, _frames_of(p.start, p.end, fps, n)) for p in phones]
    closed = [aperture[s].min() < CLOSED for p, s in spans if p.label in BILABIALS and s.stop > s.start]
    opened = [
        aperture[s].max() > OPEN
        for p, s in spans
        if p.label in OPEN_VOWELS and p.end - p.start >= 0.05 and s.stop > s.start
    ]
    silent = np.zeros(n, dtype=bool)
    for p in phones:
        if p.label == "SIL" and p.end - p.start >= 0.3:
            silent[_frames_of(p.start + 0.1, p.end - 0.1, fps, n)] = True
    silent &= found
    jitter = landmark_jitter(tracks, silent)

    return EvalReport(
        frames=n,
        fps=float(fps),
        face_found=float(found.mean()),
        offset_frames=int(offset),
        offset_ms=float(offset_ms),
        correlation=float(best),
        correlation_at_zero=float(corrs[MAX_LAG]),
        bilabials=len(closed),
        bilabial_closed=float(np.mean(closed)) if closed else float("nan"),
        open_vowels=len(opened),
        open_vowel_open=float(np.mean(opened)) if opened else float("nan"),
        silence_frames=int(silent.sum()),
        silence_closed=float((aperture[silent] < CLOSED).mean()) if silent.any() else float("nan"),
        silence_jitter=jitter,
        background_change=background,
        phones_from="forced alignment" if transcript else "recognised words, aligned",
    )
