"""`tm data extract`: real talking-head videos -> training clips in the synthetic data's format.

Each frame's face-mesh landmarks are fitted (face/fitting.py) with the motion latent that
reproduces them through a FaceRig built from the video's own most closed-lipped frame. Every
frame shares the reference frame's crop alignment, so head motion shows up as pose rather than
being aligned away.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tmcli.core.audio import extract_features, load_audio, num_video_frames
from tmcli.core.errors import InputError, NoFaceError
from tmcli.core.media import read_video_frames
from tmcli.face import landmarks as L
from tmcli.face.align import align_face
from tmcli.face.fitting import fit_motion, lip_gap
from tmcli.face.rig import INDEX, MOTION_DIM, FaceRig
from tmcli.motion.controls import EMOTION_SHAPES, EMOTIONS, Controls
from tmcli.speech.alignment import speech_phones
from tmcli.speech.features import generator_features
from tmcli.train.shards import CLIPS, Clip, ShardWriter

FIT_SIZE = 256  # crop side the fit works in (the ridge weights below are relative to it)
POSE_STD = 0.03  # head-rotation std (rad) that counts as pose intensity 1
BLINK_LEVEL = 0.5


def _track(path: Path) -> tuple[float, list[np.ndarray | None]]:
    """(fps, landmarks per video frame or None where no face)."""
    frames = read_video_frames(path)
    video_fps = next(frames)
    tracker = L.LandmarkTracker()
    try:
        tracks = [None if (lm := tracker(frame)) is None else lm.astype(np.float32) for frame in frames]
    finally:
        tracker.close()
    if not tracks:
        raise InputError(f"{path} has no video frames")
    return video_fps, tracks


def extract_clip(video: str | Path, fps: float = 25.0) -> Clip:
    """One video -> a Clip of its audio, features and fitted motion (`valid` False where no face)."""
    path = Path(video).resolve()
    audio = load_audio(path)
    video_fps, tracks = _track(path)
    faces = [i for i, lm in enumerate(tracks) if lm is not None]
    if not faces:
        raise NoFaceError(f"no face found in any frame of {path}")
    ref = min(faces, key=lambda i: lip_gap(tracks[i]))  # first of the most closed-lipped frames
    alignment = align_face(tracks[ref].astype(np.float64), FIT_SIZE)
    rig = FaceRig(alignment.to_crop(tracks[ref].astype(np.float64)))
    num_frames = num_video_frames(len(audio), fps)
    source = np.round(np.arange(num_frames) * (video_fps or fps) / fps).astype(int)
    motion, valid = np.zeros((num_frames, MOTION_DIM), np.float32), np.zeros(num_frames, bool)
    fitted: dict[int, np.ndarray] = {}
    for k, j in enumerate(source):
        if j < len(tracks) and tracks[j] is not None:
            if j not in fitted:
                fitted[j] = fit_motion(rig, alignment.to_crop(tracks[j].astype(np.float64)))
            motion[k], valid[k] = fitted[j], True
    stat = path.stat()
    return Clip(
        audio=audio,
        features=generator_features(extract_features(audio, fps), speech_phones(audio)),
        motion=motion,
        valid=valid,
        controls=measure_controls(motion, valid, fps),
        neutral=np.zeros(MOTION_DIM, np.float32),
        info={
            "video": str(path),
            "size": stat.st_size,
            "mtime": stat.st_mtime,
            "frames_with_face": len(faces),
        },
    )


def measure_controls(motion: np.ndarray, valid: np.ndarray, fps: float) -> np.ndarray:
    """The Controls vector a clip shows, so real clips carry the same conditions as synthetic ones.

    Emotion strengths are the bounded least-squares mix of tmcli.controls' emotion offsets that
    best explains the mean expression (jawOpen left out: speech dominates it).
    """
    from scipy.optimize import lsq_linear

    seen = motion[valid].astype(np.float64) if valid.any() else np.zeros((1, MOTION_DIM))
    mean = seen.mean(axis=0)
    shapes = sorted({s for offsets in EMOTION_SHAPES.values() for s in offsets} - {"jawOpen"})
    mix = np.array([[EMOTION_SHAPES[e].get(s, 0.0) for e in EMOTIONS] for s in shapes])
    emotion = lsq_linear(mix, mean[[INDEX[s] for s in shapes]], bounds=(0.0, 1.0)).x
    rotation = seen[:, [INDEX["headYaw"], INDEX["headPitch"], INDEX["headRoll"]]]
    blink = np.where(valid, (motion[:, INDEX["eyeBlinkLeft"]] + motion[:, INDEX["eyeBlinkRight"]]) / 2, 0.0)
    above = blink > BLINK_LEVEL
    blinks = int(above[0]) + int(np.sum(above[1:] & ~above[:-1]))
    minutes = max(valid.sum(), 1) / fps / 60
    return Controls(
        gaze=(float(mean[INDEX["gazeX"]]), float(mean[INDEX["gazeY"]])),
        emotion=tuple(float(x) for x in emotion),
        pose_intensity=float(np.sqrt(rotation.var(axis=0).sum()) / POSE_STD),
        blink_rate=blinks / minutes,
    ).vector()


def _key(path: Path) -> tuple[str, int, float]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime


def extract_videos(
    videos: list[Path],
    out_dir: Path,
    fps: float = 25.0,
    on_clip: Callable[[Path, Clip | None], None] | None = None,
) -> int:
    """Append each video's clip to the data set at out_dir; returns the clips added.

    Resumable: videos already listed (same path, size and mtime) are skipped, with on_clip(video,
    None). Clips extracted before a failure are written, so a rerun does not redo them.
    """
    writer = ShardWriter(out_dir, fps, source="extract")  # first: it drops clip lines of unfinished shards
    listed = Path(out_dir) / CLIPS
    lines = listed.read_text().splitlines() if listed.is_file() else []
    done = {(c["video"], c["size"], c["mtime"]) for c in map(json.loads, lines) if "video" in c}
    added = 0
    try:
        for video in videos:
            path = Path(video).resolve()
            if not path.is_file():
                raise InputError(f"video not found: {path}")
            key = _key(path)
            clip = None
            if key not in done:
                clip = extract_clip(path, fps)
                writer.add(clip)
                done.add(key)
                added += 1
            if on_clip:
                on_clip(Path(video), clip)
    finally:
        writer.flush()
    return added
