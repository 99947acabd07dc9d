"""The training-data format shared by `tm data synth` and `tm data extract`.

A data set is a folder:

    manifest.json          format, version, fps, channel names, feature settings, the list of
                           shards with their clip and frame counts, per-channel motion statistics
    clips.jsonl            one line per clip: id, shard, index in the shard, seconds, source
                           details (text, voice, augmentation, video path, ...)
    shard-00000.safetensors
                           the clips of one shard, concatenated:
                             audio          int16 (samples,)      16 kHz speech as heard
                             audio_offsets  int64 (clips + 1,)
                             features       float16 (frames, F)   tmcli.features.generator_features
                             motion         float32 (frames, D)   motion latents (face/rig.py)
                             valid          uint8 (frames,)       0 where no face was found
                             frame_offsets  int64 (clips + 1,)
                             controls       float32 (clips, C)    tmcli.controls vector per clip
                             neutral        float32 (clips, D)    the face's resting motion

A shard is closed (written whole, then listed in the manifest) once it holds `shard_mb` of
data, so a writer that is stopped loses at most the shard it was filling and can resume from
the manifest. Readers load one shard at a time: memory does not grow with the data set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from tmcli.core.audio import SAMPLE_RATE
from tmcli.core.errors import InputError
from tmcli.face.rig import CHANNELS, MOTION_DIM
from tmcli.motion.controls import CONTROL_DIM
from tmcli.speech.features import FEATURE_DIM, FEATURES_VERSION

FORMAT = "tm-motion-data"
VERSION = 1
MANIFEST = "manifest.json"
CLIPS = "clips.jsonl"


@dataclasses.dataclass
class Clip:
    """One talking clip: audio, per-frame features and motion, and how it was made."""

    audio: np.ndarray  # float32 (samples,) at SAMPLE_RATE
    features: np.ndarray  # float32 (T, FEATURE_DIM)
    motion: np.ndarray  # float32 (T, MOTION_DIM)
    valid: np.ndarray  # bool (T,)
    controls: np.ndarray  # float32 (CONTROL_DIM,)
    neutral: np.ndarray  # float32 (MOTION_DIM,)
    info: dict = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        t = len(self.motion)
        if self.features.shape != (t, FEATURE_DIM) or self.motion.shape != (t, MOTION_DIM):
            raise ValueError(
                f"clip arrays disagree: features {self.features.shape}, motion {self.motion.shape}"
            )
        if (
            self.valid.shape != (t,)
            or self.controls.shape != (CONTROL_DIM,)
            or self.neutral.shape != (MOTION_DIM,)
        ):
            raise ValueError("clip valid/controls/neutral have the wrong shape")


def _manifest_header(fps: float, source: str) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "fps": fps,
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "features": {"version": FEATURES_VERSION, "dim": FEATURE_DIM},
        "control_dim": CONTROL_DIM,
        "shards": [],
        "clips": 0,
        "frames": 0,
        "stats": None,
    }


def read_manifest(root: str | Path) -> dict:
    """The manifest of a data set, checked against what this version of tm reads."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{root} is not a tm data set (no {MANIFEST})",
            hint="make one with `tm data synth` or `tm data extract`",
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(
            f"{root} holds data of format {manifest.get('format')} v{manifest.get('version')}, "
            f"tm reads {FORMAT} v{VERSION}"
        )
    if (
        manifest["features"] != {"version": FEATURES_VERSION, "dim": FEATURE_DIM}
        or manifest["channels"] != CHANNELS
    ):
        raise InputError(
            f"{root} was made with other audio features or motion channels",
            hint="make the data again with this version of tm",
        )
    return manifest


class ShardWriter:
    """Appends clips to a data set, a shard at a time; reopening an existing set resumes it."""

    def __init__(self, root: str | Path, fps: float, source: str, shard_mb: float = 200.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_bytes = int(shard_mb * 2**20)
        if (self.root / MANIFEST).is_file():
            self.manifest = read_manifest(self.root)
            if self.manifest["fps"] != fps:
                raise InputError(f"{root} holds {self.manifest['fps']} fps data; asked for {fps}")
            self._drop_unlisted_clips()
        else:
            self.manifest = _manifest_header(fps, source)
            self._write_manifest()
        self._pending: list[Clip] = []
        self._pending_bytes = 0
        self._sums = np.zeros((3, MOTION_DIM))  # count, sum, sum of squares (for the stats)
        stats = self.manifest["stats"]
        if stats:
            n = stats["frames"]
            mean, std = np.array(stats["mean"]), np.array(stats["std"])
            self._sums = np.stack([np.full(MOTION_DIM, n), mean * n, (std**2 + mean**2) * n])

    @property
    def num_clips(self) -> int:
        """Clips safely on disk (in closed shards)."""
        return self.manifest["clips"]

    def add(self, clip: Clip) -> None:
        clip.check()
        self._pending.append(clip)
        self._pending_bytes += clip.audio.size * 2 + clip.features.size * 2 + clip.motion.size * 4
        if self._pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the pending clips as a shard and list it in the manifest."""
        if not self._pending:
            return
        from safetensors.numpy import save_file

        index = len(self.manifest["shards"])
        name = f"shard-{index:05d}.safetensors"
        clips = self._pending
        tensors = {
            "audio": np.concatenate(
                [np.clip(c.audio * 32767, -32768, 32767).astype(np.int16) for c in clips]
            ),
            "audio_offsets": np.cumsum([0] + [len(c.audio) for c in clips]).astype(np.int64),
            "features": np.concatenate([c.features for c in clips]).astype(np.float16),
            "motion": np.concatenate([c.motion for c in clips]).astype(np.float32),
            "valid": np.concatenate([c.valid for c in clips]).astype(np.uint8),
            "frame_offsets": np.cumsum([0] + [len(c.motion) for c in clips]).astype(np.int64),
            "controls": np.stack([c.controls for c in clips]).astype(np.float32),
            "neutral": np.stack([c.neutral for c in clips]).astype(np.float32),
        }
        tmp = self.root / (name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, self.root / name)
        with open(self.root / CLIPS, "a") as f:
            f.writelines(
                json.dumps(
                    {
                        "id": self.manifest["clips"] + i,
                        "shard": name,
                        "index": i,
                        "seconds": round(len(c.audio) / SAMPLE_RATE, 3),
                        **c.info,
                    }
                )
                + "\n"
                for i, c in enumerate(clips)
            )
        valid_motion = tensors["motion"][tensors["valid"] > 0].astype(np.float64)
        self._sums += np.stack(
            [np.full(MOTION_DIM, len(valid_motion)), valid_motion.sum(0), (valid_motion**2).sum(0)]
        )
        frames = len(tensors["motion"])
        self.manifest["shards"].append(
            {"file": name, "clips": len(clips), "frames": frames, "bytes": (self.root / name).stat().st_size}
        )
        self.manifest["clips"] += len(clips)
        self.manifest["frames"] += frames
        n, total, squares = self._sums
        mean = total / np.maximum(n, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(n, 1) - mean**2, 0.0))
        self.manifest["stats"] = {"frames": int(n[0]), "mean": mean.tolist(), "std": std.tolist()}
        self._write_manifest()
        self._pending, self._pending_bytes = [], 0

    def _write_manifest(self) -> None:
        tmp = self.root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, self.root / MANIFEST)

    def _drop_unlisted_clips(self) -> None:
        """A writer stopped between writing a shard's clip lines and its manifest entry leaves
        lines the manifest does not count: drop them, their shard is rewritten on resume."""
        path = self.root / CLIPS
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) != self.manifest["clips"]:
            path.write_text("".join(lines[: self.manifest["clips"]]))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()


def read_shard(root: str | Path, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(root) / name))


def read_clips(root: str | Path):
    """Every clip of a data set, in order, one shard in memory at a time."""
    manifest = read_manifest(root)
    for shard in manifest["shards"]:
        t = read_shard(root, shard["file"])
        a, f = t["audio_offsets"], t["frame_offsets"]
        for i in range(shard["clips"]):
            yield Clip(
                audio=t["audio"][a[i] : a[i + 1]].astype(np.float32) / 32767,
                features=t["features"][f[i] : f[i + 1]].astype(np.float32),
                motion=t["motion"][f[i] : f[i + 1]],
                valid=t["valid"][f[i] : f[i + 1]] > 0,
                controls=t["controls"][i],
                neutral=t["neutral"][i],
            )
