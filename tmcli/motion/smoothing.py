"""Smoothing of a learned generator's slow motion channels with the One Euro filter
(Casiez, Roussel and Vogel, CHI 2012).

A sampled generator carries its sampling noise from frame to frame. On the 2-step student this
shows as a head that trembles in place: landmark jitter in silence 2.0% of the interocular
distance per frame, against the phonetic driver's 0.34%, nearly all of it head pose. The One
Euro filter is a low-pass whose cutoff rises with the speed of the signal: at rest it removes
the tremor, in a quick nod it lags little. It is causal and keeps one frame of state, so it
streams chunk by chunk at no latency.

Only the slow channels are filtered: head pose, gaze, brows and the eyes' widening and
squinting. Speech moves the mouth and a blink the eyelids faster than any such filter lets
through; smoothing the mouth cost open vowels and correlation, smoothing the eyelids a third
of the blinks (measured on the student; its model card has the figures).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from tmcli.face.rig import ARTICULATION, CHANNELS

SLOW_CHANNELS = np.array(
    [i for i, name in enumerate(CHANNELS) if name not in ARTICULATION and not name.startswith("eyeBlink")]
)


class OneEuroFilter:
    """Per channel: x_hat = a x + (1 - a) x_hat_prev, with a from a cutoff of
    min_cutoff + beta |dx/dt| Hz (dx/dt itself low-passed at derivative_cutoff Hz)."""

    def __init__(self, fps: float, min_cutoff: float, beta: float, derivative_cutoff: float = 1.0):
        self.fps, self.min_cutoff, self.beta = fps, min_cutoff, beta
        self.derivative_alpha = self._alpha(derivative_cutoff)
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        return 1.0 / (1.0 + self.fps / (2 * math.pi * cutoff))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """rows (T, C) -> filtered (T, C), continuing from the rows of the last call."""
        out = np.empty_like(rows)
        for t, x in enumerate(rows):
            if self.value is None:
                self.value, self.speed = x.astype(np.float64), np.zeros(x.shape)
            else:
                speed = (x - self.value) * self.fps
                self.speed = self.speed + self.derivative_alpha * (speed - self.speed)
                alpha = self._alpha(self.min_cutoff + self.beta * np.abs(self.speed))
                self.value = self.value + alpha * (x - self.value)
            out[t] = self.value
        return out


def smooth_slow_channels(
    chunks: Iterable[np.ndarray], fps: float, min_cutoff: float, beta: float
) -> Iterator[np.ndarray]:
    """Motion chunks (frames, MOTION_DIM) -> the same chunks, slow channels filtered.
    min_cutoff 0 passes them through untouched."""
    if min_cutoff <= 0:
        yield from chunks
        return
    slow = OneEuroFilter(fps, min_cutoff, beta)
    for chunk in chunks:
        chunk = np.array(chunk, copy=True)
        chunk[:, SLOW_CHANNELS] = slow(chunk[:, SLOW_CHANNELS])
        yield chunk
