"""The video backend: the audio-driven causal Wan DiT, its streaming generator and the streaming VAE
decoder."""

import json
import sys

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from typer.testing import CliRunner

from tmcli.cli.app import app, main
from tmcli.core.config import PRESET_DIR, load_preset
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import VideoStreamingGenerator
from tmcli.video.pretrained import from_wan, save_audio_modules
from tmcli.video.vae import StreamingVAEDecoder, StreamingVAEEncoder, build_vae, denormalize, encode
from tmcli.video.wan_audio import WanAudioTransformer

from tiny_models import tiny_video as tiny
from tiny_models import video_clip as clip
from tiny_models import video_stream_steps as stream_steps


@torch.no_grad()
def test_bidirectional_pass_is_stock_wan_while_the_audio_path_is_zero():
    model = tiny(audio=False)
    x = clip(model)
    ours = model(x["noisy"], x["timestep"][:, 0], x["cond"], x["audio"], x["cross"])
    stock = WanTransformer3DModel(
        **{k: v for k, v in model.wan.config.items() if not k.startswith("_")}
    ).eval()
    stock.load_state_dict(model.wan.state_dict())
    text = model.prompt[None]
    theirs = stock(torch.cat([x["noisy"], x["cond"]], dim=1), x["timestep"][:, 0], text).sample
    assert ours.shape == x["noisy"].shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_cached_streaming_equals_the_masked_sequence():
    model = tiny()
    x = clip(model)
    sequence = model.forward_sequence(
        x["clean"], x["noisy"], x["timestep"], x["cond"], x["audio"], x["cross"]
    )
    streamed = stream_steps(model, x)
    assert sequence.abs().mean() > 0.1
    torch.testing.assert_close(streamed, sequence, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
@torch.no_grad()
def test_a_chunk_sees_no_future_and_only_its_window_besides_the_sink(layers):
    model = tiny(num_layers=layers)  # chunks of 2 latent frames, window 1
    x = clip(model, frames=8)
    base = model.forward_sequence(x["clean"], x["noisy"], x["timestep"], x["cond"], x["audio"], x["cross"])

    def changed(**edits):
        y = {**x, **edits}
        out = model.forward_sequence(y["clean"], y["noisy"], y["timestep"], y["cond"], y["audio"], y["cross"])
        return [
            bool((out[:, :, 2 * i : 2 * i + 2] - base[:, :, 2 * i : 2 * i + 2]).abs().max() > 1e-5)
            for i in range(4)
        ]

    future = x["clean"].clone()
    future[:, :, 6:] += 1.0  # the last chunk's clean frames: nobody before it may see them
    assert changed(clean=future) == [False, False, False, False]
    noisy = x["noisy"].clone()
    noisy[:, :, 4:6] += 1.0  # chunk 2's noisy frames change chunk 2 only
    assert changed(noisy=noisy) == [False, False, True, False]
    past = x["clean"].clone()
    past[:, :, 2:4] += 1.0  # clean chunk 1: attended by chunk 2 (its window), not by chunk 3 ...
    # ... which still hears of it from layer 2 on, through clean chunk 2's keys (as when streaming)
    assert changed(clean=past) == [False, False, True, layers > 1]
    sink = x["clean"].clone()
    sink[:, :, 0:2] += 1.0  # clean chunk 0, the sink: seen by every later chunk
    assert changed(clean=sink) == [False, True, True, True]
    audio = x["audio"].clone()
    last = model.audio_rows(6, 2)
    audio[:, last[-1] - model.audio_rows(0, 1)[0]] += 5.0  # the last row: only the last chunk hears it
    assert changed(audio=audio) == [False, False, False, True]


@torch.no_grad()
def test_each_latent_frame_hears_only_its_own_audio_window():
    model = tiny(num_layers=1)  # one block: audio reaches a token only through its own cross-attention
    x = clip(model, frames=4)
    base = model(x["noisy"], x["timestep"][:, 0], x["cond"], x["audio"], x["cross"])
    row = 3 * 4 - model.audio_rows(0, 1)[0]  # video frame 12: latent frame 3's last frame, no other's window
    audio = x["audio"].clone()
    audio[:, row] += 5.0
    diff = (
        (model(x["noisy"], x["timestep"][:, 0], x["cond"], audio, x["cross"]) - base)
        .abs()
        .amax(dim=(0, 1, 3, 4))
    )
    assert diff[3] > 1e-3 and diff[:3].max() < 1e-6
    assert list(model.video_frames(0)) == [0] and list(model.video_frames(3)) == [9, 10, 11, 12]


@torch.no_grad()
def test_streaming_generator_is_the_same_however_the_audio_arrives():
    model = tiny()
    portrait = torch.randn(1, 4, 1, 8, 8)
    features = np.random.default_rng(0).standard_normal((30, FEATURE_DIM)).astype(np.float32)
    whole = list(VideoStreamingGenerator(model).stream([features], portrait, seed=3))
    blocks = list(VideoStreamingGenerator(model).stream(np.array_split(features, 7), portrait, seed=3))
    # 30 video frames need latent frames 0..8 (frame 29 is in latent 8): 5 chunks of 2
    assert len(whole) == len(blocks) == 5
    assert all(c.shape == (1, 4, 2, 8, 8) for c in whole)
    torch.testing.assert_close(torch.cat(whole, 2), torch.cat(blocks, 2))
    other = list(VideoStreamingGenerator(model).stream([features], portrait, seed=4))
    assert (torch.cat(other, 2) - torch.cat(whole, 2)).abs().max() > 1e-3


@torch.no_grad()
def test_streaming_vae_decode_equals_one_decode_of_the_clip():
    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    video = torch.rand(1, 3, 1 + 4 * 8, 32, 32) * 2 - 1
    latents = encode(vae, video)
    assert latents.shape == (1, 4, 9, 4, 4)
    whole = vae.decode(denormalize(vae, latents)).sample.clamp(-1, 1)
    decoder = StreamingVAEDecoder(vae)
    parts = [decoder.decode(latents[:, :, i : i + 3]) for i in range(0, 9, 3)]
    assert [p.shape[2] for p in parts] == [9, 12, 12]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, atol=1e-6, rtol=0)
    decoder.reset()  # a new stream starts over
    torch.testing.assert_close(decoder.decode(latents[:, :, :3]), parts[0])


@torch.no_grad()
def test_the_renders_tap_sum_convolutions_decode_as_the_stock_ones():
    """The render's 3D convolutions as 2D ones per temporal tap: the same frames."""
    import copy

    from tmcli.video.vae import TapSumCausalConv3d, use_tap_sum_convolutions

    torch.manual_seed(0)
    stock = build_vae("tiny").eval()
    fast = use_tap_sum_convolutions(copy.deepcopy(stock))
    swapped = [m for m in fast.modules() if isinstance(m, TapSumCausalConv3d)]
    assert len(swapped) > 20 and not any(isinstance(m, TapSumCausalConv3d) for m in stock.modules())
    latents = torch.randn(1, 4, 5, 4, 4)
    want, got = StreamingVAEDecoder(stock).decode(latents), StreamingVAEDecoder(fast).decode(latents)
    assert want.shape == (1, 3, 17, 32, 32)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert fast.state_dict().keys() == stock.state_dict().keys()


def test_streaming_vae_encode_equals_one_encode_of_the_clip():
    """What VAE training streams through (the first window, then windows of 4k frames) codes
    the clip as one vae.encode does; a stream's first frame alone is an image latent."""
    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    video = torch.rand(1, 3, 1 + 4 * 8, 32, 32) * 2 - 1
    whole = vae.encode(video).latent_dist
    with torch.no_grad():
        encoder = StreamingVAEEncoder(vae)
        parts = [encoder.posterior(video[:, :, a:b]) for a, b in ((0, 9), (9, 17), (17, 33))]
        torch.testing.assert_close(torch.cat([p.mean for p in parts], dim=2), whole.mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            torch.cat([p.logvar for p in parts], dim=2), whole.logvar, atol=1e-6, rtol=0
        )
        restarted = (
            StreamingVAEEncoder(vae).posterior(video[:, :, 8:17]).mean
        )  # frame 8 coded as a first frame
        assert not torch.allclose(restarted[:, :, 1:], parts[1].mean, atol=1e-3)


def test_vae_training_learns_deep_windows_through_the_streams_state():
    """vae_stream_loss trains on the window after `warmup` others, coded first: their state
    reaches the loss, the gradient the whole VAE."""
    from tmcli.train.vae import vae_stream_loss

    torch.manual_seed(0)
    vae = build_vae("tiny")
    stream = torch.rand(1, 3, 9 + 8, 32, 32) * 2 - 1
    other = stream.clone()
    other[:, :, :9] = -stream[:, :, :9]  # the same second window after another first one

    def loss(frames, warmup):
        vae.zero_grad()
        with torch.enable_grad():  # as trainer.fit runs it (an earlier render may have turned it off)
            value = vae_stream_loss(vae, frames, 9, warmup, torch.Generator().manual_seed(1))
            value.backward()
        return value.item()

    deep = loss(stream, 1)
    assert loss(other, 1) != pytest.approx(deep, abs=1e-6)  # the warm-up window's state reaches it
    grads = [p.grad for p in vae.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_save_and_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    loaded = WanAudioTransformer.from_pretrained(tmp_path).eval()
    x = clip(model)
    with torch.no_grad():
        a = model.forward_sequence(x["clean"], x["noisy"], x["timestep"], x["cond"], x["audio"], x["cross"])
        b = loaded.forward_sequence(
            x["clean"], x["noisy"], x["timestep"], x["cond"], x["audio"], loaded.cross_kv(1)
        )
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name, billions", [("wan-1.3b-audio", (1.45, 1.6)), ("wan-14b-audio", (17.0, 18.5))])
def test_paper_presets_have_the_papers_sizes(name, billions):
    settings = load_preset(name).video
    with torch.device("meta"):
        model = WanAudioTransformer(**settings.model_config())
    total = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions[0] < total < billions[1]
    assert model.config.chunk_latent_frames == 3 and model.config.denoising_steps == 2


def test_bench_video_tiny_reports_every_chunk():
    result = CliRunner().invoke(
        app, ["bench", "--preset", "video-tiny", "--chunks", "3", "--size", "32", "--json", "-"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{\n") :])
    assert report["chunks"] == 3 and len(report["dit_chunk_ms"]) == 3 and len(report["vae_chunk_ms"]) == 3
    assert report["frames_per_chunk"] == 12 and report["frame_size"] == 32
    assert min(report["dit_chunk_ms"]) > 0 and report["first_chunk_ms"] >= report["dit_chunk_ms"][0]
    assert report["frames_per_s"] > 0


@pytest.mark.parametrize(
    "args, message",
    [(["--preset", "wan-1.3b-audio"], "GiB free"), (["--preset", "video-tiny", "--chunks", "1"], "--chunks")],
)
def test_bench_video_refuses_bad_requests_in_one_line(monkeypatch, capsys, args, message):
    monkeypatch.setattr("tmcli.tools.bench_video._free_bytes", lambda device: 2**30)
    monkeypatch.setattr(sys, "argv", ["tm", "bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code != 0 and message in out + err and "Traceback" not in out + err


@pytest.mark.parametrize("in_channels", [4, 12])  # text-to-video (z) and image-to-video (2z + 4) Wan weights
def test_loads_a_diffusers_wan_checkpoint_plus_tms_audio_modules(tmp_path, in_channels):
    torch.manual_seed(0)
    wan = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=in_channels,
        out_channels=4,
        text_dim=32,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
    )
    wan.save_pretrained(tmp_path / "transformer")
    fresh = from_wan(
        tmp_path / "transformer", text_tokens=4, audio_heads=2, audio_context=1, chunk_latent_frames=2
    )
    assert all(
        torch.equal(a, b)
        for (name, a), (_, b) in zip(fresh.wan.state_dict().items(), wan.state_dict().items())
        if name != "patch_embedding.weight"
    )
    weight = fresh.wan.patch_embedding.weight
    assert weight.shape[1] == 12 and torch.equal(weight[:, :in_channels], wan.patch_embedding.weight)
    assert (
        in_channels == 12 or weight[:, in_channels:].abs().max() == 0
    )  # T2V: condition channels start at zero
    assert all(a.to_out[0].weight.abs().max() == 0 for a in fresh.audio_attn)  # the audio path starts silent

    trained = tiny(latent_channels=4)  # stands for a model whose audio modules were trained
    save_audio_modules(trained, tmp_path / "audio.safetensors")
    model = from_wan(
        tmp_path / "transformer",
        tmp_path / "audio.safetensors",
        text_tokens=4,
        audio_heads=2,
        audio_context=1,
        chunk_latent_frames=2,
    ).eval()
    for name in ("prompt", "audio_in.0.weight", "audio_attn.1.to_out.0.weight", "audio_norm.0.weight"):
        torch.testing.assert_close(model.state_dict()[name], trained.state_dict()[name])
    x = clip(model)  # and it streams: cache == masked sequence with the loaded weights
    with torch.no_grad():
        sequence = model.forward_sequence(
            x["clean"], x["noisy"], x["timestep"], x["cond"], x["audio"], x["cross"]
        )
        torch.testing.assert_close(stream_steps(model, x), sequence, atol=1e-5, rtol=1e-4)


def test_video_data_renders_each_clips_motion_with_its_features(toy_data, tmp_path):
    from tmcli.face.landmarks import LandmarkTracker
    from tmcli.face.rig import INDEX
    from tmcli.tools.evaluate import mouth_aperture
    from tmcli.train.shards import read_clips
    from tmcli.train.video_data import read_video_clips, render_video_dataset

    from conftest import PORTRAIT

    out = tmp_path / "video"
    manifest = render_video_dataset(toy_data, out, [PORTRAIT], size=128, clips=2, shard_frames=100)
    clips = list(read_video_clips(out))
    motion = [c for _, c in zip(range(2), read_clips(toy_data))]
    assert manifest["clips"] == len(clips) == 2 and len(manifest["shards"]) == 2
    for (frames, features, which), source in zip(clips, motion):
        assert frames.shape == (len(source.motion), 128, 128, 3) and frames.dtype == np.uint8 and which == 0
        np.testing.assert_allclose(features, source.features, atol=2e-2)  # stored as float16
    frames, _, _ = clips[0]
    jaw = motion[0].motion[
        :, INDEX["jawOpen"]
    ]  # the toy clip opens the jaw (0.6) on loud frames, not on the rest
    tracker = LandmarkTracker(static=True)
    opened = mouth_aperture(tracker(frames[int(np.argmax(jaw))]))
    closed = mouth_aperture(tracker(frames[int(np.argmin(jaw))]))
    tracker.close()
    assert opened > closed + 0.05
    x0, y0, x1, y1 = (
        (np.array(manifest["mouth_boxes"][0]) * 128).round().astype(int)
    )  # where the mouth moves:
    change = np.abs(frames[int(np.argmax(jaw))].astype(float) - frames[int(np.argmin(jaw))]).sum(2)
    inside = np.zeros(change.shape, dtype=bool)
    inside[y0:y1, x0:x1] = True
    assert (
        inside.mean() < 0.3 and change[inside].mean() > 5 * change[~inside].mean()
    )  # the open jaw's change is there
    with pytest.raises(Exception, match="exists"):
        render_video_dataset(toy_data, out, [PORTRAIT], size=128, clips=1)


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
