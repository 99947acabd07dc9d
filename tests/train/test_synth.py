"""tm data synth: labels follow the true phone timings, augmentation keeps them aligned, and a
data set is the same whether made in one go or resumed."""

import numpy as np
import pytest

from tmcli.core.errors import InputError  # noqa: E402
from tmcli.face.rig import INDEX  # noqa: E402
from tmcli.speech.features import FEATURE_DIM  # noqa: E402
from tmcli.train.shards import read_clips, read_manifest
from tmcli.train.synth import SynthSettings, synth_clip, synth_dataset


def test_clip_arrays_agree_and_controls_shape_the_labels():
    clip = synth_clip(3, seed=1)
    t = len(clip.motion)
    assert clip.features.shape == (t, FEATURE_DIM) and clip.valid.all()
    assert abs(len(clip.audio) / 16000 * 25 - t) <= 1
    gaze_x = clip.controls[0]
    assert abs(np.median(clip.motion[:, INDEX["gazeX"]]) - gaze_x) < 0.25  # eyes rest where the control says
    jaw = clip.motion[:, INDEX["jawOpen"]]
    assert jaw.max() > 0.3 and np.percentile(jaw, 10) < 0.1  # the mouth opens and closes


def test_bilabials_close_the_lips_at_their_true_time(monkeypatch):
    """With augmentation off, every /p b m/ espeak reports shows mouthClose near 1 at its centre."""
    from tmcli.train import synth as synth_mod

    captured = {}
    original = synth_mod.lengthen_phrase_ends

    def spy(audio, phones, rng):
        audio, phones = original(audio, phones, rng)
        captured["phones"] = phones
        return audio, phones

    monkeypatch.setattr(synth_mod, "lengthen_phrase_ends", spy)
    from tmcli.train.augment import AugmentSettings

    clip = synth_clip(
        0, seed=2, settings=SynthSettings(languages=("en-us",), augment=AugmentSettings(probability=0))
    )
    close = clip.motion[:, INDEX["mouthClose"]]
    bilabials = [p for p in captured["phones"] if p.label in ("P", "B", "M")]
    assert bilabials
    for p in bilabials:
        frame = int((p.start + p.end) / 2 * 25)
        assert close[max(frame - 2, 0) : frame + 3].max() > 0.9, p


@pytest.mark.slow
def test_same_seed_same_data_and_resume(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    settings = SynthSettings(clip_seconds=(2.0, 3.0), languages=("en-us", "fr"))
    added = synth_dataset(whole, minutes=0.2, seed=7, settings=settings, workers=2)
    synth_dataset(resumed, minutes=0.1, seed=7, settings=settings, workers=1)
    synth_dataset(resumed, minutes=0.2, seed=7, settings=settings, workers=2)
    a, b = list(read_clips(whole)), list(read_clips(resumed))
    assert added == len(a) == len(b) and read_manifest(whole)["frames"] >= 0.2 * 60 * 25
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.motion, y.motion)
        np.testing.assert_array_equal(x.audio, y.audio)
    with pytest.raises(InputError, match="seed"):
        synth_dataset(whole, minutes=0.3, seed=8, settings=settings)


def test_misrecognized_phones_keep_timing_and_make_some_errors():
    from tmcli.speech.phones import Phone
    from tmcli.train.synth import RECOGNITION_ERRORS, misrecognize

    labels = ["M", "AA", "P", "IY", "T"] * 200
    true = [Phone("SIL", 0.0, 0.1)] + [
        Phone(lab, 0.1 + i * 0.08, 0.18 + i * 0.08) for i, lab in enumerate(labels)
    ]
    heard = misrecognize(true, np.random.default_rng(0))
    assert heard[0].start == 0.0 and heard[-1].end == true[-1].end
    assert all(a.end == b.start and a.start < a.end for a, b in zip(heard, heard[1:]))
    assert 0.9 * len(true) < len(heard) < len(true)  # a few merged away
    # at the centre of each true phone, the heard label is mostly right, and sometimes wrong
    centres = [(p.start + p.end) / 2 for p in true[1:]]
    heard_at = [next(h.label for h in heard if h.start <= t < h.end) for t in centres]
    wrong = np.mean([h != p.label for h, p in zip(heard_at, true[1:])])
    assert 0.5 * RECOGNITION_ERRORS["substitute"] < wrong < 3 * RECOGNITION_ERRORS["substitute"]


def test_phrase_ends_are_drawn_out_and_fade_while_the_rest_keeps_its_timing(monkeypatch):
    from tmcli.speech.phones import Phone
    from tmcli.train import synth as synth_mod

    monkeypatch.setitem(synth_mod.PHRASE_FINAL, "probability", 1.0)
    sr = 16000
    t = np.arange(int(1.2 * sr)) / sr
    audio = (0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    audio[int(1.0 * sr) :] = 0
    phones = [Phone("SIL", 0.0, 0.2), Phone("M", 0.2, 0.5), Phone("AA", 0.5, 1.0), Phone("SIL", 1.0, 1.2)]
    out, new = synth_mod.lengthen_phrase_ends(audio, phones, np.random.default_rng(0))
    assert new[:2] == phones[:2]  # before the phrase end nothing moves
    assert np.array_equal(out[: int(0.5 * sr)], audio[: int(0.5 * sr)])
    vowel = new[2]
    assert vowel.start == 0.5 and 1.3 * 0.5 - 0.02 < vowel.end - vowel.start < 3.0 * 0.5 + 0.02
    assert all(a.end == b.start for a, b in zip(new, new[1:]))
    assert new[-1].end - new[-1].start == pytest.approx(0.2) and new[-1].end == pytest.approx(
        len(out) / sr, abs=1e-3
    )
    piece = out[int(vowel.start * sr) : int(vowel.end * sr)]
    head, tail = piece[: len(piece) // 5], piece[-len(piece) // 5 :]
    assert np.sqrt(np.mean(tail**2)) < 0.8 * np.sqrt(np.mean(head**2))  # it trails off
    assert np.abs(out[int(new[-1].start * sr) + 200 :]).max() < 1e-3  # the pause is still silent
