"""tm eval's offset estimate: whole frames from the correlation peak, and where between frames it lies."""

import numpy as np

from tmcli.tools.evaluate import MAX_LAG, _lagged_correlation, _peak_shift


def test_offset_between_frames_is_found_from_the_correlation_peak():
    rng = np.random.default_rng(0)
    t = np.arange(400)
    envelope = np.convolve(rng.random(420), np.hanning(9), mode="same")[:400]
    for delay in (-1.3, -0.4, 0.0, 0.3, 1.45):  # frames the video comes after the audio
        video = np.interp(t - delay, t, envelope)
        corrs = [_lagged_correlation(video, envelope, lag) for lag in range(-MAX_LAG, MAX_LAG + 1)]
        best = int(np.argmax(corrs))
        estimate = best - MAX_LAG + _peak_shift(corrs, best)
        assert abs(estimate - delay) < 0.15, (delay, estimate)


def test_peak_shift_stays_within_half_a_sample():
    assert _peak_shift([0.1, 0.5, 0.1], 1) == 0.0
    assert 0 < _peak_shift([0.1, 0.5, 0.45], 1) < 0.5
    assert _peak_shift([0.5, 0.6], 0) == 0.0  # at the edge: no parabola
