"""Training windows streamed from a data set, one shard in memory at a time.

The stream is a pure function of (seed, batch index): pass p visits the shards in an order
drawn from (seed, p), and batch j of a shard draws its windows from (seed, p, shard, j). So a
resumed run skips ahead by counting, without reading, and sees exactly the batches it would
have seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from tmcli.speech.features import silence_features
from tmcli.train.shards import read_manifest, read_shard


@dataclasses.dataclass
class Batch:
    motion: torch.Tensor  # (B, W, D) raw motion of the window
    valid: torch.Tensor  # (B, W) bool: frames the loss counts
    context: torch.Tensor  # (B, K, D) raw motion of the K frames before the window
    has_context: torch.Tensor  # (B,) bool
    audio: torch.Tensor  # (B, K + W, F)
    controls: torch.Tensor  # (B, C)
    neutral: torch.Tensor  # (B, D)


class WindowStream:
    def __init__(self, root: str | Path, window: int, context_frames: int, batch_size: int, seed: int = 0):
        self.root = Path(root)
        self.manifest = read_manifest(root)
        if not self.manifest["shards"]:
            raise ValueError(f"{root} holds no clips")
        self.window, self.context, self.batch_size, self.seed = window, context_frames, batch_size, seed
        self.batches_per_shard = [
            max(1, s["frames"] // (window * batch_size)) for s in self.manifest["shards"]
        ]

    def _plan(self, start: int) -> Iterator[tuple[int, int, int]]:
        """(pass, shard, batch in shard) for every batch from `start` on."""
        per_pass = sum(self.batches_per_shard)
        p, skip = divmod(start, per_pass)
        while True:
            for shard in np.random.default_rng([self.seed, p]).permutation(len(self.batches_per_shard)):
                n = self.batches_per_shard[shard]
                if skip >= n:
                    skip -= n
                    continue
                for j in range(skip, n):
                    yield p, int(shard), j
                skip = 0
            p += 1

    def __call__(self, start: int = 0) -> Iterator[Batch]:
        loaded, arrays = None, None
        for p, shard, j in self._plan(start):
            if shard != loaded:
                arrays, loaded = read_shard(self.root, self.manifest["shards"][shard]["file"]), shard
            yield self._batch(arrays, np.random.default_rng([self.seed, p, shard, j]))

    def _batch(self, t: dict[str, np.ndarray], rng: np.random.Generator) -> Batch:
        w, k = self.window, self.context
        offsets = t["frame_offsets"]
        lengths = np.diff(offsets)
        clips = rng.choice(len(lengths), size=self.batch_size, p=lengths / lengths.sum())
        rows = {name: [] for name in ("motion", "valid", "context", "has_context", "audio")}
        for c in clips:
            o, n = offsets[c], lengths[c]
            start = int(rng.integers(0, max(n - w, 0) + 1))
            frames = np.arange(start - k, start + w)
            inside = (frames >= 0) & (frames < n)
            idx = o + np.clip(frames, 0, n - 1)
            audio = t["features"][idx].astype(np.float32)
            audio[~inside] = silence_features(int((~inside).sum()))
            motion = t["motion"][idx]
            valid = (t["valid"][idx] > 0) & inside
            has_context = bool(valid[:k].all())
            if not has_context:
                audio[:k] = silence_features(k)
            rows["motion"].append(motion[k:])
            rows["valid"].append(valid[k:])
            rows["context"].append(motion[:k])
            rows["has_context"].append(has_context)
            rows["audio"].append(audio)
        batch = {name: torch.as_tensor(np.stack(v)) for name, v in rows.items()}
        return Batch(
            controls=torch.as_tensor(t["controls"][clips]),
            neutral=torch.as_tensor(t["neutral"][clips]),
            **batch,
        )
