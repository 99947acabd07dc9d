"""Tests for tmcli.speech.phones on a real voice: CMU ARCTIC arctic_a0007 (samples/speech.wav).

The expected times below were measured on that clip.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install pocketsphinx)")

from tmcli.core.errors import AudioError  # noqa: E402
from tmcli.speech import alignment  # noqa: E402
from tmcli.speech import phones as phones_module
from tmcli.speech.alignment import align_phones
from tmcli.speech.phones import BILABIALS, SAMPLE_RATE, Phone, recognize_phones  # noqa: E402

from conftest import SPEECH

# CMU ARCTIC a0007. (Not "Not at this particular case, Tom, apologized Whittemore.", which is
# a0002: aligned to this clip that scores -43 per frame against -10 for this one, and
# pocketsphinx's word recogniser hears exactly this sentence.)
TRANSCRIPT = "And you always want to see it in the superlative degree."
DURATION = 4.0
# Measured on arctic_a0007 (the /p/ closure starts at 2.30 s, burst at 2.42 s, vowel at 2.47 s).
P_SUPERLATIVE = (2.30, 2.46)
W_WANT = (1.14, 1.22)
V_SUPERLATIVE = (2.83, 2.94)
SPEECH_START, SPEECH_END = 0.37, 3.49  # leading / trailing silence boundaries
TOL = 0.05  # seconds
ALIGNED = (
    "SIL AE N D Y UW AO L W IY Z W AA N T T AH S IY IH T IH N DH AH S UH P ER L AH T IH V D IH G R IY SIL"
).split()


def _sample_path() -> Path:
    """samples/speech.wav is arctic_a0007; $TM_SAMPLE_SPEECH may point at another copy of it."""
    return Path(os.environ.get("TM_SAMPLE_SPEECH", SPEECH))


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    rate, data = wavfile.read(_sample_path())
    if data.dtype.kind in "iu":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        data = resample_poly(data, SAMPLE_RATE, rate).astype(np.float32)
    return data


@pytest.fixture(scope="module")
def aligned(voice) -> list[Phone]:
    return align_phones(voice, TRANSCRIPT)


@pytest.fixture(scope="module")
def recognized(voice) -> list[Phone]:
    return recognize_phones(voice)


def assert_contiguous(phones: list[Phone], duration: float) -> None:
    assert phones, "empty phone list"
    assert phones[0].start == 0.0
    assert phones[-1].end == pytest.approx(duration, abs=1e-9)
    for a, b in zip(phones, phones[1:]):
        assert a.end == b.start, (a, b)
        assert not (a.label == b.label == "SIL"), "consecutive SILs not merged"
    for p in phones:
        assert p.end > p.start or duration == 0.0, p
        assert p.label == p.label.upper() and not any(c.isdigit() for c in p.label), p
        assert p.label == "SIL" or p.label.isalpha(), p


def only(phones: list[Phone], label: str, lo: float, hi: float) -> Phone:
    """The single phone `label` whose middle lies in [lo, hi]."""
    hits = [p for p in phones if p.label == label and lo <= (p.start + p.end) / 2 <= hi]
    assert len(hits) == 1, (label, lo, hi, hits)
    return hits[0]


# ------------------------------------------------------------ alignment


def test_alignment_is_contiguous_and_has_the_transcript_phones(aligned):
    assert_contiguous(aligned, DURATION)
    assert [p.label for p in aligned] == ALIGNED


def test_alignment_places_labial_consonants(aligned):
    assert BILABIALS & {p.label for p in aligned}
    for label, (start, end) in [("P", P_SUPERLATIVE), ("W", W_WANT), ("V", V_SUPERLATIVE)]:
        p = only(aligned, label, start - TOL, end + TOL)
        assert p.start == pytest.approx(start, abs=TOL), p
        assert p.end == pytest.approx(end, abs=TOL), p
    assert aligned[0].label == "SIL" and aligned[0].end == pytest.approx(SPEECH_START, abs=TOL)
    assert aligned[-1].label == "SIL" and aligned[-1].start == pytest.approx(SPEECH_END, abs=TOL)


def test_unknown_word_is_dropped_with_a_warning(voice):
    with pytest.warns(UserWarning, match="qqzzyx"):
        phones = align_phones(voice, "And you always want to see it in the qqzzyx superlative degree")
    assert_contiguous(phones, DURATION)
    only(phones, "P", P_SUPERLATIVE[0] - TOL, P_SUPERLATIVE[1] + TOL)


def test_punctuation_case_and_hyphens_are_normalised(voice, aligned):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        phones = align_phones(
            voice, "AND you always-want, to \u2018see\u2019 it -- in the SUPERLATIVE degree!"
        )
    assert [p.label for p in phones] == [p.label for p in aligned]


def test_transcript_without_known_words_raises(voice):
    with pytest.raises(AudioError) as info, pytest.warns(UserWarning):
        align_phones(voice, "qqzzyx blorfl")
    assert info.value.hint


def test_transcript_that_cannot_fit_raises(voice):
    with pytest.raises(AudioError) as info:
        align_phones(voice[: SAMPLE_RATE // 2], " ".join(["superlative"] * 40))
    assert info.value.hint


def test_chunked_phone_pass_matches_whole_clip(voice, aligned, monkeypatch):
    """The memory-saving path for long audio, forced onto the short clip."""
    monkeypatch.setattr(phones_module, "MAX_PHONE_PASS_S", 1.0)
    monkeypatch.setattr(phones_module, "CHUNK_S", 1.0)
    phones = align_phones(voice, TRANSCRIPT)
    assert_contiguous(phones, DURATION)
    assert [p.label for p in phones if p.label != "SIL"] == [p for p in ALIGNED if p != "SIL"]
    p = only(phones, "P", P_SUPERLATIVE[0] - TOL, P_SUPERLATIVE[1] + TOL)
    assert p.start == pytest.approx(P_SUPERLATIVE[0], abs=TOL)


def test_chunk_fallback_spreads_phones_over_word_spans(voice, monkeypatch):
    monkeypatch.setattr(phones_module, "MAX_PHONE_PASS_S", 1.0)
    monkeypatch.setattr(alignment, "_phone_pass", lambda *args: None)
    phones = align_phones(voice, TRANSCRIPT)
    assert_contiguous(phones, DURATION)
    assert [p.label for p in phones if p.label != "SIL"] == [p for p in ALIGNED if p != "SIL"]
    only(phones, "P", P_SUPERLATIVE[0] - 2 * TOL, P_SUPERLATIVE[1] + 2 * TOL)


# ------------------------------------------------------------ recognition


def test_recognition_is_contiguous(recognized):
    assert_contiguous(recognized, DURATION)


def test_recognition_hears_speech_and_leading_silence(recognized):
    first = recognized[0]
    assert first.label == "SIL" and first.end == pytest.approx(SPEECH_START, abs=2 * TOL)
    assert recognized[-1].label == "SIL"
    voiced = sum(
        max(0.0, min(p.end, SPEECH_END) - max(p.start, SPEECH_START)) for p in recognized if p.label != "SIL"
    )
    assert voiced / (SPEECH_END - SPEECH_START) > 0.9
    near_p = [
        p
        for p in recognized
        if p.label in BILABIALS and p.start < P_SUPERLATIVE[1] + TOL and p.end > P_SUPERLATIVE[0] - TOL
    ]
    assert near_p, "no bilabial recognised at the /p/ of 'superlative'"


# ------------------------------------------------------------ both


@pytest.mark.parametrize("mode", ["recognize", "align"])
def test_repeated_calls_are_identical_whatever_came_before(voice, mode):
    def run():
        return recognize_phones(voice) if mode == "recognize" else align_phones(voice, TRANSCRIPT)

    first = run()
    assert run() == first
    # decoding other audio in between must not change the result (decoder state is reset)
    noise = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    recognize_phones(noise)
    align_phones(voice[::-1].copy(), "see it")
    assert run() == first


@pytest.mark.parametrize("n", [0, 1, 800])
def test_empty_and_very_short_audio_give_one_sil(voice, n):
    clip = voice[int(2.3 * SAMPLE_RATE) :][:n]
    for phones in (recognize_phones(clip), align_phones(clip, TRANSCRIPT)):
        assert phones == [Phone("SIL", 0.0, n / SAMPLE_RATE)]


@pytest.mark.parametrize("level", [0.0, 1e-4])
def test_silence_gives_sil(level):
    clip = np.random.default_rng(1).normal(0, level, 2 * SAMPLE_RATE).astype(np.float32)
    assert recognize_phones(clip) == [Phone("SIL", 0.0, 2.0)]
    assert align_phones(clip, TRANSCRIPT) == [Phone("SIL", 0.0, 2.0)]


def test_int16_and_column_input_match_float(voice, recognized):
    as_int = np.round(voice * 32767).astype(np.int16)
    assert recognize_phones(as_int) == recognized
    assert recognize_phones(voice[:, None]) == recognized


def test_stereo_and_nan_are_refused(voice):
    with pytest.raises(AudioError):
        recognize_phones(np.stack([voice, voice], axis=1))
    bad = voice.copy()
    bad[100] = np.nan
    with pytest.raises(AudioError):
        align_phones(bad, TRANSCRIPT)


def test_labels_are_normalised():
    assert phones_module._normalize_label("AH0") == "AH"
    assert phones_module._normalize_label("ey1") == "EY"
    for filler in ("<sil>", "SIL", "+NSN+", "+SPN+", "+BREATH+", "</s>", "<s>", "[NOISE]"):
        assert phones_module._normalize_label(filler) == "SIL"
    phones = phones_module.finish(
        [("SIL", 0.0), ("+NSN+", 0.1), ("P", 0.2), ("P", 0.2), ("AA1", 0.3), ("<sil>", 0.5), ("SIL", 0.6)],
        1.0,
    )
    assert phones == [
        Phone("SIL", 0.0, 0.2),
        Phone("P", 0.2, 0.3),
        Phone("AA", 0.3, 0.5),
        Phone("SIL", 0.5, 1.0),
    ]


# ---------------------------------------------------------------- words, then phones


def _contiguous(phones, duration):
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(phones, phones[1:]))


def test_recognised_closures_fill_gaps_but_not_vowels_or_nasals():
    aligned = [
        Phone("SIL", 0, 0.2),
        Phone("AA", 0.2, 0.5),
        Phone("T", 0.5, 0.6),
        Phone("N", 0.6, 0.7),
        Phone("IY", 0.7, 1.0),
    ]
    heard = [
        Phone("P", 0.52, 0.58),  # over a consonant: a closure the words missed -> added
        Phone("B", 0.30, 0.36),  # mid-vowel: a recognition error -> ignored
        Phone("M", 0.62, 0.68),
    ]  # over an aligned N: nasal confusion -> ignored
    out = alignment._add_closures(aligned, heard)
    _contiguous(out, 1.0)
    assert [p.label for p in out] == ["SIL", "AA", "T", "P", "T", "N", "IY"]
    assert alignment._add_closures(out, [Phone("B", 0.53, 0.57)]) == out  # already closed there


def test_without_a_transcript_the_heard_words_are_aligned(voice):
    phones = alignment.speech_phones(voice)
    _contiguous(phones, DURATION)
    p = [ph for ph in phones if ph.label == "P"]
    assert any(abs(ph.start - P_SUPERLATIVE[0]) < TOL for ph in p)  # the /p/ of "superlative"
    assert phones_module.transcribe(voice).startswith("and you always want to see it")
    assert phones_module.transcribe(np.zeros(16000, dtype=np.float32)) == ""
