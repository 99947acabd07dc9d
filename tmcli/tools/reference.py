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

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmcli.core import audio as audio_mod
from tmcli.core.errors import NoFaceError
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.tools.evaluate import MAX_LAG as AUDIO_MAX_LAG
from tmcli.tools.evaluate import OPEN as LIPS_APART
from tmcli.tools.evaluate import fill_missing, lag_search, landmark_jitter, mouth_aperture, track_video

MAX_LAG = 4  # frames searched either way for the video / reference offset
OPENING_PERCENTILE = 90  # the lip gap's "how wide it opens"
BLINK_PERCENTILE = 1  # the eye gap's "how far it closes" (robust to one misread frame)
BLINK_CLOSED = (
    0.7  # an eye gap below this share of its median is a blink (the mesh reads a full blink as ~0.6)
)
LOW_HZ = 1.0  # head motion below this counts as slow sway
AXES = ("yaw", "pitch", "roll")
# points that move with the skull, not with speech or the eyes: upper face oval, nose, eye corners
RIGID = [
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
    1,
    4,
    5,
    6,
    168,
    197,
    195,
    98,
    327,
    33,
    133,
    263,
    362,
]
MOUTH_CORNERS, MOUTH_TOP, MOUTH_BOTTOM = (61, 291), 0, 17
EYE_LIDS = [(159, 145), (386, 374)]  # (upper, lower) lid midpoints, right and left eye
INNER_LIPS = (
    L.LIPS_UPPER_INNER + L.LIPS_LOWER_INNER[-2:0:-1]
)  # the opening's outline, corner to corner and back
DARK = 0.15  # a pixel is near-black when its brightest channel is below this
TEETH_VALUE, TEETH_SATURATION = 0.55, 0.35  # teeth-like: HSV value above, saturation below


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
