"""The One Euro filter (Casiez, Roussel and Vogel, CHI 2012): a causal low-pass whose cutoff rises
with the signal's speed, so it removes tremor at rest and lags little in a quick move. It keeps one
frame of state and streams at no latency. Used on a generator's slow channels (motion/smoothing.py)
and on a tracked face's landmarks (face/tracking.py)."""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    """Per channel: x_hat = a x + (1 - a) x_hat_prev, with a from a cutoff of
    min_cutoff + beta |dx/dt| Hz (dx/dt itself low-passed at derivative_cutoff Hz); min_cutoff may be
    one per channel."""

    def __init__(
        self, fps: float, min_cutoff: float | np.ndarray, beta: float, derivative_cutoff: float = 1.0
    ):
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
