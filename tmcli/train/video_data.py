"""Training data for the video backend: talking-face frames with the audio features they go with.

`tm data video MOTION_DATA OUT --portrait P...` renders the motion of each clip of a motion
data set (`tm data synth` or `tm data extract`) onto the portraits with the motion backend
(face rig + mesh warp, square face crops of `size` px), one portrait per clip in turn. The
video backend learns from those frames what the motion backend does from the motion: videos
rendered by the motion backend are the first training set the issue asks for, and real
footage can be added the same way later.

A data set is a folder: manifest.json (format, fps, size, portraits, shards) and
shard-NNNNN.safetensors holding, concatenated over its clips, `frames` uint8 (N, size, size, 3),
`features` float16 (N, F) (tmcli.features.generator_features, one row per frame),
`frame_offsets` int64 (clips + 1,) and `portrait` int64 (clips,), the index of the portrait.
The manifest's `mouth_boxes` give, per portrait, the region its mouth moves in (x0, y0, x1, y1 as
fractions of the frame; crops are aligned, so heads move little within them): training weights
its losses there (`[video] mouth_weight`), where lip sync lives and a uniform loss barely looks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tmcli.core.errors import InputError
from tmcli.face.landmarks import ABOVE_LIPS, BELOW_LIPS, CHIN
from tmcli.speech.features import FEATURES_VERSION
from tmcli.train.shards import read_clips, read_manifest

FORMAT = "tm-video-data"
VERSION = 1
MOUTH_MARGIN = 0.3  # interocular distances around the lips' rest box: the jaw drops and the lips stretch


def mouth_box(landmarks: np.ndarray, unit: float, size: int) -> list[float]:
    """Where a portrait's mouth moves: the rings around its lips and the chin at rest (crop
    pixels), widened by MOUTH_MARGIN interocular distances, as fractions of the frame."""
    points = np.asarray(landmarks)[ABOVE_LIPS + BELOW_LIPS + [CHIN], :2]
    lo, hi = points.min(0) - MOUTH_MARGIN * unit, points.max(0) + MOUTH_MARGIN * unit
    return np.clip(np.concatenate([lo, hi]) / size, 0.0, 1.0).round(4).tolist()


def render_video_dataset(
    motion_data: str | Path,
    out_dir: str | Path,
    portraits: list[Path],
    size: int,
    clips: int | None = None,
    shard_frames: int = 2000,
    on_clip: Callable[[int], None] | None = None,
) -> dict:
    """Render up to `clips` clips of a motion data set into a video data set; returns its manifest."""
    from safetensors.numpy import save_file

    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait

    out = Path(out_dir)
    if out.exists():
        raise InputError(f"{out} exists", hint="give a new folder")
    source = read_manifest(motion_data)
    preset = load_preset("default").with_overrides(output={"size": size, "crop": True})
    faces = [Portrait.load(p, preset) for p in portraits]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "fps": source["fps"],
        "size": size,
        "features_version": FEATURES_VERSION,
        "source": str(Path(motion_data).resolve()),
        "portraits": [str(p) for p in portraits],
        "mouth_boxes": [mouth_box(f.renderer.source, f.renderer.unit, size) for f in faces],
        "clips": 0,
        "frames": 0,
        "shards": [],
    }
    pending: list[tuple[np.ndarray, np.ndarray, int]] = []
    out.mkdir(parents=True)
    try:

        def flush() -> None:
            name = f"shard-{len(manifest['shards']):05d}.safetensors"
            lengths = [len(f) for f, _, _ in pending]
            save_file(
                {
                    "frames": np.concatenate([f for f, _, _ in pending]),
                    "features": np.concatenate([a for _, a, _ in pending]).astype(np.float16),
                    "frame_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    "portrait": np.array([p for _, _, p in pending], dtype=np.int64),
                },
                str(out / name),
            )
            manifest["shards"].append({"file": name, "clips": len(pending), "frames": int(sum(lengths))})
            pending.clear()

        for index, clip in enumerate(read_clips(motion_data)):
            if clips is not None and index >= clips:
                break
            which = index % len(faces)
            frames = np.stack([faces[which].render_frame(row) for row in clip.motion])
            pending.append((frames, clip.features, which))
            manifest["clips"] += 1
            manifest["frames"] += len(frames)
            if sum(len(f) for f, _, _ in pending) >= shard_frames:
                flush()
            if on_clip:
                on_clip(index)
        if pending:
            flush()
        if not manifest["clips"]:
            raise InputError(f"{motion_data} has no clips")
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no partial data set
        raise
    return manifest


def read_video_manifest(root: str | Path) -> dict:
    path = Path(root) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(
            f"{root} is not a tm video data set (no readable manifest.json)",
            hint="make one with `tm data video MOTION_DATA OUT --portrait P`",
        ) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(f"{root} is not a tm video data set of version {VERSION}")
    if manifest.get("features_version") != FEATURES_VERSION:
        raise InputError(
            f"{root} was made with audio features v{manifest.get('features_version')}; "
            f"this tm makes v{FEATURES_VERSION}",
            hint="make it again",
        )
    return manifest


def read_video_clips(root: str | Path) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(frames (T, S, S, 3) uint8, features (T, F) float32, portrait index) per clip, one shard in memory."""
    from safetensors.numpy import load_file

    for shard in read_video_manifest(root)["shards"]:
        t = load_file(str(Path(root) / shard["file"]))
        f = t["frame_offsets"]
        for i in range(shard["clips"]):
            yield (
                t["frames"][f[i] : f[i + 1]],
                t["features"][f[i] : f[i + 1]].astype(np.float32),
                int(t["portrait"][i]),
            )
