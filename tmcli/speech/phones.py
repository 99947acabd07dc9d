"""Speech -> timed phones, with pocketsphinx (CMU Sphinx), for lip sync.

Two entry points, both returning a contiguous list of `Phone`s covering the
whole clip, [0, len(audio) / SAMPLE_RATE], silences as "SIL":

* `recognize_phones(audio)`: no transcript; allphone (phone-loop) decoding.
* `align_phones(audio, transcript)` (alignment.py): the transcript's phones force-aligned.

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
  go took 2.1 GB). Above `MAX_PHONE_PASS_S` of audio, the word timings of the
  (cheap) first pass cut the clip at word boundaries into chunks of about
  `CHUNK_S`, each phone-aligned on its own. A chunk that fails to align falls
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
from dataclasses import dataclass

import numpy as np

from tmcli.core.audio import SAMPLE_RATE  # pocketsphinx's acoustic model's rate too
from tmcli.core.errors import AudioError

FRAME_RATE = 100  # pocketsphinx frames per second (10 ms hop)
HOP = SAMPLE_RATE // FRAME_RATE
_MIN_AUDIO_S = 0.1  # shorter clips are returned as one SIL
_SILENCE_PEAK = 1e-3  # -60 dBFS: below this the clip is treated as silence
MAX_PHONE_PASS_S = 60.0  # longer audio: phone pass in chunks (memory)
CHUNK_S = 30.0  # target chunk length for the chunked phone pass
SIL = "SIL"
BILABIALS = frozenset({"P", "B", "M"})  # the phones that close the lips


@dataclass(frozen=True)
class Phone:
    label: str  # ARPAbet, no stress digits, upper case: "AA", "P", "M", ...; silence and noise -> "SIL"
    start: float  # seconds
    end: float  # seconds


# ---------------------------------------------------------------- decoders


def model_dir() -> str:
    import pocketsphinx

    return os.path.join(pocketsphinx.get_model_path(), "en-us")


def decoder_config(**kwargs):
    import pocketsphinx

    model = model_dir()
    return pocketsphinx.Config(
        hmm=os.path.join(model, "en-us"),
        loglevel="FATAL",
        logfn=os.devnull,
        **kwargs,
    )


def import_pocketsphinx():
    try:
        import pocketsphinx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AudioError(
            "speech analysis needs the pocketsphinx package, which is not installed",
            hint="pip install pocketsphinx",
        ) from exc
    return pocketsphinx


@functools.lru_cache(maxsize=None)
def allphone_decoder():
    ps = import_pocketsphinx()
    model = model_dir()
    config = decoder_config(
        allphone=os.path.join(model, "en-us-phone.lm.bin"),
        lm=None,
        lw=2.0,
        beam=1e-20,
        pbeam=1e-20,
    )
    return ps.Decoder(config), threading.Lock()


@functools.lru_cache(maxsize=None)
def word_decoder():
    ps = import_pocketsphinx()
    model = model_dir()
    # no second (flat-lexicon) pass: 20% faster, and words it would fix rarely change the phones
    config = decoder_config(
        lm=os.path.join(model, "en-us.lm.bin"), dict=os.path.join(model, "cmudict-en-us.dict"), fwdflat=False
    )
    return ps.Decoder(config), threading.Lock()


def warm_up() -> None:
    """Load the decoders now (a few seconds), e.g. in a worker before the first audio arrives."""
    word_decoder(), allphone_decoder(), align_decoder()


def decode(decoder, raw: bytes) -> None:
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


def prepare(audio) -> tuple[np.ndarray, float]:
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


def is_silent(a: np.ndarray, duration: float) -> bool:
    return duration < _MIN_AUDIO_S or float(np.max(np.abs(a))) < _SILENCE_PEAK


def to_raw(a: np.ndarray) -> bytes:
    return (np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def finish(items: list[tuple[str, float]], duration: float) -> list[Phone]:
    """(label, start s) pairs in time order -> contiguous Phones over [0, duration], SILs merged."""
    out: list[tuple[str, float]] = []
    for label, start in sorted(
        ((_normalize_label(lab), min(max(t, 0.0), duration)) for lab, t in items), key=lambda item: item[1]
    ):
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
    """Phones heard in mono float32 audio at 16 kHz (values in [-1, 1]), by allphone decoding.
    Contiguous, covering [0, len/16000]."""
    a, duration = prepare(audio)
    if is_silent(a, duration):
        return [Phone(SIL, 0.0, duration)]
    decoder, lock = allphone_decoder()
    with lock:
        decode(decoder, to_raw(a))
        segs = [(s.word, s.start_frame / FRAME_RATE) for s in (decoder.seg() or [])]
    return finish(segs, duration)


# ---------------------------------------------------------------- alignment


# ---------------------------------------------------------------- words, then phones


def _pieces(a: np.ndarray) -> list[np.ndarray]:
    """Cut long audio into pieces of about CHUNK_S, each cut at the quietest 10 ms within 3 s."""
    if a.size <= MAX_PHONE_PASS_S * SAMPLE_RATE:
        return [a]
    frames = a[: a.size // HOP * HOP].reshape(-1, HOP)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    cuts, target, search = [0], int(CHUNK_S * FRAME_RATE), 3 * FRAME_RATE
    while cuts[-1] + target + search < len(energy):
        lo = cuts[-1] + target - search
        cuts.append(lo + int(np.argmin(energy[lo : lo + 2 * search])))
    cuts.append(len(energy))
    return [a[c0 * HOP : c1 * HOP] if c1 < len(energy) else a[c0 * HOP :] for c0, c1 in zip(cuts, cuts[1:])]


def transcribe(audio: np.ndarray) -> str:
    """The words pocketsphinx's en-us language model hears ('' for silence or noise)."""
    a, duration = prepare(audio)
    if is_silent(a, duration):
        return ""
    decoder, lock = word_decoder()
    words = []
    with lock:
        for piece in _pieces(a):
            decode(decoder, to_raw(piece))
            hyp = decoder.hyp()
            words.append(hyp.hypstr if hyp is not None else "")
    return " ".join(w for w in words if w).strip()


@functools.lru_cache(maxsize=None)
def align_decoder():
    ps = import_pocketsphinx()
    model = model_dir()
    config = decoder_config(dict=os.path.join(model, "cmudict-en-us.dict"), lm=None)
    return ps.Decoder(config), threading.Lock()
