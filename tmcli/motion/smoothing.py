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

from collections.abc import Iterable, Iterator

import numpy as np

from tmcli.core.filters import OneEuroFilter
from tmcli.face.rig import ARTICULATION, CHANNELS

SLOW_CHANNELS = np.array(
    [i for i, name in enumerate(CHANNELS) if name not in ARTICULATION and not name.startswith("eyeBlink")]
)


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
