"""Speech -> timed phones, with pocketsphinx (CMU Sphinx), for lip sync.

Two entry points, both returning a contiguous list of `Phone`s covering the
whole clip, [0, len(audio) / SAMPLE_RATE], silences as "SIL":

* `recognize_phones(audio)`: no transcript; allphone (phone-loop) decoding.
* `align_phones(audio, transcript)`: the transcript's phones force-aligned.

Why these choices (short):

* pocketsphinx: small, CPU-only, pip-installable wheel that ships its en-us
  acoustic model, CMU dictionary and phone LM, so nothing is fetched at run
  time. Phone boundaries of forced alignment were measured within ~12 ms of
  hand labels, plenty for 25-30 fps mouth animation.
* Allphone decoding with the shipped phone LM (`en-us-phone.lm.bin`), with
  `lw=2.0, beam=pbeam=1e-20` as CMU's phoneme-recognition docs advise: on the
  CMU ARCTIC test clip this cut the phone error rate against the forced
  alignment from 0.55 (default lw 6.5) to 0.40. Phone recognition stays noisy;
  use a transcript when one exists.
* Alignment runs two passes (`set_align_text` -> word alignment, then
  `set_alignment` -> phone/state alignment), as pocketsphinx documents: the
  first pass does not track sub-word timing.
* The second pass costs memory ~ frames x HMM states (5 min of speech in one
  go took 2.1 GB). Above `_MAX_PHONE_PASS_S` of audio, the word timings of the
  (cheap) first pass cut the clip at word boundaries into chunks of about
  `_CHUNK_S`, each phone-aligned on its own. A chunk that fails to align falls
  back to its words' first-pass spans, split evenly among their phones.
* Audio is passed in one `process_raw(..., full_utt=True)` call: CMN is then
  computed over the whole utterance (best for offline files), and a
  5-minute clip decoded fine that way (features are a few MB), so no
  block feeding is needed.
* Decoders take 0.1-0.7 s to build, so one per mode is cached
  (`functools.lru_cache`) and guarded by a lock (they are not thread-safe).
  A decoder carries state across utterances (the pre-emphasis filter's last
  sample, the live CMN estimate): without a reset, the same clip decoded twice
  gave different phones. `reinit_feat()` before every utterance (~0.1 ms)
  makes each call depend on its own audio only.
* pocketsphinx's log goes to /dev/null with level FATAL: a CLI must not print
  decoder chatter.
* Robustness: audio shorter than `_MIN_AUDIO_S`, or whose peak is below
  `_SILENCE_PEAK` (-60 dBFS), is returned as one SIL phone without decoding:
  the allphone decoder hallucinates phones (an "S") in digital silence, and
  frames that short cannot be decoded at all.
* Transcript words missing from the dictionary: pocketsphinx 5 has no g2p
  (letter-to-sound) any more, so after trying simple variants (case,
  punctuation, hyphen parts, possessive "'s") such words are dropped with a
  `warnings.warn`; the neighbouring words absorb their time. Nothing left to
  align, or a failed alignment, raises `AudioError` with a hint.
* Labels: ARPAbet, upper case, stress digits stripped; every filler
  ("<sil>", "SIL", "+NSN+", "+SPN+", "+BREATH+", ...) becomes "SIL", and
  consecutive SILs are merged.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from tmcli.core.errors import AudioError

SAMPLE_RATE = 16000  # pocketsphinx's acoustic model rate; callers pass audio at this rate

_FRAME_RATE = 100  # pocketsphinx frames per second (10 ms hop)
_HOP = SAMPLE_RATE // _FRAME_RATE
_MIN_AUDIO_S = 0.1  # shorter clips are returned as one SIL
_SILENCE_PEAK = 1e-3  # -60 dBFS: below this the clip is treated as silence
_MAX_PHONE_PASS_S = 60.0  # longer audio: phone pass in chunks (memory)
_CHUNK_S = 30.0  # target chunk length for the chunked phone pass
SIL = "SIL"


@dataclass(frozen=True)
class Phone:
    label: str    # ARPAbet phone without stress digits, upper case: "AA", "P", "M", ... ; silence and noise -> "SIL"
    start: float  # seconds
    end: float    # seconds


# ---------------------------------------------------------------- decoders


def _model_dir() -> str:
    import pocketsphinx

    return os.path.join(pocketsphinx.get_model_path(), "en-us")


def _config(**kwargs):
    import pocketsphinx

    model = _model_dir()
    return pocketsphinx.Config(
        hmm=os.path.join(model, "en-us"),
        loglevel="FATAL",
        logfn=os.devnull,
        **kwargs,
    )


def _import_pocketsphinx():
    try:
        import pocketsphinx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AudioError(
            "speech analysis needs the pocketsphinx package, which is not installed",
            hint="pip install pocketsphinx",
        ) from exc
    return pocketsphinx


@functools.lru_cache(maxsize=None)
def _allphone_decoder():
    ps = _import_pocketsphinx()
    model = _model_dir()
    config = _config(
        allphone=os.path.join(model, "en-us-phone.lm.bin"),
        lm=None,
        lw=2.0,
        beam=1e-20,
        pbeam=1e-20,
    )
    return ps.Decoder(config), threading.Lock()


@functools.lru_cache(maxsize=None)
def _word_decoder():
    ps = _import_pocketsphinx()
    model = _model_dir()
    # no second (flat-lexicon) pass: 20% faster, and words it would fix rarely change the phones
    config = _config(lm=os.path.join(model, "en-us.lm.bin"), dict=os.path.join(model, "cmudict-en-us.dict"),
                     fwdflat=False)
    return ps.Decoder(config), threading.Lock()


@functools.lru_cache(maxsize=None)
def _align_decoder():
    ps = _import_pocketsphinx()
    model = _model_dir()
    config = _config(dict=os.path.join(model, "cmudict-en-us.dict"), lm=None)
    return ps.Decoder(config), threading.Lock()


def warm_up() -> None:
    """Load the decoders now (a few seconds), e.g. in a worker before the first audio arrives."""
    _word_decoder(), _allphone_decoder(), _align_decoder()


def _decode(decoder, raw: bytes) -> None:
    """One utterance, from a clean feature state (see module docstring)."""
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()


# ---------------------------------------------------------------- helpers


def _normalize_label(name: str) -> str:
    label = re.sub(r"\d", "", name).strip().upper()
    if not label or label in ("SIL", "SP", "NSN", "SPN") or label[0] in "+<[":
        return SIL
    return label


def _prepare(audio) -> tuple[np.ndarray, float]:
    """Validate and return (float32 mono samples, duration in seconds)."""
    a = np.asarray(audio)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise AudioError(
            f"expected mono audio (a 1-D array), got shape {a.shape}",
            hint="mix down to mono before speech analysis",
        )
    if a.dtype.kind in "iu":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    a = a.astype(np.float32, copy=False)
    if a.size and not np.all(np.isfinite(a)):
        raise AudioError("audio contains NaN or infinite samples")
    return a, a.size / SAMPLE_RATE


def _is_silent(a: np.ndarray, duration: float) -> bool:
    return duration < _MIN_AUDIO_S or float(np.max(np.abs(a))) < _SILENCE_PEAK


def _to_raw(a: np.ndarray) -> bytes:
    return (np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _finish(items: list[tuple[str, float]], duration: float) -> list[Phone]:
    """(label, start s) pairs in time order -> contiguous Phones over [0, duration], SILs merged."""
    out: list[tuple[str, float]] = []
    for label, start in sorted(((_normalize_label(lab), min(max(t, 0.0), duration)) for lab, t in items),
                               key=lambda item: item[1]):
        if out and start <= out[-1][1]:
            out.pop()  # the previous phone would have zero length
        if out and out[-1][0] == label == SIL:
            continue
        out.append((label, start))
    if out and out[-1][1] >= duration:
        out.pop()
    if not out:
        return [Phone(SIL, 0.0, duration)]
    out[0] = (out[0][0], 0.0)
    ends = [start for _, start in out[1:]] + [duration]
    return [Phone(label, start, end) for (label, start), end in zip(out, ends)]


# ---------------------------------------------------------------- recognition


def recognize_phones(audio: np.ndarray) -> list[Phone]:
    """Phones heard in mono float32 audio at 16 kHz (values in [-1, 1]), by allphone decoding. Contiguous, covering [0, len/16000]."""
    a, duration = _prepare(audio)
    if _is_silent(a, duration):
        return [Phone(SIL, 0.0, duration)]
    decoder, lock = _allphone_decoder()
    with lock:
        _decode(decoder, _to_raw(a))
        segs = [(s.word, s.start_frame / _FRAME_RATE) for s in (decoder.seg() or [])]
    return _finish(segs, duration)


# ---------------------------------------------------------------- alignment


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
        _decode(decoder, raw)
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
        _decode(decoder, raw)
        alignment = decoder.get_alignment()
        if alignment is None:
            return None
        items, n_words = [], 0
        for word in alignment:
            n_words += not _is_filler(word.name)
            items.extend((phone.name, phone.start / _FRAME_RATE) for phone in word)
        return items, n_words
    except RuntimeError:
        return None


def _even_phones(decoder, word: str, start: float, end: float) -> list[tuple[str, float]]:
    pron = (decoder.lookup_word(word) or "").split() or [SIL]
    step = (end - start) / len(pron)
    return [(p, start + i * step) for i, p in enumerate(pron)]


def _chunks(segs: list[tuple[str, int, int]]) -> list[tuple[int, int, list[tuple[str, int, int]]]]:
    """Cut first-pass segments into (first frame, end frame, segments) chunks of about _CHUNK_S.

    A cut goes in the middle of a pause once a chunk is _CHUNK_S long, so that
    each chunk starts and ends in silence (alignment is then unaffected by the
    cut); with no pause by 2 x _CHUNK_S, at a word boundary.
    """
    target = int(_CHUNK_S * _FRAME_RATE)
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
        t0 = first / _FRAME_RATE
        chunk_words = [_base_word(w) for w, _, _ in chunk if not _is_filler(w)]
        if not chunk_words:
            items.append((SIL, t0))
            continue
        got = _phone_pass(decoder, raw[first * _HOP * 2 : end * _HOP * 2], chunk_words)
        if got is not None and got[1] == len(chunk_words):
            items.extend((label, t0 + t) for label, t in got[0])
            continue
        for w, s, e in chunk:  # fallback: first-pass word spans, phones spread evenly
            if _is_filler(w):
                items.append((SIL, s / _FRAME_RATE))
            else:
                items.extend(_even_phones(decoder, w, s / _FRAME_RATE, (e + 1) / _FRAME_RATE))
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
    """Phones of `transcript` force-aligned to the audio (pocketsphinx alignment, two passes as documented). Words missing from the dictionary: use pocketsphinx's g2p if available, else drop them with a warning via `warnings.warn`; if alignment fails entirely raise AudioError with a hint. Same contiguity contract as above, silences as "SIL"."""
    a, duration = _prepare(audio)
    if _is_silent(a, duration):
        return [Phone(SIL, 0.0, duration)]
    decoder, lock = _align_decoder()
    with lock:
        words = _dictionary_words(decoder, transcript or "")
        if not words:
            raise AudioError(
                "the transcript has no word that the pronunciation dictionary knows",
                hint="write numbers and abbreviations out as words, or leave the transcript out to use phone recognition",
            )
        raw = _to_raw(a)
        if duration <= _MAX_PHONE_PASS_S:
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
    return _finish(items, duration)


# ---------------------------------------------------------------- words, then phones


def _pieces(a: np.ndarray) -> list[np.ndarray]:
    """Cut long audio into pieces of about _CHUNK_S, each cut at the quietest 10 ms within 3 s."""
    if a.size <= _MAX_PHONE_PASS_S * SAMPLE_RATE:
        return [a]
    frames = a[: a.size // _HOP * _HOP].reshape(-1, _HOP)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    cuts, target, search = [0], int(_CHUNK_S * _FRAME_RATE), 3 * _FRAME_RATE
    while cuts[-1] + target + search < len(energy):
        lo = cuts[-1] + target - search
        cuts.append(lo + int(np.argmin(energy[lo: lo + 2 * search])))
    cuts.append(len(energy))
    return [a[c0 * _HOP: c1 * _HOP] if c1 < len(energy) else a[c0 * _HOP:] for c0, c1 in zip(cuts, cuts[1:])]


def transcribe(audio: np.ndarray) -> str:
    """The words pocketsphinx's en-us language model hears ('' for silence or noise)."""
    a, duration = _prepare(audio)
    if _is_silent(a, duration):
        return ""
    decoder, lock = _word_decoder()
    words = []
    with lock:
        for piece in _pieces(a):
            _decode(decoder, _to_raw(piece))
            hyp = decoder.hyp()
            words.append(hyp.hypstr if hyp is not None else "")
    return " ".join(w for w in words if w).strip()


def speech_phones(audio: np.ndarray, transcript: str | None = None) -> list[Phone]:
    """The phones the lips should follow.

    The transcript, force-aligned, when there is one. Otherwise the words pocketsphinx hears,
    force-aligned: on clean speech that recovers /p b m/ that allphone recognition misses
    (about 40% of its phones are wrong). Allphone recognition when no words are heard or they
    do not align (other languages, noise).
    """
    if transcript:
        return align_phones(audio, transcript)
    heard = transcribe(audio)
    recognized = recognize_phones(audio)
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


BILABIALS = frozenset({"P", "B", "M"})
_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
_OTHER_NASALS = frozenset({"N", "NG"})
_VOWEL_CORE = 0.04  # s: a closure heard this far inside an aligned vowel is taken as a recognition error


def _add_closures(phones: list[Phone], closures: list[Phone]) -> list[Phone]:
    """Overlay bilabials on a contiguous phone list where it has none, except mid-vowel."""
    out = list(phones)
    for c in closures:
        mid = (c.start + c.end) / 2
        if any(p.label in BILABIALS and p.start < c.end and c.start < p.end for p in out):
            continue
        host = next((p for p in out if p.start <= mid < p.end), None)
        if host is None or (host.label in _VOWELS and host.start + _VOWEL_CORE < mid < host.end - _VOWEL_CORE):
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
