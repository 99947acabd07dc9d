"""A rendered video held against a reference video of the same speech, frame by frame.

Both videos are read back with the face mesh, each frame on its own (as `tm eval` does), and
every distance is in interocular units of that video's own face, so a render and a reference
of different sizes, crops and people compare. Figures (video / reference where a ratio):
- lip gap: correlation of the inner-lip gaps at lag 0 and at the best lag within MAX_LAG frames
  (+ = the video comes later than the reference); opening scale: 90th percentile of the gap;
- lip shape: mouth width / height (outer lips) over time: correlation and ratio of medians;
- head: yaw, pitch, roll from a rigid fit of the upper face's mesh points (3D) against the first
  frame with a face; spread (std) ratio per axis, and each video's share of head-motion power
  below LOW_HZ;
- blinks: eye gap (upper / lower lid midpoints, both eyes) per frame; depth = 1 - (1st
  percentile) / median, rate = dips below BLINK_CLOSED of the median per minute;
- jitter: mean |2nd difference| of the landmarks, % of the interocular distance;
- mouth interior: inside the inner-lip polygon of frames whose lips are apart (lip gap >= OPEN),
  pixels pooled over the frames, the share of near-black pixels (brightest channel < DARK) and
  of teeth-like ones (bright and unsaturated: HSV value > TEETH_VALUE and saturation <
  TEETH_SATURATION). A flat painted cavity reads as near-black, real mouths as teeth, tongue
  and shade (real recordings 0.00-0.14 near-black);
- with the speech, each video's lip gap ~ loudness correlation (as tm eval's, best lag).
The reference is resampled onto the video's frame times when their fps differ, and both are cut
to the shorter. Figures of one video alone (spread, blinks, jitter) use its own frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmcli.core import audio as audio_mod
from tmcli.tools.evaluate import MAX_LAG as AUDIO_MAX_LAG
from tmcli.tools.evaluate import lag_search, landmark_jitter
from tmcli.tools.face_series import DARK, FaceSeries, read_face_series

MAX_LAG = 4  # frames searched either way for the video / reference offset
OPENING_PERCENTILE = 90  # the lip gap's "how wide it opens"
BLINK_PERCENTILE = 1  # the eye gap's "how far it closes" (robust to one misread frame)
BLINK_CLOSED = (
    0.7  # an eye gap below this share of its median is a blink (the mesh reads a full blink as ~0.6)
)
LOW_HZ = 1.0  # head motion below this counts as slow sway
AXES = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class ReferenceReport:
    frames: int  # frames compared, at the video's fps
    fps: float  # the video's (the reference is resampled onto it)
    reference_fps: float
    face_found: float  # share of the video's frames with a face
    reference_face_found: float
    gap_correlation: float  # lip gap vs the reference's, lag 0
    best_lag: int  # frames within +-MAX_LAG, + = the video comes later than the reference
    gap_correlation_best: float  # at best_lag
    opening_ratio: float  # 90th percentile of the lip gap, video / reference
    shape_correlation: float  # mouth width / height over time, lag 0
    shape_ratio: float  # its medians, video / reference
    yaw_spread_ratio: float  # std of head yaw, video / reference
    pitch_spread_ratio: float
    roll_spread_ratio: float
    head_spread: tuple[float, float, float]  # std of yaw, pitch, roll, degrees
    reference_head_spread: tuple[float, float, float]
    head_low_share: float  # share of head-motion power below LOW_HZ
    reference_head_low_share: float
    blink_depth: float  # 1 - 1st percentile / median of the eye gap
    reference_blink_depth: float
    blink_rate: float  # eye gap dips below BLINK_CLOSED of its median, per minute
    reference_blink_rate: float
    jitter: float  # mean |2nd difference| of the landmarks, % of interocular distance
    reference_jitter: float
    audio_correlation: float  # lip gap ~ speech loudness, best lag within tm eval's (nan without audio)
    reference_audio_correlation: float
    mouth_dark: float  # share of near-black pixels inside the parted lips (nan: never apart)
    reference_mouth_dark: float
    mouth_teeth: float  # share of teeth-like (bright, unsaturated) pixels there
    reference_mouth_teeth: float

    def rows(self) -> list[tuple[str, str, str]]:
        """(measure, video, reference) for a table; a comparison has its figure under video."""

        def f(x: float, fmt: str = "{:.2f}") -> str:
            return "n/a" if np.isnan(x) else fmt.format(x)

        def degrees(spread: tuple[float, float, float]) -> str:
            return " / ".join(f(x, "{:.1f}") for x in spread)

        return [
            (
                "frames (face found)",
                f"{self.frames} ({self.face_found:.0%}) at {self.fps:g} fps",
                f"({self.reference_face_found:.0%}) at {self.reference_fps:g} fps",
            ),
            ("lip gap correlation at lag 0", f(self.gap_correlation), ""),
            (
                f"best lag within +-{MAX_LAG} (+ = video later)",
                f"{self.best_lag:+d} frames ({f(self.gap_correlation_best)})",
                "",
            ),
            ("opening (90th pct of lip gap) ratio", f(self.opening_ratio), ""),
            ("mouth width/height correlation", f(self.shape_correlation), ""),
            ("mouth width/height median ratio", f(self.shape_ratio), ""),
            (
                "head spread ratio yaw / pitch / roll",
                " / ".join(
                    f(x) for x in (self.yaw_spread_ratio, self.pitch_spread_ratio, self.roll_spread_ratio)
                ),
                "",
            ),
            (
                "head spread yaw / pitch / roll (deg)",
                degrees(self.head_spread),
                degrees(self.reference_head_spread),
            ),
            (
                f"head motion power below {LOW_HZ:g} Hz",
                f(self.head_low_share, "{:.0%}"),
                f(self.reference_head_low_share, "{:.0%}"),
            ),
            ("blink depth", f(self.blink_depth), f(self.reference_blink_depth)),
            ("blinks per minute", f(self.blink_rate, "{:.1f}"), f(self.reference_blink_rate, "{:.1f}")),
            ("landmark jitter (% IOD)", f(self.jitter), f(self.reference_jitter)),
            (
                "lip gap ~ loudness correlation",
                f(self.audio_correlation),
                f(self.reference_audio_correlation),
            ),
            (
                f"inside parted lips: near-black (max < {DARK:g})",
                f(self.mouth_dark),
                f(self.reference_mouth_dark),
            ),
            (
                "inside parted lips: teeth-like (bright, unsaturated)",
                f(self.mouth_teeth),
                f(self.reference_mouth_teeth),
            ),
        ]

    def as_dict(self) -> dict:
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return None if isinstance(v, float) and np.isnan(v) else v

        return {k: plain(v) for k, v in asdict(self).items()}


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    return lag_search(x, y, 0)[0]


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 1e-9 and np.isfinite(a) else float("nan")


def low_share(pose: np.ndarray, fps: float) -> float:
    """Share of head-motion power (all three axes, mean removed, Hann window) below LOW_HZ."""
    if len(pose) < 4:
        return float("nan")
    window = np.hanning(len(pose))[:, None]
    power = (np.abs(np.fft.rfft((pose - pose.mean(axis=0)) * window, axis=0)) ** 2).sum(axis=1)[1:]
    freqs = np.fft.rfftfreq(len(pose), 1 / fps)[1:]
    return _ratio(power[freqs < LOW_HZ].sum(), power.sum())


def blinks(eye: np.ndarray, fps: float) -> tuple[float, float]:
    """(depth, per minute) of an eye gap series."""
    median = float(np.median(eye))
    if median <= 1e-9:
        return float("nan"), float("nan")
    depth = 1 - float(np.percentile(eye, BLINK_PERCENTILE)) / median
    closed = eye < BLINK_CLOSED * median
    onsets = int(closed[0]) + int(np.sum(closed[1:] & ~closed[:-1]))
    return max(depth, 0.0), 60 * onsets * fps / len(eye)


def audio_correlation(series: FaceSeries, samples: np.ndarray) -> float:
    n = len(series.gap)
    envelope = audio_mod.envelope_from_db(
        audio_mod.to_video_frames(audio_mod.loudness_db(samples), n, series.fps)
    )
    return lag_search(series.gap, envelope, AUDIO_MAX_LAG)[0]


def compare(video: FaceSeries, reference: FaceSeries, samples: np.ndarray | None = None) -> ReferenceReport:
    """The figures of `video` against `reference` (see the module's docstring)."""
    # 1. cut both to the shorter; the reference onto the video's frame times
    seconds = min(video.seconds, reference.seconds)
    video, reference = video.cut(seconds), reference.cut(seconds)
    times = np.arange(len(video.gap)) / video.fps
    ref = reference.at(times)

    # 2. comparisons on the common frames
    best, lag, _ = lag_search(video.gap, ref["gap"], MAX_LAG)
    opening = _ratio(
        np.percentile(video.gap, OPENING_PERCENTILE), np.percentile(ref["gap"], OPENING_PERCENTILE)
    )
    spread, ref_spread = video.pose.std(axis=0), reference.pose.std(axis=0)

    # 3. each video on its own frames
    depth, rate = blinks(video.eye, video.fps)
    ref_depth, ref_rate = blinks(reference.eye, reference.fps)
    (dark, teeth), (ref_dark, ref_teeth) = video.interior_shares(), reference.interior_shares()
    nan = float("nan")
    return ReferenceReport(
        frames=len(times),
        fps=video.fps,
        reference_fps=reference.fps,
        face_found=float(video.found.mean()),
        reference_face_found=float(reference.found.mean()),
        gap_correlation=_correlation(video.gap, ref["gap"]),
        best_lag=lag,
        gap_correlation_best=best,
        opening_ratio=opening,
        shape_correlation=_correlation(video.shape, ref["shape"]),
        shape_ratio=_ratio(np.median(video.shape), np.median(ref["shape"])),
        yaw_spread_ratio=_ratio(spread[0], ref_spread[0]),
        pitch_spread_ratio=_ratio(spread[1], ref_spread[1]),
        roll_spread_ratio=_ratio(spread[2], ref_spread[2]),
        head_spread=tuple(float(x) for x in spread),
        reference_head_spread=tuple(float(x) for x in ref_spread),
        head_low_share=low_share(video.pose, video.fps),
        reference_head_low_share=low_share(reference.pose, reference.fps),
        blink_depth=depth,
        reference_blink_depth=ref_depth,
        blink_rate=rate,
        reference_blink_rate=ref_rate,
        jitter=landmark_jitter(video.tracks),
        reference_jitter=landmark_jitter(reference.tracks),
        audio_correlation=audio_correlation(video, samples) if samples is not None else nan,
        reference_audio_correlation=audio_correlation(reference, samples) if samples is not None else nan,
        mouth_dark=dark,
        reference_mouth_dark=ref_dark,
        mouth_teeth=teeth,
        reference_mouth_teeth=ref_teeth,
    )


def evaluate_reference(
    video: str | Path, reference: str | Path, audio_path: str | Path | None = None
) -> ReferenceReport:
    """`video` against `reference`, a video of the same speech (and, given it, both against the speech)."""
    samples = audio_mod.load_audio(audio_path) if audio_path is not None else None
    return compare(
        read_face_series(video, "the video"), read_face_series(reference, "the reference"), samples
    )
