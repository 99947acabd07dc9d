"""Synthetic speech with exact phone timings, from the espeak-ng C library (through ctypes).

Why espeak-ng: a formant synthesiser (the PyPI wheel `espeakng-loader` ships its library and data),
about 100 languages, voice variants, rate and pitch controls, and it reports every phoneme it speaks
with the sample at which it starts, so the timings are known rather than recognised. A second of
speech takes about 3 ms to make.

How (see espeak-ng's speak_lib.h): synchronous output with phoneme events; the callback gets
int16 audio and events in order; a PHONEME event's `sample` is the count of samples since the
start of the message (its `audio_position` is the same in whole ms). Two things about where
espeak puts a phoneme's event:

* A stop's closure is a run of digital silence that espeak writes *before* the stop's event
  (Generate() in synthesize.c: the prepause, then the marker), so it would count as the
  previous phone; lips close during it. Each stop (and affricate) therefore starts where the
  silence right before its event starts, unless it follows a pause.
* A vowel after a nasal or liquid gets its event after the vowel's onset transition, so the
  nasal or liquid runs 10-30 ms into the vowel (less than a video frame); left as is.

The library is one global state: it is initialised once (lazily) and used under a lock. Its
output is not bit-reproducible within a process: espeak-ng keeps the phase of its pitch flutter
in a static that nothing resets (AdvanceParameters() in wavegen.c), so the same call lasts
up to about 1% longer or shorter depending on what was spoken before (the phones always match
their audio). A fresh process that makes the same calls gets the same output.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import threading

import numpy as np
from scipy.signal import resample_poly

from tmcli.core.errors import ConfigError, EspeakError
from tmcli.speech.mnemonics import _STOPS, to_driver_label
from tmcli.speech.phones import SAMPLE_RATE, SIL, Phone, finish, model_dir

LANGUAGES: tuple[str, ...] = ("en-us", "en", "fr", "de", "es", "it", "pt", "nl", "pl", "hi", "ru", "sv")
VARIANTS: tuple[str, ...] = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "croak",
    "whisper",
)

_LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.1.dylib")
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # without it, missing voice data makes the library call exit()
_EVENT_PHONEME = 7
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER
_POS_CHARACTER = 1
_CHARS_UTF8 = 1


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _load() -> tuple[ctypes.CDLL, str | None]:
    """The library and its data folder: the PyPI wheel espeakng-loader's (a dependency, so
    `pip install` brings it), else a system espeak-ng with its own data (None)."""
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError):
        pass
    for name in _LIBRARY_NAMES:
        try:
            return ctypes.CDLL(name), None
        except OSError:
            continue
    raise EspeakError(
        f"espeak-ng could not be loaded (neither the espeakng-loader package nor {_LIBRARY_NAMES[0]}); "
        "synthetic speech needs it",
        hint="pip install espeakng-loader (or install tm again: it depends on it)",
    )


class _Engine:
    """The initialised library, and what its callback collects during one synthesis."""

    def __init__(self, lib: ctypes.CDLL, data_path: str | None):
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lib, self.lock = lib, threading.Lock()
        path = data_path.encode() if data_path else None
        self.rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if self.rate <= 0:
            raise EspeakError(
                f"espeak-ng failed to initialise (its data: {data_path or 'the system one'})",
                hint="pip install --force-reinstall espeakng-loader",
            )
        self._audio = bytearray()
        self._phonemes: list[tuple[str, int]] = []
        self._callback = _Callback(self._collect)  # kept here: the library holds only a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples: int, events) -> int:
        i = 0
        while events[i].type != 0:  # the list ends with LIST_TERMINATED
            if events[i].type == _EVENT_PHONEME:
                self._phonemes.append((events[i].id.string.decode("utf-8", "replace"), events[i].sample))
            i += 1
        if wav and num_samples > 0:
            self._audio += ctypes.string_at(wav, 2 * num_samples)
        return 0  # go on

    def speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int):
        """(int16 samples at self.rate, [(mnemonic, first sample)])."""
        data = text.replace("\0", " ").encode("utf-8")
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ConfigError(
                    f"espeak-ng has no voice {voice!r}",
                    hint="languages known to work: " + ", ".join(LANGUAGES),
                )
            for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
                self.lib.espeak_SetParameter(parameter, value, 0)
            self._audio, self._phonemes = bytearray(), []
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if status != 0:
                raise EspeakError(f"espeak-ng could not synthesise the text (error {status})")
            return np.frombuffer(bytes(self._audio), dtype=np.int16), self._phonemes


@functools.cache
def _engine() -> _Engine:
    return _Engine(*_load())


# ---------------------------------------------------------------- labels


# ---------------------------------------------------------------- synthesis


def _with_closures(samples: np.ndarray, labels: list[str], starts: list[int]) -> list[int]:
    """Starts moved back over the digital silence that precedes a stop's event (its closure)."""
    last_sound = np.maximum.accumulate(np.where(samples != 0, np.arange(samples.size), -1))
    out = list(starts)
    for i in range(1, len(starts)):
        if labels[i] in _STOPS and labels[i - 1] != SIL and 0 < starts[i] <= samples.size:
            silence_start = int(last_sound[starts[i] - 1]) + 1
            if silence_start > starts[i - 1]:  # never swallow the previous phone
                out[i] = silence_start
    return out


def synthesize(
    text: str,
    language: str = "en-us",
    variant: str | None = None,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
) -> tuple[np.ndarray, list[Phone]]:
    """Speech for `text` and its phones, as the synthesiser made them.

    Audio: float32 mono at 16 kHz (tm's analysis rate), resampled from the library's rate.
    Phones: driver labels (`to_driver_label`), contiguous over [0, duration], pauses and the
    lead-in as SIL (merged). rate: words per minute (80-450); pitch, pitch_range: 0-100.
    """
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"unknown espeak-ng variant {variant!r}", hint="one of: " + ", ".join(VARIANTS))
    for name, value, low, high in (
        ("rate", rate, 80, 450),
        ("pitch", pitch, 0, 100),
        ("pitch_range", pitch_range, 0, 100),
    ):
        if not low <= value <= high:
            raise ConfigError(f"espeak-ng {name} must be in [{low}, {high}], got {value}")
    engine = _engine()
    voice = language if variant is None else f"{language}+{variant}"
    samples, phonemes = engine.speak(text, voice, int(rate), int(pitch), int(pitch_range))
    common = math.gcd(SAMPLE_RATE, engine.rate)
    audio = resample_poly(samples / np.float32(32768), SAMPLE_RATE // common, engine.rate // common)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)  # the filter overshoots full-scale peaks
    labels = [to_driver_label(name) for name, _ in phonemes]
    starts = _with_closures(samples, labels, [sample for _, sample in phonemes])
    items = [(SIL, 0.0)] + [(label, start / engine.rate) for label, start in zip(labels, starts)]
    return audio, finish(items, audio.size / SAMPLE_RATE)


# ---------------------------------------------------------------- text

# per language: consonant and vowel spellings for pseudo-words (CV and CVC syllables)
_LETTERS = {
    "fr": ("p b m f v t d n l r s z k g ch j gn", "a e i o u é ou on an eu"),
    "de": ("p b m f w t d n l r s z k g h sch ch pf", "a e i o u ä ö ü ei au"),
    "es": ("p b m f t d n l r s k g ch j ñ ll", "a e i o u"),
    "it": ("p b m f v t d n l r s z c g", "a e i o u"),
    "pt": ("p b m f v t d n l r s z ch lh nh j", "a e i o u ã õ"),
    "nl": ("p b m f v w t d n l r s z k g ch j h", "a e i o u aa ee oo oe ij ui"),
    "pl": ("p b m f w t d n l r s z k g ch sz cz rz ł", "a e i o u y ą ę ó"),
    "hi": ("प ब म फ भ त द न ल र स क ग ज च श ह व य", "ा ि ी ु ू े ो"),  # vowel signs; none = inherent a
    "ru": ("п б м ф в т д н л р с з к г ш ж ч х", "а е и о у ы я ю"),
    "sv": ("p b m f v t d n l r s k g j h sj", "a e i o u y å ä ö"),
}
_FULL_STOP = {"hi": "।"}


@functools.cache
def _english_words() -> tuple[str, ...]:
    """Plain lower-case words of the CMU dictionary that pocketsphinx ships."""
    with open(os.path.join(model_dir(), "cmudict-en-us.dict"), encoding="utf-8") as f:
        return tuple(w for w in (line.split(" ", 1)[0] for line in f) if re.fullmatch("[a-z]+", w))


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _pseudo_word(rng: np.random.Generator, language: str) -> str:
    consonants, vowels = (letters.split() for letters in _LETTERS[language])
    if language == "hi":
        vowels.append("")  # a bare consonant letter carries the inherent vowel
    syllables = []
    for _ in range(int(rng.integers(1, 4))):
        syllable = _pick(rng, consonants) + _pick(rng, vowels)
        if rng.random() < 0.3:
            syllable += _pick(rng, consonants)
        syllables.append(syllable)
    return "".join(syllables)


def random_text(rng: np.random.Generator, language: str, num_words: int) -> str:
    """`num_words` random words, with commas and full stops now and then so that there are pauses.

    English (en-*): CMU dictionary words. Other LANGUAGES: pseudo-words in the language's
    spelling, so that espeak speaks them with its own letter-to-sound rules and phonemes.
    """
    english = language.split("-")[0] == "en"
    if not english and language not in _LETTERS:
        raise ConfigError(f"no random text for language {language!r}", hint="one of: " + ", ".join(LANGUAGES))
    full_stop = _FULL_STOP.get(language, ".")
    words = []
    for i in range(num_words):
        word = _pick(rng, _english_words()) if english else _pseudo_word(rng, language)
        if i == num_words - 1:
            word += full_stop
        else:
            draw = rng.random()
            word += full_stop if draw < 0.06 else "," if draw < 0.14 else ""
        words.append(word)
    return " ".join(words)


def speech_for_seconds(seconds: float, seed: int = 0) -> np.ndarray:
    """Sentences of random English words in random voices with 0.2-1.5 s pauses, to `seconds`
    of 16 kHz audio: stand-in speech of any length for benchmarks."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * SAMPLE_RATE:
        audio, _ = synthesize(
            random_text(rng, "en-us", int(rng.integers(4, 14))),
            "en-us",
            variant=str(rng.choice(VARIANTS)),
            rate=int(rng.integers(140, 200)),
            pitch=int(rng.integers(30, 70)),
        )
        pause = np.zeros(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE), dtype=np.float32)
        parts += [audio.astype(np.float32), pause]
        total += len(audio) + len(pause)
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
