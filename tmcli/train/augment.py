"""Degrade clean synthetic speech so that a model trained on it copes with real recordings.

Training speech comes from espeak-ng: dry, noiseless, full-band, always at one level. Real input
comes through rooms, microphones, phone lines, noise and codecs. `augment` applies a random chain of
such degradations in a fixed order: speed/pitch -> reverb -> EQ -> noise -> codec -> gain/clip.
No effect moves speech in time (zero-phase filters, the room's direct path at sample 0), so labels
stay aligned once their times are multiplied by `Augmented.time_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import fft, signal

from tmcli.core.audio import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum")
EQ_KINDS = ("peaking", "telephone", "lowpass", "highpass")
SOFT_CLIP_PROBABILITY = 0.3  # an overloaded clip saturates smoothly (preamp) rather than clipping hard
DRR_DB = (-3.0, 12.0)  # direct-to-reverberant ratio: from across a hall to close to the mic
_FRAME = SAMPLE_RATE // 50  # 20 ms frames for the speech-activity estimate
_ACTIVE_RANGE_DB = 30.0  # frames further below the loudest frame count as pauses
_TELEPHONE = signal.ellip(4, 0.5, 50, (300, 3400), "bandpass", fs=SAMPLE_RATE, output="sos")
_AIR = signal.butter(1, 4000, fs=SAMPLE_RATE, output="sos")  # splits a room's tail into lows and highs


@dataclass(frozen=True)
class AugmentSettings:
    """Chances and ranges of each degradation; the defaults suit training a motion generator."""

    probability: float = 0.8  # chance that a clip is augmented at all
    snr_db: tuple[float, float] = (0.0, 35.0)
    noise_probability: float = 0.6
    reverb_probability: float = 0.5
    rt60: tuple[float, float] = (0.1, 0.9)  # seconds
    eq_probability: float = 0.6
    speed: tuple[float, float] = (0.9, 1.1)  # resampling factor: tempo and pitch together
    speed_probability: float = 0.4
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)  # pitch without tempo change
    pitch_probability: float = 0.3
    gain_db: tuple[float, float] = (-30.0, 6.0)  # applied to every augmented clip
    codec_probability: float = 0.2


@dataclass(frozen=True)
class Augmented:
    """A degraded clip, with what the caller needs to keep its labels aligned."""

    audio: np.ndarray  # float32, SAMPLE_RATE, mono, finite, within [-1, 1]
    time_scale: float  # output / input duration; label times must be multiplied by it
    applied: tuple[str, ...]  # effects applied, in order, e.g. ("speed:1.05x", "noise:pink@12dB")


def active_power(audio: np.ndarray) -> float:
    """Mean power of the frames holding speech: counting pauses would make SNR depend on pause length."""
    n = -(-len(audio) // _FRAME) * _FRAME
    power = np.mean(np.pad(audio.astype(np.float64), (0, n - len(audio))).reshape(-1, _FRAME) ** 2, axis=1)
    if power.size == 0 or power.max() <= 0:
        return 0.0
    return float(power[power >= power.max() * 10 ** (-_ACTIVE_RANGE_DB / 10)].mean())


def change_speed(audio: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """Play `factor` times faster by resampling, so tempo and pitch move together as in faster speech.

    Returns the audio and its time scale: output / input duration, 1/factor as a ratio of small
    integers; the output has exactly round(len(audio) * time_scale) samples.
    """
    ratio = Fraction(factor).limit_denominator(100)
    scale = ratio.denominator / ratio.numerator
    out = signal.resample_poly(audio, ratio.denominator, ratio.numerator)[: round(len(audio) * scale)]
    return out.astype(np.float32), scale


def shift_pitch(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Another voice over the same timing: shift pitch and keep the tempo."""
    import librosa  # slow to import, and only this effect needs it

    return librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=semitones).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room: unit direct path at sample 0, a few early reflections, then a noise tail that
    decays 60 dB in `rt60` seconds (twice as fast above ~4 kHz: air and soft surfaces absorb highs).
    """
    n = max(int(rt60 * SAMPLE_RATE), 2)
    t = np.arange(n) / SAMPLE_RATE
    decay = np.log(1000.0) / rt60  # amplitude falls by 1000 (60 dB) over rt60
    noise = rng.standard_normal(n)
    low = signal.sosfilt(_AIR, noise)
    onset = rng.uniform(0.005, 0.02)  # the diffuse tail builds up after the first reflections
    reverberant = low * np.exp(-decay * t) + (noise - low) * np.exp(-2 * decay * t)
    reverberant *= np.minimum(t / onset, 1)
    count = int(rng.integers(3, 9))
    delays = rng.uniform(0.001, onset, count)
    gains = rng.uniform(0.2, 0.8, count) * rng.choice((-1.0, 1.0), count) * np.exp(-decay * delays)
    np.add.at(reverberant, np.minimum((delays * SAMPLE_RATE).astype(int), n - 1), gains)
    reverberant[0] = 0.0
    drr = rng.uniform(*DRR_DB)
    scale = np.sqrt(10 ** (-drr / 10) / np.sum(reverberant**2))
    reverberant *= min(scale, 0.9 / np.abs(reverberant).max())  # the direct path stays the strongest tap
    reverberant[0] = 1.0
    return reverberant


def reverberate(audio: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Put the talker in a room; the tail past the end is cut and the level kept, to match the dry clip."""
    wet = signal.fftconvolve(audio, room_impulse_response(rng, rt60).astype(np.float32))[: len(audio)]
    wet_power = np.mean(wet.astype(np.float64) ** 2)
    if wet_power > 0:
        wet = wet * np.sqrt(np.mean(audio.astype(np.float64) ** 2) / wet_power)
    return wet.astype(np.float32)


def _biquad(kind: str, freq: float, gain_db: float, q: float) -> np.ndarray:
    """One peaking or shelving section (RBJ audio-EQ cookbook) as an sos row."""
    a, c = 10 ** (gain_db / 40), np.cos(2 * np.pi * freq / SAMPLE_RATE)
    alpha = np.sin(2 * np.pi * freq / SAMPLE_RATE) / (2 * q)
    if kind == "peak":
        b_, a_ = [1 + alpha * a, -2 * c, 1 - alpha * a], [1 + alpha / a, -2 * c, 1 - alpha / a]
    else:
        s, k = (1 if kind == "lowshelf" else -1), 2 * np.sqrt(a) * alpha  # s = -1 mirrors low into high
        b_ = [
            a * ((a + 1) - s * (a - 1) * c + k),
            2 * s * a * ((a - 1) - s * (a + 1) * c),
            a * ((a + 1) - s * (a - 1) * c - k),
        ]
        a_ = [
            (a + 1) + s * (a - 1) * c + k,
            -2 * s * ((a - 1) + s * (a + 1) * c),
            (a + 1) + s * (a - 1) * c - k,
        ]
    return np.array(b_ + a_) / a_[0]


def equalize(audio: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Colour the spectrum as a device does. Filters run forward and backward: zero phase, no delay.

    "peaking": 1-3 random peaking/shelf bands within +-9 dB (cheap microphones, laptops);
    "telephone": 300-3400 Hz; "lowpass": a 3.5-7.5 kHz cut-off (low-rate codecs, resampled audio);
    "highpass": an 80-300 Hz cut-off (small microphones, wind filters).
    """
    if kind == "peaking":  # each pass gets half the gain, since filtering twice doubles it in dB
        sos = np.stack(
            [
                _biquad(
                    str(rng.choice(("peak", "lowshelf", "highshelf"))),
                    np.exp(rng.uniform(np.log(60), np.log(6000))),
                    rng.uniform(-4.5, 4.5),
                    rng.uniform(0.5, 4.0),
                )
                for _ in range(int(rng.integers(1, 4)))
            ]
        )
    elif kind == "telephone":
        sos = _TELEPHONE
    elif kind == "lowpass":
        sos = signal.butter(4, rng.uniform(3500, 7500), fs=SAMPLE_RATE, output="sos")
    elif kind == "highpass":
        sos = signal.butter(4, rng.uniform(80, 300), "highpass", fs=SAMPLE_RATE, output="sos")
    else:
        raise ValueError(f"unknown EQ kind {kind!r}; expected one of {EQ_KINDS}")
    padlen = min(3 * (2 * len(sos) + 1), len(audio) - 1)  # scipy's default, shortened for short clips
    return signal.sosfiltfilt(sos, audio, padlen=padlen).astype(np.float32)


def _white_spectrum(rng: np.random.Generator, count: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectra of `count` white noises of a fast FFT length >= n (prime lengths are slow), and their
    frequencies. Drawing spectra directly saves a forward FFT.
    """
    size = 2 * fft.next_fast_len(-(-n // 2), real=True)  # even, so irfft's default length gives it back
    parts = rng.standard_normal((2, count, size // 2 + 1), dtype=np.float32)
    return parts[0] + 1j * parts[1], fft.rfftfreq(size, 1 / SAMPLE_RATE).astype(np.float32)


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Power falling as 1/f**exponent (0 white, 1 pink, 2 brown); flat below 20 Hz: sound, not drift."""
    spectrum, freqs = _white_spectrum(rng, 1, n)
    return fft.irfft(spectrum[0] * np.maximum(freqs, 20.0) ** (-exponent / 2))[:n]


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """A crowd: 3-6 speech-shaped noises (a spectral hump at 250-1000 Hz), each voice gated at a
    syllable rate (3-6 Hz) and switched on and off at a phrase rate (0.2-1 Hz).
    """
    voices = int(rng.integers(3, 7))
    spectrum, freqs = _white_spectrum(rng, voices, n)
    shape = np.exp(-0.5 * (np.log(np.maximum(freqs, 1.0) / rng.uniform(250, 1000, (voices, 1))) / 0.9) ** 2)
    talk = fft.irfft(spectrum * shape.astype(np.float32))[:, :n]
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    rates = (2 * np.pi * rng.uniform((3, 0.2), (6, 1), (voices, 2))).astype(np.float32).T[..., None]
    phases = rng.uniform(0, 2 * np.pi, (2, voices, 1)).astype(np.float32)
    syllables = (0.5 + 0.5 * np.sin(rates[0] * t + phases[0])) ** 2
    phrases = np.clip(np.sin(rates[1] * t + phases[1]) + 0.5, 0, 1)
    return (talk * syllables * phrases / (talk.std(axis=1, keepdims=True) + 1e-12)).sum(axis=0)


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum (ground loops, lights): 50 or 60 Hz and 9 harmonics of random, falling strength."""
    harmonics = np.arange(1, 11)[:, None]
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE  # one second holds whole cycles of both mains rates
    tones = np.sin(2 * np.pi * rng.choice((50, 60)) * harmonics * t + rng.uniform(0, 2 * np.pi, (10, 1)))
    return np.resize((rng.uniform(0.1, 1, (10, 1)) / harmonics * tones).sum(axis=0), n)


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: float, kind: str) -> np.ndarray:
    """Mix in noise `snr_db` below the speech's active power (pauses excluded): sparse speech not drowned."""
    if kind in ("white", "pink", "brown"):
        noise = _coloured_noise(rng, len(audio), ("white", "pink", "brown").index(kind))
    elif kind in ("babble", "hum"):
        noise = (_babble if kind == "babble" else _hum)(rng, len(audio))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    target = max(active_power(audio), 1e-8) / 10 ** (snr_db / 10)
    noise_power = np.mean(noise.astype(np.float64) ** 2)
    return (audio + noise * np.sqrt(target / noise_power if noise_power > 0 else 0.0)).astype(np.float32)


def quantise(audio: np.ndarray, bits: int, mu_law: bool = False) -> np.ndarray:
    """Round to `bits` bits (mid-tread, so silence stays silent), optionally companded like G.711 mu-law."""
    x = np.clip(audio, -1.0, 1.0)
    if mu_law:
        x = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    steps = 2 ** (bits - 1) - 1
    x = np.round(x * steps) / steps
    if mu_law:
        x = np.sign(x) * np.expm1(np.abs(x) * np.log1p(255)) / 255
    return x.astype(np.float32)


def augment(
    audio: np.ndarray, rng: np.random.Generator, settings: AugmentSettings = AugmentSettings()
) -> Augmented:
    """Apply a random chain of degradations to clean mono speech at SAMPLE_RATE; the same rng state
    gives the same result. Gain is drawn for every augmented clip (gain_db=(0, 0) turns it off).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"augment expects mono audio (1-D), got shape {audio.shape}")
    s = settings
    if rng.random() >= s.probability or audio.size == 0:
        return Augmented(np.clip(audio, -1.0, 1.0), 1.0, ())
    x, time_scale, applied = audio, 1.0, []
    if rng.random() < s.speed_probability:
        x, time_scale = change_speed(x, rng.uniform(*s.speed))
        applied.append(f"speed:{1 / time_scale:.3f}x")
    if rng.random() < s.pitch_probability:
        semitones = rng.uniform(*s.pitch_semitones)
        x = shift_pitch(x, semitones)
        applied.append(f"pitch:{semitones:+.1f}st")
    if rng.random() < s.reverb_probability:
        rt60 = rng.uniform(*s.rt60)
        x = reverberate(x, rng, rt60)
        applied.append(f"reverb:{rt60:.2f}s")
    if rng.random() < s.eq_probability:
        kind = EQ_KINDS[rng.integers(len(EQ_KINDS))]
        x = equalize(x, rng, kind)
        applied.append(f"eq:{kind}")
    if rng.random() < s.noise_probability:
        kind, snr = NOISE_KINDS[rng.integers(len(NOISE_KINDS))], rng.uniform(*s.snr_db)
        x = add_noise(x, rng, snr, kind)
        applied.append(f"noise:{kind}@{snr:.0f}dB")
    if rng.random() < s.codec_probability:
        mu_law = rng.random() < 0.5
        bits = 8 if mu_law else int(rng.integers(5, 11))
        x = quantise(x, bits, mu_law)
        applied.append("codec:mulaw" if mu_law else f"codec:{bits}bit")
    gain = rng.uniform(*s.gain_db)
    x = x * np.float32(10 ** (gain / 20))
    applied.append(f"gain:{gain:+.0f}dB")
    if rng.random() < SOFT_CLIP_PROBABILITY and np.abs(x).max(initial=0) > 1:
        x = np.tanh(x)  # an overloaded preamp saturates smoothly; otherwise the clip below is hard
        applied.append("softclip")
    return Augmented(np.clip(x, -1.0, 1.0).astype(np.float32), time_scale, tuple(applied))
