"""Training the video backend: windows along each clip, the mouth weighted, VAE then teacher."""

import json
import sys

import numpy as np
import pytest
import torch

from tmcli.cli.app import main
from tmcli.core.config import PRESET_DIR
from tmcli.speech.features import FEATURE_DIM
from tmcli.video.vae import encode
from tmcli.video.wan_audio import WanAudioTransformer

from tiny_models import tiny_video as tiny


def test_training_windows_are_cut_along_each_clip_with_their_own_audio(toy_data, tmp_path):
    from tmcli.speech.features import silence_features
    from tmcli.train.video import ClipWindows
    from tmcli.train.video_data import read_video_clips, render_video_dataset

    from conftest import PORTRAIT

    data = tmp_path / "video"
    render_video_dataset(toy_data, data, [PORTRAIT], size=64, clips=2)
    clips = list(read_video_clips(data))
    windows = ClipWindows(data, 9, 2, 2, stride=9)
    assert windows.starts == [(c, s) for c, (f, _, _) in enumerate(clips) for s in range(0, len(f) - 8, 9)]
    i = next(k for k, (_, s) in enumerate(windows.starts) if s > 0)
    c, s = windows.starts[i]
    pixels = windows.pixels(torch.tensor([i, 0]))
    assert pixels.shape == (2, 3, 9, 64, 64)
    assert torch.equal(
        pixels[0, :, 0], torch.from_numpy(clips[c][0][s]).permute(2, 0, 1).float() / 127.5 - 1.0
    )
    features = windows.features(torch.tensor([i, 0])).numpy()
    assert features.shape == (2, 2 + 9 + 2, FEATURE_DIM)
    np.testing.assert_allclose(
        features[0], clips[c][1][s - 2 : s + 11]
    )  # mid-clip: the clip's own rows before
    np.testing.assert_allclose(features[1, :2], silence_features(2))  # at the clip's start: silence before
    np.testing.assert_allclose(features[1, 2:], clips[0][1][:11])


def test_mouth_weights_weigh_the_mouth_box_and_keep_the_losss_size():
    from tmcli.train.vae import mouth_weights
    from tmcli.train.video import teacher_loss

    boxes = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 1.0, 1.0]])
    w = mouth_weights(boxes, 8, 8, 4.0)
    assert w.shape == (2, 1, 1, 8, 8)
    torch.testing.assert_close(w.mean((1, 2, 3, 4)), torch.ones(2))
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[4:, 2:6] = True  # cell centres in x 0.25-0.75, y 0.5-1
    assert (
        torch.allclose(w[0, 0, 0][inside], 4 * w[0, 0, 0][~inside][0])
        and w[0, 0, 0][~inside].unique().numel() == 1
    )
    torch.testing.assert_close(w[1], torch.ones(1, 1, 8, 8))  # a box of the whole frame: no weighting

    model = tiny(latent_channels=4).eval()
    latents = torch.randn(2, 4, 7, 8, 8)
    audio = torch.randn(2, 4 * 6 + 1 + 2, FEATURE_DIM)
    plain = teacher_loss(model, latents, audio, 0.0, torch.Generator().manual_seed(0))
    same = teacher_loss(
        model, latents, audio, 0.0, torch.Generator().manual_seed(0), mouth_weights(boxes, 8, 8, 1.0)
    )
    weighted = teacher_loss(model, latents, audio, 0.0, torch.Generator().manual_seed(0), w)
    torch.testing.assert_close(plain, same)
    assert not torch.isclose(plain, weighted)


@pytest.mark.slow
def test_video_training_stages_vae_then_teacher(toy_data, tmp_path, monkeypatch, capsys):
    from diffusers import AutoencoderKLWan

    from tmcli.train.video_data import read_video_clips, render_video_dataset

    from conftest import PORTRAIT

    data = tmp_path / "video"
    render_video_dataset(toy_data, data, [PORTRAIT], size=64, clips=4)

    def tm(*args):
        monkeypatch.setattr(
            sys, "argv", ["tm", "train", str(data), "--preset", "video-tiny", "-q", *map(str, args)]
        )
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code, capsys.readouterr()

    assert tm("-o", tmp_path / "x", "--stage", "teacher")[0] != 0  # no --vae: one line, no folder
    assert not (tmp_path / "x").exists()
    vae_dir = tmp_path / "vae"
    assert tm("-o", vae_dir, "--stage", "vae", "--steps", "30")[0] == 0
    losses = [float(row.split(",")[1]) for row in (vae_dir / "loss.csv").read_text().splitlines()[1:]]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])  # it learns to reconstruct
    vae = AutoencoderKLWan.from_pretrained(vae_dir)
    assert vae.config.z_dim == 4 and json.loads((vae_dir / "train.json").read_text())["stream"] == {
        "window": 33,
        "warmup_windows": 1,
    }  # the teacher's window (3 chunks of 3 latent frames)
    with torch.no_grad():  # its measured statistics normalise its latents: every channel about N(0, 1)
        first = torch.stack([torch.from_numpy(f[:33]) for f, _, _ in read_video_clips(data)])
        latents = encode(vae, first.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0).transpose(0, 1).flatten(1)
    assert latents.mean(1).abs().max() < 0.3 and ((latents.std(1) - 1).abs() < 0.3).all()
    assert vae.config.latents_std != [1.0] * 4
    short = tmp_path / "short.toml"  # [video] vae_window_frames: the VAE's windows, not the teacher's
    short.write_text(
        (PRESET_DIR / "video-tiny.toml").read_text().replace("[video]", "[video]\nvae_window_frames = 9")
    )
    assert tm("-o", tmp_path / "vae9", "--stage", "vae", "--steps", "1", "--preset", short)[0] == 0
    assert json.loads((tmp_path / "vae9" / "train.json").read_text())["stream"] == {
        "window": 9,
        "warmup_windows": 1,
    }
    tuned = tmp_path / "vae-tuned"  # --vae with --stage vae: a fine-tune from those weights
    assert tm("-o", tuned, "--stage", "vae", "--vae", vae_dir, "--steps", "2")[0] == 0
    assert float((tuned / "loss.csv").read_text().splitlines()[1].split(",")[1]) < 0.8 * np.mean(losses[:5])
    assert json.loads((tuned / "train.json").read_text())["init"] == str(vae_dir.resolve())
    code, out = tm("-o", tmp_path / "y", "--stage", "vae", "--vae", data)  # not a VAE: one line, no folder
    assert code != 0 and "is not a trained VAE" in out.err and "Traceback" not in out.err
    assert not (tmp_path / "y").exists()
    teacher = tmp_path / "teacher"
    assert tm("-o", teacher, "--vae", vae_dir, "--steps", "4")[0] == 0
    assert tm("-o", teacher, "--vae", vae_dir, "--steps", "6")[0] == 0  # resumed
    rows = (teacher / "loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    model = WanAudioTransformer.from_pretrained(teacher)
    assert (
        model.config.latent_channels == 4
        and json.loads((teacher / "train.json").read_text())["stage"] == "teacher"
    )

    # distillation: ODE pairs from the teacher's sampler, then the causal student, resumable
    def distill(*args):
        monkeypatch.setattr(
            sys,
            "argv",
            ["tm", "distill", str(teacher), str(data), "--preset", "video-tiny", "-q", *map(str, args)],
        )
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code, capsys.readouterr()

    student = tmp_path / "student"
    assert distill("-o", student, "--dmd-steps", "2")[0] != 0  # the video backend has the ODE stage only
    assert not student.exists()
    assert distill("-o", student, "--steps", "2")[0] == 0
    assert distill("-o", student, "--steps", "4")[0] == 0  # resumed
    assert [int(r.split(",")[0]) for r in (student / "loss.csv").read_text().splitlines()[1:]] == [1, 2, 3, 4]
    pairs = torch.load(student / "ode_pairs.pt", weights_only=True)
    z, f = 4, 3 * model.config.chunk_latent_frames
    assert pairs["states"].shape == (4, 2, z, f, 8, 8) and pairs["clean"].shape == (4, z, f, 8, 8)
    assert pairs["portrait"].shape == (4, z, 1, 8, 8)
    assert abs(float(pairs["states"][:, 0].std()) - 1.0) < 0.1  # the first state is the starting noise
    assert not torch.allclose(pairs["states"][:, 1], pairs["clean"])  # sigma 0.5: halfway, not the end

    # the student streams a render: frames for every audio frame, at the data's size, with the audio
    from tmcli.core.audio import load_audio
    from tmcli.core.media import read_video_frames

    from conftest import SPEECH

    out = tmp_path / "out.mp4"
    monkeypatch.setattr(
        sys,
        "argv",
        ["tm", "render", str(PORTRAIT), str(SPEECH), "-o", str(out), "--checkpoint", str(student), "-q"],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0, capsys.readouterr()
    fps, *frames = read_video_frames(out)
    assert fps == 25 and frames[0].shape == (64, 64, 3)
    assert len(frames) == round(len(load_audio(SPEECH)) / 16000 * 25)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "tm",
            "render",
            str(PORTRAIT),
            str(SPEECH),
            "-o",
            str(tmp_path / "t.mp4"),
            "--checkpoint",
            str(teacher),
            "-q",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:  # a teacher does not stream: one line, no file
        main()
    assert exit_info.value.code != 0 and "not a distilled student" in capsys.readouterr().err
    assert not (tmp_path / "t.mp4").exists()
