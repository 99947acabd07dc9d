"""Phones force-aligned to words: `align_phones` (a transcript's, with pocketsphinx's two
alignment passes, in chunks for long audio) and `speech_phones`, the phones the lips follow
(the transcript's, or the recognised words', with any /p b m/ the phone recogniser heard and
the words missed). See phones.py for why pocketsphinx and how it is driven."""

from __future__ import annotations

import re
import warnings

import numpy as np

from tmcli.core.errors import AudioError
from tmcli.speech import phones
from tmcli.speech.phones import BILABIALS, SIL, Phone

_VOWELS = frozenset(
    {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
)
_OTHER_NASALS = frozenset({"N", "NG"})
_VOWEL_CORE = 0.04  # s: a closure heard this far inside an aligned vowel is taken as a recognition error


def _dictionary_words(decoder, transcript: str) -> list[str]:
    """Transcript -> words the dictionary knows; unknown ones dropped with a warning."""
    text = transcript.replace("\u2019", "'").replace("\u2018", "'").lower()
    words: list[str] = []
    dropped: list[str] = []
    for token in re.findall(r"[\w'\-]+", text):
        token = token.strip("'-_")
        if not token:
            continue
        if decoder.lookup_word(token) is not None:
            words.append(token)
            continue
        parts = [p for p in re.split(r"[-_]+", token) if p]
        if len(parts) > 1 and all(decoder.lookup_word(p) is not None for p in parts):
            words.extend(parts)
            continue
        base = token[:-2] if token.endswith("'s") else token.replace("'", "")
        if base and decoder.lookup_word(base) is not None:
            words.append(base)
            continue
        dropped.append(token)
    if dropped:
        warnings.warn(
            "not in the pronunciation dictionary, left out of the alignment: " + ", ".join(dropped),
            stacklevel=3,
        )
    return words


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "+", "["))


def _base_word(word: str) -> str:
    return re.sub(r"\(\d+\)$", "", word)


def _word_pass(decoder, raw: bytes, words: list[str]) -> list[tuple[str, int, int]] | None:
    """First pass: [(word, first frame, last frame)], fillers included, or None on failure."""
    try:
        decoder.set_align_text(" ".join(words))
        phones.decode(decoder, raw)
        if decoder.hyp() is None:
            return None
        return [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()]
    except RuntimeError:
        return None


def _phone_pass(decoder, raw: bytes, words: list[str]) -> tuple[list[tuple[str, float]], int] | None:
    """Both passes on one stretch of audio: ([(phone, start s)], words aligned) or None on failure.

    The search can end on a partial path (fewer words than given, e.g. when the
    audio stops mid-word); callers compare the count with len(words).
    """
    try:
        if _word_pass(decoder, raw, words) is None:
            return None
        decoder.set_alignment()
        phones.decode(decoder, raw)
        alignment = decoder.get_alignment()
        if alignment is None:
            return None
        items, n_words = [], 0
        for word in alignment:
            n_words += not _is_filler(word.name)
            items.extend((phone.name, phone.start / phones.FRAME_RATE) for phone in word)
        return items, n_words
    except RuntimeError:
        return None


def _even_phones(decoder, word: str, start: float, end: float) -> list[tuple[str, float]]:
    pron = (decoder.lookup_word(word) or "").split() or [SIL]
    step = (end - start) / len(pron)
    return [(p, start + i * step) for i, p in enumerate(pron)]


def _chunks(segs: list[tuple[str, int, int]]) -> list[tuple[int, int, list[tuple[str, int, int]]]]:
    """Cut first-pass segments into (first frame, end frame, segments) chunks of about phones.CHUNK_S.

    A cut goes in the middle of a pause once a chunk is phones.CHUNK_S long, so that
    each chunk starts and ends in silence (alignment is then unaffected by the
    cut); with no pause by 2 x phones.CHUNK_S, at a word boundary.
    """
    target = int(phones.CHUNK_S * phones.FRAME_RATE)
    chunks, current, first = [], [], 0
    for word, s, e in segs:
        length = e + 1 - first
        if current and _is_filler(word) and length >= target and e > s:
            mid = (s + e + 1) // 2
            current.append((word, s, mid - 1))
            chunks.append((first, mid, current))
            current, first = [(word, mid, e)], mid
            continue
        if current and length >= 2 * target:
            chunks.append((first, s, current))
            current, first = [], s
        current.append((word, s, e))
    if current:
        chunks.append((first, current[-1][2] + 1, current))
    return chunks


def _chunked(decoder, raw: bytes, words: list[str]) -> list[tuple[str, float]] | None:
    """Word pass over the whole clip, then the phone pass chunk by chunk (memory)."""
    segs = _word_pass(decoder, raw, words)
    if segs is None:
        return None
    items: list[tuple[str, float]] = []
    for first, end, chunk in _chunks(segs):
        t0 = first / phones.FRAME_RATE
        chunk_words = [_base_word(w) for w, _, _ in chunk if not _is_filler(w)]
        if not chunk_words:
            items.append((SIL, t0))
            continue
        got = _phone_pass(decoder, raw[first * phones.HOP * 2 : end * phones.HOP * 2], chunk_words)
        if got is not None and got[1] == len(chunk_words):
            items.extend((label, t0 + t) for label, t in got[0])
            continue
        for w, s, e in chunk:  # fallback: first-pass word spans, phones spread evenly
            if _is_filler(w):
                items.append((SIL, s / phones.FRAME_RATE))
            else:
                items.extend(_even_phones(decoder, w, s / phones.FRAME_RATE, (e + 1) / phones.FRAME_RATE))
    n_aligned = sum(not _is_filler(w) for w, _, _ in segs)
    if n_aligned < len(words):
        _warn_partial(n_aligned, len(words))
    return items


def _warn_partial(n_aligned: int, n_words: int) -> None:
    warnings.warn(
        f"only the first {n_aligned} of {n_words} transcript words could be aligned to the audio; "
        "the rest are left out (is the transcript longer than what is said?)",
        stacklevel=4,
    )


def align_phones(audio: np.ndarray, transcript: str) -> list[Phone]:
    """Phones of `transcript` force-aligned to the audio (pocketsphinx alignment, two passes as
    documented). Words missing from the dictionary are dropped with a `warnings.warn`; if the
    alignment fails entirely, AudioError with a hint. Contiguous, silences as "SIL"."""
    a, duration = phones.prepare(audio)
    if phones.is_silent(a, duration):
        return [Phone(SIL, 0.0, duration)]
    decoder, lock = phones.align_decoder()
    with lock:
        words = _dictionary_words(decoder, transcript or "")
        if not words:
            raise AudioError(
                "the transcript has no word that the pronunciation dictionary knows",
                hint="write numbers and abbreviations out as words, or leave the transcript out to use "
                "phone recognition",
            )
        raw = phones.to_raw(a)
        if duration <= phones.MAX_PHONE_PASS_S:
            got = _phone_pass(decoder, raw, words)
            items = None if got is None or got[1] == 0 else got[0]
            if items is not None and got[1] < len(words):
                _warn_partial(got[1], len(words))
        else:
            items = _chunked(decoder, raw, words)
    if items is None:
        raise AudioError(
            "the transcript could not be aligned to the audio",
            hint="check that the transcript matches what is said (and is not longer than the audio), "
            "or leave it out to use phone recognition",
        )
    return phones.finish(items, duration)


def speech_phones(audio: np.ndarray, transcript: str | None = None) -> list[Phone]:
    """The phones the lips should follow.

    The transcript, force-aligned, when there is one. Otherwise the words pocketsphinx hears,
    force-aligned: on clean speech that recovers /p b m/ that allphone recognition misses
    (about 40% of its phones are wrong). Allphone recognition when no words are heard or they
    do not align (other languages, noise).
    """
    if transcript:
        return align_phones(audio, transcript)
    heard = phones.transcribe(audio)
    recognized = phones.recognize_phones(audio)
    if heard:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a partial alignment of what was heard is still useful
                aligned = align_phones(audio, heard)
        except AudioError:
            return recognized
        # misheard words lose lip closures that phone recognition still hears
        return _add_closures(aligned, [p for p in recognized if p.label in BILABIALS])
    return recognized


def _add_closures(phones: list[Phone], closures: list[Phone]) -> list[Phone]:
    """Overlay bilabials on a contiguous phone list where it has none, except mid-vowel."""
    out = list(phones)
    for c in closures:
        mid = (c.start + c.end) / 2
        if any(p.label in BILABIALS and p.start < c.end and c.start < p.end for p in out):
            continue
        host = next((p for p in out if p.start <= mid < p.end), None)
        if host is None or (
            host.label in _VOWELS and host.start + _VOWEL_CORE < mid < host.end - _VOWEL_CORE
        ):
            continue
        if c.label == "M" and host.label in _OTHER_NASALS:  # recognisers confuse nasals: trust the words
            continue
        cut = []
        for p in out:
            if p.end <= c.start or p.start >= c.end:
                cut.append(p)
                continue
            if p.start < c.start:
                cut.append(Phone(p.label, p.start, c.start))
            if p.end > c.end:
                cut.append(Phone(p.label, c.end, p.end))
        out = sorted(cut + [c], key=lambda p: p.start)
    return out
