"""`tm data synth`: paired (audio, motion) clips made from nothing but espeak-ng.

Per clip, drawn from (seed, clip index) so a data set is reproducible and resumable:
  1. text in one of several languages, spoken by espeak-ng in a random voice, variant, rate
     and pitch; the C library reports each phoneme's exact start;
  2. controls (gaze, emotion, head-motion intensity, blink rate) and a neutral face offset;
  3. labels: the phonetic driver's motion from the true phones and the clean envelope, plus
     the emotion's expression and the neutral offset;
  4. the audio a model hears: the clean speech through random rooms, noise, EQ, codecs and
     levels (augment.py), and its generator features.
A speed change and phrase-final lengthening are applied to the clean speech before the labels,
so their timings follow.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path

import librosa
import numpy as np

from tmcli.core.audio import extract_features, num_video_frames
from tmcli.core.errors import InputError
from tmcli.face.rig import INDEX, MOTION_DIM
from tmcli.motion.controls import EMOTIONS, Controls
from tmcli.motion.driver import VISEMES, VOWELS, PhoneticDriver
from tmcli.speech import espeak
from tmcli.speech.features import generator_features
from tmcli.speech.phones import Phone
from tmcli.train import augment as aug
from tmcli.train.shards import Clip, ShardWriter

ENGLISH_SHARE = 0.5  # of clips, when English is among the languages: tm is judged on English voices


@dataclasses.dataclass(frozen=True)
class SynthSettings:
    clip_seconds: tuple[float, float] = (5.0, 14.0)
    languages: tuple[str, ...] = espeak.LANGUAGES
    augment: aug.AugmentSettings = dataclasses.field(default_factory=aug.AugmentSettings)


def _controls(rng: np.random.Generator) -> Controls:
    gaze = (float(np.clip(rng.normal(0, 0.3), -0.8, 0.8)), float(np.clip(rng.normal(0, 0.15), -0.5, 0.5)))
    emotion = np.zeros(len(EMOTIONS))
    if rng.random() < 0.5:
        emotion[rng.integers(len(EMOTIONS))] = rng.uniform(0.3, 1.0)
        if rng.random() < 0.2:
            emotion[rng.integers(len(EMOTIONS))] += rng.uniform(0.0, 0.4)
    return Controls(
        gaze,
        tuple(np.clip(emotion, 0, 1).tolist()),
        float(rng.uniform(0.0, 2.0)),
        float(rng.uniform(4.0, 40.0)),
    )


def _neutral(rng: np.random.Generator) -> np.ndarray:
    """The face's resting motion: how a portrait happens to sit (turned, tilted, half smiling)."""
    neutral = np.zeros(MOTION_DIM, dtype=np.float32)
    if rng.random() < 0.5:
        for name, spread in (
            ("headYaw", 0.12),
            ("headPitch", 0.08),
            ("headRoll", 0.06),
            ("mouthSmileLeft", 0.15),
            ("browInnerUp", 0.1),
        ):
            neutral[INDEX[name]] = rng.normal(0, spread)
        neutral[INDEX["mouthSmileRight"]] = neutral[INDEX["mouthSmileLeft"]] + rng.normal(0, 0.03)
    return neutral


def _language(rng: np.random.Generator, languages: Sequence[str]) -> str:
    english = [lang for lang in languages if lang.startswith("en")]
    if english and len(english) < len(languages) and rng.random() < ENGLISH_SHARE:
        return str(rng.choice(english))
    return str(rng.choice(list(languages)))


def _speak(rng: np.random.Generator, settings: SynthSettings) -> tuple[np.ndarray, list[Phone], dict]:
    language = _language(rng, settings.languages)
    variant = str(rng.choice(espeak.VARIANTS)) if rng.random() < 0.8 else None
    rate, pitch, pitch_range = (
        int(rng.integers(120, 250)),
        int(rng.integers(15, 85)),
        int(rng.integers(20, 90)),
    )
    seconds = rng.uniform(*settings.clip_seconds)
    words = max(3, int(seconds * rate / 60 * 0.8))
    text = espeak.random_text(rng, language, words)
    audio, phones = espeak.synthesize(text, language, variant, rate, pitch, pitch_range)
    # a pause before and after, as recordings have
    lead, tail = rng.uniform(0.0, 0.5, 2)
    audio = np.concatenate(
        [np.zeros(int(lead * aug.SAMPLE_RATE)), audio, np.zeros(int(tail * aug.SAMPLE_RATE))]
    )
    phones = (
        [Phone("SIL", 0.0, lead)]
        + [Phone(p.label, p.start + lead, p.end + lead) for p in phones]
        + [Phone("SIL", phones[-1].end + lead, len(audio) / aug.SAMPLE_RATE)]
    )
    info = {"text": text, "language": language, "variant": variant, "rate": rate, "pitch": pitch}
    return audio.astype(np.float32), phones, info


PHRASE_FINAL = {"probability": 0.5, "stretch": (1.3, 3.0), "fade_db": (3.0, 18.0)}
_SUSTAINED = VOWELS | {"L", "R", "W", "Y", "M", "N", "NG", "Z", "S", "F", "V", "SH", "ZH", "HH"}


def lengthen_phrase_ends(
    audio: np.ndarray, phones: list[Phone], rng: np.random.Generator
) -> tuple[np.ndarray, list[Phone]]:
    """Draw out and fade the last sound before each pause, as speakers do and espeak-ng does not.

    espeak-ng ends a phrase at full level and on time; real voices lengthen the final syllable
    and trail off ("forev-er..."). A teacher that never heard that shuts the mouth while the
    sound still goes on. Each phrase-final sustained phone is stretched (phase vocoder: same
    pitch) and faded out; later phones shift by the added time."""
    out, kept, shift = [], 0, 0.0
    new_phones: list[Phone] = []
    for i, ph in enumerate(phones):
        start, end = ph.start + shift, ph.end + shift
        final = i + 1 == len(phones) or phones[i + 1].label == "SIL"
        a, b = int(round(ph.start * aug.SAMPLE_RATE)), int(round(ph.end * aug.SAMPLE_RATE))
        if (
            ph.label in _SUSTAINED
            and final
            and b - a >= aug.SAMPLE_RATE // 25
            and rng.random() < PHRASE_FINAL["probability"]
        ):
            factor = rng.uniform(*PHRASE_FINAL["stretch"])
            piece = librosa.effects.time_stretch(audio[a:b], rate=1 / factor, n_fft=512, hop_length=128)
            fade_db = rng.uniform(*PHRASE_FINAL["fade_db"])
            piece = piece * np.float32(10 ** (-np.linspace(0, fade_db, len(piece)) / 20))
            out += [audio[kept:a], piece.astype(np.float32)]
            kept = b
            shift += (len(piece) - (b - a)) / aug.SAMPLE_RATE
            end = ph.end + shift
        new_phones.append(Phone(ph.label, start, end))
    out.append(audio[kept:])
    return np.concatenate(out), new_phones


_SPEECH_LABELS = sorted(set(VISEMES) - {"SIL"})
RECOGNITION_ERRORS = {
    "substitute": 0.06,
    "delete": 0.02,
    "jitter_s": 0.005,
}  # measured: benchmarks/phone_errors.py


def misrecognize(phones: list[Phone], rng: np.random.Generator) -> list[Phone]:
    """The true phones as a recogniser would report them: some replaced, some merged into the
    phone before, boundaries off by ~5 ms. At render time the phones come from pocketsphinx, so
    the model learns how far to trust them; the rates match how often pocketsphinx errs on real
    voices (benchmarks/phone_errors.py): more errors than that teach the model to hedge."""
    out: list[Phone] = []
    for ph in phones:
        label = ph.label
        if label != "SIL" and rng.random() < RECOGNITION_ERRORS["substitute"]:
            label = str(rng.choice(_SPEECH_LABELS))
        start = ph.start + (rng.normal(0, RECOGNITION_ERRORS["jitter_s"]) if out else 0.0)
        if out and (rng.random() < RECOGNITION_ERRORS["delete"] or start <= out[-1].start):
            out[-1] = Phone(out[-1].label, out[-1].start, ph.end)
            continue
        if out:
            out[-1] = Phone(out[-1].label, out[-1].start, start)
        out.append(Phone(label, start, ph.end))
    return out


def synth_clip(index: int, seed: int = 0, fps: float = 25.0, settings: SynthSettings | None = None) -> Clip:
    """Clip number `index` of the data set drawn from `seed`."""
    settings = settings or SynthSettings()
    rng = np.random.default_rng([seed, index])
    audio, phones, info = _speak(rng, settings)
    audio, phones = lengthen_phrase_ends(audio, phones, rng)
    a = settings.augment
    if rng.random() < a.probability * a.speed_probability:
        factor = rng.uniform(*a.speed)
        audio, scale = aug.change_speed(audio, factor)
        phones = [Phone(p.label, p.start * scale, p.end * scale) for p in phones]
        info["speed"] = round(float(factor), 3)
    controls, neutral = _controls(rng), _neutral(rng)
    motion = (
        PhoneticDriver()(phones, extract_features(audio, fps), int(rng.integers(2**31)), controls) + neutral
    )
    heard = aug.augment(audio, rng, dataclasses.replace(a, speed_probability=0.0))
    features = generator_features(extract_features(heard.audio, fps), misrecognize(phones, rng))
    frames = num_video_frames(len(heard.audio), fps)
    assert len(features) == len(motion) == frames, "augmentation must keep the clip's length"
    info["augment"] = list(heard.applied)
    return Clip(
        audio=heard.audio,
        features=features,
        motion=motion.astype(np.float32),
        valid=np.ones(frames, dtype=bool),
        controls=controls.vector(),
        neutral=neutral,
        info=info,
    )


def _make(job: tuple[int, int, float, SynthSettings]) -> Clip:
    return synth_clip(*job)


def synth_dataset(
    out_dir: str | Path,
    minutes: float,
    seed: int = 0,
    fps: float = 25.0,
    settings: SynthSettings | None = None,
    workers: int = 1,
    on_clip: Callable[[float, float], None] | None = None,
) -> int:
    """Add clips to `out_dir` until it holds `minutes` of speech; resumes a set made with the same
    seed. Returns the clips added. `on_clip(minutes_done, minutes)` reports progress."""
    settings = settings or SynthSettings()
    added = 0
    with ShardWriter(out_dir, fps, source="synth") as writer:
        if writer.manifest.get("seed", seed) != seed:
            raise InputError(
                f"{out_dir} was made with seed {writer.manifest['seed']}, not {seed}",
                hint="use that seed to extend it, or another folder",
            )
        writer.manifest["seed"] = seed
        done_frames = writer.manifest["frames"]
        index = writer.num_clips
        target = minutes * 60 * fps
        # espeak-ng keeps state between calls (its pitch flutter), so each clip is made in a fresh
        # fork of this process, which never speaks itself: the same seed gives the same clips
        extract_features(
            np.zeros(aug.SAMPLE_RATE, dtype=np.float32), fps
        )  # warm librosa once, before forking
        fork = multiprocessing.get_context("fork")
        with fork.Pool(max(1, workers), maxtasksperchild=1) as pool:
            while done_frames < target:
                batch = [(i, seed, fps, settings) for i in range(index, index + max(1, workers) * 4)]
                for clip in pool.imap(_make, batch):
                    if done_frames >= target:
                        break
                    writer.add(clip)
                    done_frames += len(clip.motion)
                    index += 1
                    added += 1
                    if on_clip:
                        on_clip(done_frames / fps / 60, minutes)
    return added
