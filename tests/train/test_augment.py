from dataclasses import replace

import numpy as np
import pytest
from scipy import signal

from tmcli.core.audio import SAMPLE_RATE
from tmcli.train import augment as aug

ALL_ON = aug.AugmentSettings(
    probability=1.0,
    noise_probability=1.0,
    reverb_probability=1.0,
    eq_probability=1.0,
    speed_probability=1.0,
    pitch_probability=1.0,
    codec_probability=1.0,
)
OFF = aug.AugmentSettings(
    probability=1.0,
    noise_probability=0.0,
    reverb_probability=0.0,
    eq_probability=0.0,
    speed_probability=0.0,
    pitch_probability=0.0,
    codec_probability=0.0,
    gain_db=(0.0, 0.0),
)


def _speechlike(seconds=2.0, seed=0):
    """Noise bursts (syllables) with pauses between them, at a moderate level."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    gate = (np.sin(2 * np.pi * 4 * np.arange(n) / SAMPLE_RATE) > 0.2) & (np.arange(n) < 0.8 * n)
    voiced = signal.sosfilt(
        signal.butter(2, (150, 3000), "bandpass", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n)
    )
    return (0.3 * voiced * gate).astype(np.float32)


def _band_energy(x, lo, hi):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return spectrum[(freqs >= lo) & (freqs < hi)].sum()


def _db(a, b):
    return 10 * np.log10(a / b)


def test_same_seed_same_result_and_different_seeds_differ():
    x = _speechlike()
    a = aug.augment(x, np.random.default_rng(3), ALL_ON)
    b = aug.augment(x, np.random.default_rng(3), ALL_ON)
    c = aug.augment(x, np.random.default_rng(4), ALL_ON)
    assert np.array_equal(a.audio, b.audio) and a.applied == b.applied and a.time_scale == b.time_scale
    assert not np.array_equal(a.audio[: len(c.audio)], c.audio[: len(a.audio)])


@pytest.mark.parametrize("seed", range(12))
def test_output_contract(seed):
    x = _speechlike(seconds=1.37)
    settings = aug.AugmentSettings(probability=1.0, speed_probability=0.7, pitch_probability=0.0)
    out = aug.augment(x, np.random.default_rng(seed), settings)
    assert out.audio.dtype == np.float32 and out.audio.ndim == 1
    assert len(out.audio) == round(len(x) * out.time_scale)
    assert (out.time_scale != 1.0) == any(name.startswith("speed") for name in out.applied)
    assert 1 / 1.1 - 1e-3 <= out.time_scale <= 1 / 0.9 + 1e-3
    assert np.isfinite(out.audio).all() and np.abs(out.audio).max() <= 1.0


def test_nothing_applied_leaves_the_audio_alone():
    x = _speechlike()
    never = aug.augment(x, np.random.default_rng(0), aug.AugmentSettings(probability=0.0))
    assert np.array_equal(never.audio, x) and never.time_scale == 1.0 and never.applied == ()
    off = aug.augment(x, np.random.default_rng(0), OFF)
    assert np.array_equal(off.audio, x) and off.time_scale == 1.0 and off.applied == ("gain:+0dB",)


def test_applied_names_the_effects_in_chain_order():
    out = aug.augment(_speechlike(), np.random.default_rng(1), ALL_ON)
    kinds = [name.split(":")[0] for name in out.applied]
    assert kinds[:7] == ["speed", "pitch", "reverb", "eq", "noise", "codec", "gain"]
    assert set(kinds[7:]) <= {"softclip"}
    only_noise = aug.augment(
        _speechlike(),
        np.random.default_rng(1),
        aug.AugmentSettings(
            probability=1.0,
            noise_probability=1.0,
            reverb_probability=0.0,
            eq_probability=0.0,
            speed_probability=0.0,
            pitch_probability=0.0,
            codec_probability=0.0,
        ),
    )
    assert [name.split(":")[0] for name in only_noise.applied] == ["noise", "gain"]


@pytest.mark.parametrize("gain", [(-60.0, -60.0), (40.0, 40.0)])
def test_extreme_gains_stay_finite_and_in_range(gain):
    x = _speechlike()
    settings = aug.AugmentSettings(probability=1.0, pitch_probability=0.0, gain_db=gain)
    for seed in range(8):
        out = aug.augment(x, np.random.default_rng(seed), settings)
        assert np.isfinite(out.audio).all() and np.abs(out.audio).max() <= 1.0
    plain = aug.augment(x, np.random.default_rng(0), replace(OFF, gain_db=gain)).audio
    assert np.abs(plain).max() == pytest.approx(1.0 if gain[0] > 0 else 1e-3 * np.abs(x).max(), rel=1e-3)


@pytest.mark.parametrize("kind", aug.NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 12.0, 30.0])
def test_noise_snr_is_measured_against_active_speech(kind, snr):
    x = _speechlike()
    noisy = aug.add_noise(x, np.random.default_rng(5), snr, kind)
    noise = noisy.astype(np.float64) - x
    speech_power = np.mean(x[x != 0].astype(np.float64) ** 2)  # the bursts only, not the pauses
    assert _db(speech_power, np.mean(noise**2)) == pytest.approx(snr, abs=1.0)


def test_noise_colours_differ_in_tilt():
    x = np.zeros(2 * SAMPLE_RATE, np.float32)
    x[:100] = 0.5  # a click, so that the SNR reference is defined
    tilts = {
        kind: _db(
            _band_energy(n := aug.add_noise(x, np.random.default_rng(0), 0.0, kind) - x, 100, 500),
            _band_energy(n, 4000, 8000),
        )
        for kind in ("white", "pink", "brown")
    }
    assert tilts["white"] < tilts["pink"] < tilts["brown"]


def test_telephone_band_limit():
    x = np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE).astype(np.float32)
    y = aug.equalize(x, np.random.default_rng(0), "telephone")
    assert _db(_band_energy(x, 4000, 8000), _band_energy(y, 4000, 8000)) > 20
    assert _db(_band_energy(x, 0, 200), _band_energy(y, 0, 200)) > 20
    assert abs(_db(_band_energy(x, 500, 3000), _band_energy(y, 500, 3000))) < 1.5


@pytest.mark.parametrize("kind", aug.EQ_KINDS)
def test_equalizer_introduces_no_delay(kind):
    x = _speechlike()
    y = aug.equalize(x, np.random.default_rng(2), kind)
    lag = np.argmax(signal.correlate(y, x, method="fft")) - (len(x) - 1)
    assert lag == 0


@pytest.mark.parametrize("seed", range(4))
def test_reverb_has_no_onset_delay_and_lengthens_decay(seed):
    x = _speechlike()
    y = aug.reverberate(x, np.random.default_rng(seed), 0.9)
    assert len(y) == len(x)
    lag = np.argmax(signal.correlate(y, x, method="fft")) - (len(x) - 1)
    assert lag == 0
    end = np.flatnonzero(x)[-1] + 1  # the last burst ends; the dry clip is silent after it
    tail = slice(end + SAMPLE_RATE // 20, end + SAMPLE_RATE // 5)  # 50-200 ms later
    assert np.mean(y[tail] ** 2) > 1e-4 * np.mean(x[x != 0] ** 2)  # within 40 dB of the speech
    short = aug.reverberate(x, np.random.default_rng(seed), 0.15)
    assert np.mean(short[tail] ** 2) < 0.1 * np.mean(y[tail] ** 2)  # a longer rt60 rings longer


def test_room_impulse_response_starts_with_its_direct_path():
    rir = aug.room_impulse_response(np.random.default_rng(0), 0.5)
    assert rir[0] == 1.0 and np.abs(rir[1:]).max() < 1.0 and len(rir) == SAMPLE_RATE // 2


def test_speed_shortens_and_raises_pitch_together():
    tone = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    fast, scale = aug.change_speed(tone, 1.1)
    assert scale == pytest.approx(1 / 1.1) and len(fast) == round(SAMPLE_RATE / 1.1)
    spectrum = np.abs(np.fft.rfft(fast * np.hanning(len(fast)), 8 * len(fast)))
    peak = np.argmax(spectrum) * SAMPLE_RATE / (8 * len(fast))
    assert peak == pytest.approx(440 * 1.1, abs=2.0)


def test_pitch_shift_keeps_length_and_moves_the_tone():
    tone = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    up = aug.shift_pitch(tone, 2.0)
    assert len(up) == len(tone)
    spectrum = np.abs(np.fft.rfft(up * np.hanning(len(up))))
    assert np.argmax(spectrum) == pytest.approx(440 * 2 ** (2 / 12), abs=5)


@pytest.mark.parametrize("bits,mu_law", [(8, True), (5, False)])
def test_quantise_is_coarse_but_keeps_silence_silent(bits, mu_law):
    x = _speechlike()
    y = aug.quantise(x, bits, mu_law)
    assert np.all(y[x == 0] == 0)
    assert len(np.unique(y)) <= 2**bits and 5 < _db(np.mean(x**2), np.mean((y - x) ** 2)) < 50
