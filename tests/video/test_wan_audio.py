"""The video backend's network: stock Wan while the audio path is zero, cache equivalence, causal
masks, each latent frame's audio window, the paper presets, and Wan's own weights loaded."""

import pytest
import torch
from diffusers import WanTransformer3DModel

from tmcli.core.config import load_preset
from tmcli.video.pretrained import from_wan, save_audio_modules
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
