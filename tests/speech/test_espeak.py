"""espeak-ng synthesis: phone timings that match the audio, labels the driver knows, random text."""

from __future__ import annotations

import ctypes
import functools
import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from tmcli.core.errors import ConfigError
from tmcli.motion.driver import VISEMES
from tmcli.speech import espeak
from tmcli.speech.phones import SAMPLE_RATE

# words with /p b m/ in each language's own spelling
BILABIAL_TEXT = {"hi": "पा बा मा।", "ru": "па ба ма."}
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def _rms(audio: np.ndarray, start: float, end: float) -> float:
    part = audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
    return float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))


def _check_contiguous(audio: np.ndarray, phones) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert phones[0].start == 0.0
    assert phones[-1].end == pytest.approx(audio.size / SAMPLE_RATE, abs=1e-9)
    for a, b in itertools.pairwise(phones):
        assert a.end == b.start
        assert not (a.label == b.label == "SIL")
    assert all(p.end > p.start for p in phones)
    assert all(p.label in VISEMES for p in phones)


@pytest.mark.parametrize("language", ["en-us", "fr", "hi"])
def test_phones_cover_the_audio(language):
    rng = np.random.default_rng(3)
    audio, phones = espeak.synthesize(espeak.random_text(rng, language, 25), language)
    _check_contiguous(audio, phones)
    assert np.abs(audio).max() <= 1.0
    assert sum(p.label != "SIL" for p in phones) > 25


def test_bilabials_fall_where_the_energy_dips():
    """The timings are the audio's: /p b m/ are quieter than the vowels beside them, and each
    /p/ starts exactly where its closure's silence does (not at espeak's later event)."""
    audio, phones = espeak.synthesize("a map of a pub")
    labels = [p.label for p in phones]
    assert [lab for lab in labels if lab in ("P", "B", "M")] == ["M", "P", "P", "B"]
    for i, phone in enumerate(phones):
        if phone.label not in ("P", "B", "M"):
            continue
        energy = _rms(audio, phone.start, phone.end)
        beside = [_rms(audio, q.start, q.end) for q in phones[max(i - 1, 0) : i + 2] if q.label in VOWELS]
        assert beside and energy < min(beside)
        if phone.label != "M":
            assert energy < 0.3 * min(beside)
        if phone.label == "P":
            assert _rms(audio, phone.start + 0.005, phone.start + 0.025) < 1e-3  # the closure
            assert _rms(audio, phone.start - 0.010, phone.start) > 0.01  # the vowel before it


def test_rate_scales_duration():
    text = "The quick brown fox jumps over the lazy dog, and then it sleeps."
    slow, _ = espeak.synthesize(text, rate=120)
    fast, _ = espeak.synthesize(text, rate=240)
    assert slow.size / fast.size == pytest.approx(2.0, rel=0.15)


def test_variants_exist_and_change_the_voice():
    lib = espeak._engine().lib
    lib.espeak_Info.restype = ctypes.c_char_p
    data = ctypes.c_char_p()
    lib.espeak_Info(ctypes.byref(data))
    variants = Path(data.value.decode()) / "voices" / "!v"
    assert all((variants / name).is_file() for name in espeak.VARIANTS)

    text = "The quick brown fox jumps over the lazy dog."

    def spectrum(variant):
        audio, _ = espeak.synthesize(text, variant=variant)
        return np.log10(welch(audio, SAMPLE_RATE, nperseg=512)[1] + 1e-12)

    base = spectrum(None)
    noise = np.sqrt(np.mean((spectrum(None) - base) ** 2))  # the same voice differs a little run to run
    for variant in ("m3", "f3", "klatt", "whisper"):
        assert np.sqrt(np.mean((spectrum(variant) - base) ** 2)) > max(3 * noise, 0.15), variant


@pytest.mark.parametrize("language", espeak.LANGUAGES)
def test_languages_speak_and_map_every_phoneme(language):
    rng = np.random.default_rng(0)
    _, phonemes = espeak._engine().speak(espeak.random_text(rng, language, 40), language, 175, 50, 50)
    assert len(phonemes) > 40
    assert {espeak.to_driver_label(name) for name, _ in phonemes} <= VISEMES.keys()

    audio, phones = espeak.synthesize(BILABIAL_TEXT.get(language, "pa ba ma."), language)
    _check_contiguous(audio, phones)
    assert _rms(audio, 0.0, audio.size / SAMPLE_RATE) > 0.02
    assert {"P", "B", "M"} <= {p.label for p in phones}


@pytest.mark.parametrize(
    ("mnemonic", "label"),
    [
        ("p", "P"),
        ("p#", "P"),
        ("b:", "B"),
        ("m-", "M"),
        ("f", "F"),
        ("v#", "V"),
        ("T", "TH"),
        ("D", "DH"),
        ("s", "S"),
        ("z", "Z"),
        ("S", "SH"),
        ("Z;", "ZH"),
        ("tS", "CH"),
        ("dZ", "JH"),
        ("ts;", "CH"),
        ("s.", "SH"),
        ("N", "NG"),
        ("n^", "N"),
        ("l^", "L"),
        ("*", "R"),
        ("j", "Y"),
        ("w", "W"),
        ("h", "HH"),
        ("x", "K"),
        ("a", "AA"),
        ("A:", "AA"),
        ("aa", "AA"),
        ("0", "AA"),
        ("a~", "AA"),
        ("'a:", "AA"),
        ("e", "EH"),
        ("E~", "EH"),
        ("i:", "IY"),
        ("I", "IH"),
        ("o", "OW"),
        ("O", "AO"),
        ("oU", "OW"),
        ("u:", "UW"),
        ("U", "UH"),
        ("@", "AH"),
        ("3:", "ER"),
        ("V", "AH"),
        ("y", "UW"),
        ("Y:", "UH"),
        ("2", "UH"),
        ("9~", "UH"),
        ("aI", "AY"),
        ("aU", "AW"),
        ("OI", "OY"),
        ("eI", "EY"),
        ("_", "SIL"),
        ("_:", "SIL"),
        ("_!", "SIL"),
        ("||", "SIL"),
        ("(en)", "SIL"),
        ("4@", "AH"),
        ("!k", "T"),
    ],
)
def test_to_driver_label(mnemonic, label):
    assert espeak.to_driver_label(mnemonic) == label


def test_random_text_is_seeded():
    for language in espeak.LANGUAGES:
        first = espeak.random_text(np.random.default_rng(7), language, 60)
        assert first == espeak.random_text(np.random.default_rng(7), language, 60)
        assert first != espeak.random_text(np.random.default_rng(8), language, 60)
        assert len(first.split()) == 60
        assert first.count(",") + first.count(".") + first.count("।") >= 3  # pauses
    with pytest.raises(ConfigError):
        espeak.random_text(np.random.default_rng(0), "tlh", 3)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        espeak.synthesize("hello", language="no-such-language")
    with pytest.raises(ConfigError):
        espeak.synthesize("hello", variant="no-such-variant")
    with pytest.raises(ConfigError):
        espeak.synthesize("hello", rate=1000)


def test_threads_share_the_library_safely():
    texts = [
        f"number {word}, said the {word} man." for word in ("one", "two", "three", "four", "five", "six")
    ]
    alone = [[p.label for p in espeak.synthesize(t)[1]] for t in texts]
    with ThreadPoolExecutor(4) as pool:
        together = [[p.label for p in phones] for _, phones in pool.map(espeak.synthesize, texts)]
    assert together == alone


def test_the_wheel_library_comes_first():
    """pip brings espeak-ng (espeakng-loader): no system package is needed."""
    import espeakng_loader

    lib, data = espeak._load()
    assert data == espeakng_loader.get_data_path() and lib._name == espeakng_loader.get_library_path()


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # its import fails
    monkeypatch.setattr(espeak, "_LIBRARY_NAMES", ("libespeak-ng-missing.so.0",))
    monkeypatch.setattr(
        espeak, "_engine", functools.cache(espeak._engine.__wrapped__)
    )  # the real one stays loaded
    with pytest.raises(espeak.EspeakError) as caught:
        espeak.synthesize("hello")
    assert "espeak-ng" in caught.value.message
    assert "pip install espeakng-loader" in caught.value.hint
