import subprocess

import numpy as np
import pytest

from tmcli.core import audio
from tmcli.core.errors import AudioError, InputError

from conftest import SPEECH


def _convert(tmp_path, name, *args):
    out = tmp_path / name
    subprocess.run([audio.ffmpeg_exe(), "-v", "error", "-y", "-i", str(SPEECH), *args, str(out)], check=True)
    return out


@pytest.mark.parametrize(
    "name,args",
    [
        ("a.flac", ["-ar", "44100", "-ac", "2"]),
        ("a.ogg", ["-ar", "48000", "-ac", "2", "-c:a", "libvorbis"]),
        ("a.mp3", ["-ar", "44100", "-ac", "2"]),
        ("a.m4a", ["-ar", "48000", "-ac", "1"]),
    ],
)
def test_every_format_decodes_to_the_same_16k_mono_signal(tmp_path, speech, name, args):
    got = audio.load_audio(_convert(tmp_path, name, *args))
    assert abs(len(got) - len(speech)) < 0.03 * audio.SAMPLE_RATE  # codec padding only
    n = min(len(got), len(speech), 3 * audio.SAMPLE_RATE)
    lag = int(np.argmax(np.correlate(got[:n], speech[: n - 2000], mode="valid")))
    assert np.corrcoef(got[lag : lag + n - 2000], speech[: n - 2000])[0, 1] > 0.9


def test_audio_track_of_a_video(tmp_path, speech):
    video = tmp_path / "v.mp4"
    subprocess.run(
        [
            audio.ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=64x64:d=4",
            "-i",
            str(SPEECH),
            "-shortest",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(video),
        ],
        check=True,
    )
    got = audio.load_audio(video)
    assert abs(len(got) - len(speech)) < 0.1 * audio.SAMPLE_RATE


def test_bad_audio_raises_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        audio.load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEnot really audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        audio.load_audio(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError):
        audio.load_audio(empty)
    zero = tmp_path / "zero.wav"
    import soundfile as sf

    sf.write(zero, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        audio.load_audio(zero)
    image = tmp_path / "still.mp4"
    subprocess.run(
        [audio.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", str(image)],
        check=True,
    )
    with pytest.raises(AudioError, match="no audio track"):
        audio.load_audio(image)


@pytest.mark.parametrize("fps", [25, 30, 24, 29.97])
def test_features_have_one_row_per_video_frame(speech, fps):
    feats = audio.extract_features(speech, fps)
    n = audio.num_video_frames(len(speech), fps)
    assert abs(n / fps - len(speech) / audio.SAMPLE_RATE) <= 0.5 / fps
    for arr in (feats.envelope, feats.pitch, feats.voiced, feats.rms_db):
        assert arr.shape == (n,)
    assert feats.mel.shape == (n, audio.N_MELS)


def test_envelope_follows_loudness(speech):
    feats = audio.extract_features(speech, 25)
    assert feats.envelope[:8].max() < 0.3  # the clip starts with 0.37 s of room noise
    assert feats.envelope[20:85].mean() > 0.5
    silent = audio.extract_features(np.zeros(16000, dtype=np.float32), 25)
    assert silent.envelope.max() == 0.0 and not silent.voiced.any()


def test_pitch_is_relative_to_the_speaker():
    t = np.arange(32000) / 16000
    rising = (0.3 * np.sin(2 * np.pi * np.cumsum(np.linspace(120, 240, len(t))) / 16000)).astype(np.float32)
    feats = audio.extract_features(rising, 25)
    voiced = feats.pitch[feats.voiced]
    assert feats.voiced.mean() > 0.8
    assert voiced[-5:].mean() - voiced[:5].mean() > 9  # an octave = 12 semitones, ends trimmed
