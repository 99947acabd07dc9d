"""What learned generators hear: per-video-frame features of the speech.

Two views of the same audio, concatenated per frame:
  - acoustic: the log-mel taken relative to the clip's loud frames (so a quiet recording and a
    loud one look alike), loudness, envelope, voicing and pitch;
  - phonetic: which class of phone the frame belongs to: at render time from pocketsphinx
    (the transcript aligned, or the words it recognises plus the closures its phone recogniser
    hears), in training the true phones with recogniser-like errors (train/synth.py). Its
    acoustic model was trained on real voices, so these columns carry over from the synthetic
    training speech to real recordings where the mel alone does not; the generator learns
    from the acoustic columns how far to trust them.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from tmcli.core.audio import FEATURE_RATE, N_MELS, SAMPLE_RATE, AudioFeatures, to_video_frames
from tmcli.core.runtime import read_ahead
from tmcli.speech.phones import Phone

FEATURES_VERSION = 2  # bump when anything here changes: data made before must be remade
PHONE_CLASSES: dict[str, frozenset[str]] = {
    "silence": frozenset({"SIL"}),
    "bilabial": frozenset({"P", "B", "M"}),
    "labiodental": frozenset({"F", "V"}),
    "rounded": frozenset({"W", "UW", "UH", "OW", "AO", "OY", "R", "SH", "ZH", "CH", "JH"}),
    "open": frozenset({"AA", "AE", "AH", "AW", "AY"}),
    "spread": frozenset({"EH", "EY", "IH", "IY", "ER", "Y"}),
    "other": frozenset(),  # every other consonant
}
MEL_FLOOR = -3.0  # log-mel floor, 12 nepers (~52 dB) under the loud frames: digital silence sits here
ACOUSTIC_DIM = N_MELS + 4
FEATURE_DIM = ACOUSTIC_DIM + len(PHONE_CLASSES)
_CLASS_OF = {label: i for i, labels in enumerate(PHONE_CLASSES.values()) for label in labels}
_OTHER = list(PHONE_CLASSES).index("other")


def phone_classes(phones: list[Phone], num_frames: int, fps: float) -> np.ndarray:
    """(T, len(PHONE_CLASSES)): the share of each frame's time each class of phone takes."""
    n = int(np.ceil(num_frames / fps * FEATURE_RATE)) + 1
    onehot = np.zeros((n, len(PHONE_CLASSES)))
    onehot[:, 0] = 1.0  # silence until a phone says otherwise
    for ph in phones:
        lo, hi = int(round(ph.start * FEATURE_RATE)), int(round(ph.end * FEATURE_RATE))
        onehot[lo:hi] = 0.0
        onehot[lo:hi, _CLASS_OF.get(ph.label, _OTHER)] = 1.0
    return to_video_frames(onehot, num_frames, fps)


def generator_features(features: AudioFeatures, phones: list[Phone]) -> np.ndarray:
    """(T, FEATURE_DIM) float32 for T = features.num_frames."""
    mel = features.mel.astype(np.float64)
    ref = np.percentile(mel.mean(axis=1), 95) if len(mel) else 0.0
    mel = np.clip((mel - ref) / 4.0, MEL_FLOOR, 3.0)
    extra = np.stack(
        [
            features.rms_db / 60.0,
            features.envelope,
            features.voiced.astype(np.float64),
            np.clip(features.pitch / 12.0, -2.0, 2.0),
        ],
        axis=1,
    )
    classes = phone_classes(phones, features.num_frames, features.fps)
    return np.concatenate([mel, extra, classes], axis=1).astype(np.float32)


def silence_features(num_frames: int) -> np.ndarray:
    """generator_features of silence: what frames before a clip's start or past its end hear."""
    row = np.zeros(FEATURE_DIM, dtype=np.float32)
    row[:N_MELS] = MEL_FLOOR
    row[N_MELS] = -1.0
    row[ACOUSTIC_DIM] = 1.0  # the silence class
    return np.tile(row, (num_frames, 1))


class FeatureStream:
    """Audio blocks in, generator_features rows out, one utterance at a time (streaming render).

    The phones need pocketsphinx, which hears words best over whole utterances, so the audio
    is cut at pauses: the first 0.2 s stretch 35 dB under the loud level once `min_seconds`
    are in, or the quietest frame of the last 3 s at `max_seconds`. Each piece gets its own
    features and phones (recognised in a worker process while the previous piece renders;
    at most `in_flight` pieces wait, so memory stays bounded). Cuts fall on video-frame edges,
    so the rows tile the audio exactly. Rendering a file cuts it the same way: a file and the
    same audio on stdin give the same video.
    """

    def __init__(
        self,
        fps: float,
        phones_of: Callable[[np.ndarray, float], list[Phone]],
        min_seconds: float = 2.0,
        max_seconds: float = 8.0,
        in_flight: int = 3,
        pool=None,
    ):
        self.fps, self.phones_of = fps, phones_of
        self.min_frames, self.max_frames = int(min_seconds * fps), int(max_seconds * fps)
        self.in_flight, self.pool = in_flight, pool

    def _sample(self, frame: int) -> int:
        return int(round(frame * SAMPLE_RATE / self.fps))

    def _cut(self, audio: np.ndarray, first: int, final: bool) -> int | None:
        """Frame (absolute) to end the piece starting at `first` at, or None to wait for more audio."""
        frames = int(np.floor((self._sample(first) + len(audio)) * self.fps / SAMPLE_RATE)) - first
        if final:
            frames = int(round((self._sample(first) + len(audio)) * self.fps / SAMPLE_RATE)) - first
            return None if frames <= 0 else first + frames
        if frames < self.min_frames + int(0.2 * self.fps):
            return None
        edges = [self._sample(first + i) - self._sample(first) for i in range(frames + 1)]
        power = np.array([np.mean(audio[a:b] ** 2) + 1e-12 for a, b in zip(edges, edges[1:])])
        db = 10 * np.log10(power)
        quiet = db < np.percentile(db, 95) - 35.0
        run = max(1, int(round(0.2 * self.fps)))
        for i in range(self.min_frames, frames - run + 1):
            if quiet[i : i + run].all():
                return first + i + run // 2
        if frames >= self.max_frames:
            lo = max(self.min_frames, self.max_frames - int(3 * self.fps))
            return first + lo + int(np.argmin(db[lo : self.max_frames]))
        return None

    def __call__(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        from collections import deque
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        from tmcli.core.audio import extract_features

        pending: deque[tuple[np.ndarray, float, Future | list[Phone]]] = deque()

        def submit(piece: np.ndarray, start: float) -> None:
            phones = None
            if self.pool:
                try:
                    phones = self.pool.submit(self.phones_of, piece, start)
                except BrokenProcessPool:  # the worker could not start: find phones here from now on
                    self.pool = None
            pending.append((piece, start, phones if phones is not None else self.phones_of(piece, start)))

        def finish(piece: np.ndarray, start: float, phones) -> np.ndarray:
            if isinstance(phones, Future):
                try:
                    phones = phones.result()
                except BrokenProcessPool:  # the worker could not start (see stream/sources.py, _result)
                    phones = self.phones_of(piece, start)
            return generator_features(extract_features(piece, self.fps), phones)

        # input is read in a thread, so a piece whose phones are done goes out while the input is quiet
        source = read_ahead(blocks)
        buffer, first, final = np.zeros(0, dtype=np.float32), 0, False
        while not final:
            try:
                block = source.get(timeout=0.05)
            except queue.Empty:
                while pending and _ready(pending[0][2]):
                    yield finish(*pending.popleft())
                continue
            if isinstance(block, BaseException):
                raise block
            final = block is None
            if not final:
                buffer = np.concatenate([buffer, block])
            while (end := self._cut(buffer, first, final)) is not None:
                n = self._sample(end) - self._sample(first)
                piece = (
                    buffer[:n] if len(buffer) >= n else np.pad(buffer, (0, n - len(buffer)))
                )  # the last frame
                submit(piece, self._sample(first) / SAMPLE_RATE)
                buffer, first = buffer[n:], end
                while len(pending) > self.in_flight or (pending and _ready(pending[0][2])):
                    yield finish(*pending.popleft())
            while pending and (final or _ready(pending[0][2])):
                yield finish(*pending.popleft())


def _ready(phones) -> bool:
    return not hasattr(phones, "done") or phones.done()


def recognised_phones(piece: np.ndarray, start: float) -> list[Phone]:
    """FeatureStream's phones_of: what pocketsphinx hears in the piece."""
    from tmcli.speech.alignment import speech_phones

    return speech_phones(piece)


def phones_within(phones: list[Phone], piece: np.ndarray, start: float) -> list[Phone]:
    """FeatureStream's phones_of for phones known in advance (a transcript aligned to the whole file)."""
    end = start + len(piece) / SAMPLE_RATE
    return [
        Phone(p.label, max(p.start, start) - start, min(p.end, end) - start)
        for p in phones
        if p.end > start and p.start < end
    ]
