"""Audio in: decode any file once to mono 16 kHz, and features aligned to video frames.

Every stage that reads audio uses these constants; the checks below fail loudly at import if
someone changes one so that frames stop lining up with samples.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmcli.core.errors import AudioError, InputError

SAMPLE_RATE = 16000  # Hz; pocketsphinx's acoustic model and all features use this rate
FEATURE_RATE = 100  # feature frames per second (10 ms, the same frames as pocketsphinx)
HOP_LENGTH = SAMPLE_RATE // FEATURE_RATE  # samples per feature frame
N_FFT = 4 * HOP_LENGTH  # 25 ms analysis window rounded up to a power-of-two multiple of the hop
N_MELS = 80

assert HOP_LENGTH * FEATURE_RATE == SAMPLE_RATE, "FEATURE_RATE must divide SAMPLE_RATE"


def ffmpeg_exe() -> str:
    """The ffmpeg that imageio-ffmpeg ships, so that `pip install` alone is enough."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


WHOLE_AUDIO_LIMIT = 20 * 60  # seconds read whole at most by the generators that need all of it at once


def load_audio(path: str | Path, raw_rate: int | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Decode the audio (or a video's audio track) of any format ffmpeg reads, whole.

    Returns mono float32 at SAMPLE_RATE in [-1, 1]. Resampling happens here, once. Audio longer
    than `max_seconds` raises AudioError as soon as that much is read (memory stays bounded).
    """
    blocks, total = [], 0
    with contextlib.closing(
        read_audio_blocks(path, raw_rate, block_seconds=60.0)
    ) as decoded:  # closing stops ffmpeg
        for block in decoded:
            blocks.append(block)
            total += len(block)
            if max_seconds is not None and total > max_seconds * SAMPLE_RATE:
                name = "standard input" if str(path) == "-" else str(path)
                raise AudioError(
                    f"{name} is longer than {max_seconds / 60:g} minutes, the most this generator reads "
                    "whole",
                    hint="the student generator (the default) streams audio of any length",
                )
    return np.concatenate(blocks)


def num_video_frames(num_samples: int, fps: float) -> int:
    """Frames that cover the audio: the video lasts as long as the audio, within one frame."""
    return max(1, int(round(num_samples / SAMPLE_RATE * fps)))


@dataclass(frozen=True)
class AudioFeatures:
    """Per-video-frame features. Arrays have one row per frame."""

    fps: float
    rms_db: np.ndarray  # (T,) loudness in dB relative to the clip's loud level (0 = loud, -60 = silence)
    envelope: np.ndarray  # (T,) loudness mapped to [0, 1]: the speech envelope lips follow
    pitch: np.ndarray  # (T,) semitones relative to the speaker's median, 0 where unvoiced
    voiced: np.ndarray  # (T,) bool
    mel: np.ndarray  # (T, N_MELS) log-mel, for learned generators

    @property
    def num_frames(self) -> int:
        return len(self.envelope)


def to_video_frames(values: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Average feature frames (100 Hz) over each video frame's span (at least one frame each)."""
    edges = np.round(np.arange(num_frames + 1) / fps * FEATURE_RATE).astype(int)
    hi = np.clip(np.maximum(edges[1:], edges[:-1] + 1), 1, len(values))
    lo = np.clip(edges[:-1], 0, hi - 1)
    sums = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    return (sums[hi] - sums[lo]) / (hi - lo).reshape((-1,) + (1,) * (values.ndim - 1))


def loudness_db(audio: np.ndarray) -> np.ndarray:
    """RMS in dB per 10 ms feature frame, relative to the clip's 95th percentile."""
    import librosa

    rms = librosa.feature.rms(y=audio, frame_length=N_FFT, hop_length=HOP_LENGTH, center=True)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-5))
    ref = max(np.percentile(db, 95), -50.0)  # a silent clip stays silent instead of being normalised up
    return np.maximum(db - ref, -60.0)


def envelope_from_db(db: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Loudness in dB -> [0, 1]; the floor is where the mouth rests."""
    return np.clip((db - floor_db) / -floor_db, 0.0, 1.0)


def extract_features(audio: np.ndarray, fps: float) -> AudioFeatures:
    import librosa

    num_frames = num_video_frames(len(audio), fps)
    db = loudness_db(audio)
    padded = audio if len(audio) >= N_FFT else np.pad(audio, (0, N_FFT - len(audio)))
    f0 = librosa.yin(padded, fmin=60, fmax=400, sr=SAMPLE_RATE, frame_length=N_FFT * 2, hop_length=HOP_LENGTH)
    n = min(len(f0), len(db))
    voiced = (db[:n] > -30) & (f0[:n] > 65) & (f0[:n] < 390)
    semis = np.zeros(n)
    if voiced.any():
        midi = 12 * np.log2(f0[:n][voiced])
        semis[voiced] = midi - np.median(midi)
    mel = librosa.feature.melspectrogram(
        y=padded, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS
    )
    logmel = np.log(np.maximum(mel.T, 1e-8))
    rms_db = to_video_frames(db, num_frames, fps)
    return AudioFeatures(
        fps=fps,
        rms_db=rms_db,
        envelope=envelope_from_db(rms_db),
        pitch=to_video_frames(semis, num_frames, fps),
        voiced=to_video_frames(voiced.astype(float), num_frames, fps) > 0.5,
        mel=to_video_frames(logmel, num_frames, fps).astype(np.float32),
    )


def read_audio_blocks(
    source: str | Path, raw_rate: int | None = None, block_seconds: float = 0.2
) -> Iterator[np.ndarray]:
    """Decode a file, or standard input ("-"), to mono float32 blocks at SAMPLE_RATE as it arrives.

    raw_rate: the input is headerless 16-bit mono PCM at this rate (stdin pipelines); otherwise
    ffmpeg finds the format itself (wav, flac, mp3, ...). Bad or empty input raises AudioError."""
    from_stdin = str(source) == "-"
    if not from_stdin and Path(source).is_dir():
        raise AudioError(
            f"{source} is a folder, not audio", hint="give the speech file (several: one video each)"
        )
    if not from_stdin and not Path(source).is_file():
        raise InputError(f"audio file not found: {source}")
    if not from_stdin and Path(source).stat().st_size == 0:
        raise AudioError(
            f"the audio file {source} is empty (0 bytes)", hint="give a speech recording: wav, mp3, flac, ..."
        )
    name = "standard input" if from_stdin else str(source)
    fmt = ["-f", "s16le", "-ar", str(raw_rate), "-ac", "1"] if raw_rate else []
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        *fmt,
        "-i",
        "pipe:0" if from_stdin else str(source),
        "-vn",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "pipe:1",
    ]
    proc = subprocess.Popen(
        cmd, stdin=None if from_stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    block_bytes = 4 * max(1, int(block_seconds * SAMPLE_RATE))
    total = 0
    try:
        while chunk := proc.stdout.read(block_bytes):
            block = np.frombuffer(chunk[: len(chunk) // 4 * 4], dtype=np.float32).copy()
            if not np.all(np.isfinite(block)):
                raise AudioError(
                    f"{name} has non-finite samples (NaN or infinity)",
                    hint="the file is damaged; export it again, e.g. as 16-bit PCM WAV",
                )
            total += len(block)
            yield np.clip(block, -1.0, 1.0)
        proc.wait()
        if proc.returncode != 0:
            detail = proc.stderr.read().decode(errors="replace").strip()
            reason = detail.splitlines()[-1] if detail else f"ffmpeg exit {proc.returncode}"
            if "matches no streams" in detail:
                if not from_stdin and _is_image(Path(source)):
                    raise AudioError(
                        f"{name} is an image, not audio", hint="the order is: tm render PORTRAIT AUDIO"
                    )
                raise AudioError(
                    f"cannot read audio from {name}: it has no audio track",
                    hint="give a speech recording (wav, mp3, ...) or a video with sound",
                )
            raise AudioError(f"cannot read audio from {name}: {reason}")
        if total == 0:
            raise AudioError(f"{name} has no audio samples", hint="is it empty or zero-length?")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _is_image(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False
