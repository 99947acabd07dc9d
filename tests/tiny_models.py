"""Tiny networks of both latent spaces and their inputs, shared by the tests of the networks,
the generators and the exports."""

import torch

from tmcli.core.attention import KVCache
from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.controls import Controls
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import split_controls
from tmcli.video.wan_audio import WanAudioTransformer

C, A, R = 3, 2, 1  # chunk frames, look-ahead frames, audio context


def tiny_student(window_chunks=2, seed=0) -> CausalMotionDiT:
    torch.manual_seed(seed)
    model = CausalMotionDiT(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        audio_context=R,
        chunk_frames=C,
        window_chunks=window_chunks,
        lookahead_frames=A,
    )
    for p in model.parameters():  # adaLN-zero starts at exactly zero output: make every path matter
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def student_clip(model, chunks, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = chunks * C
    return {
        "clean": torch.randn(1, n, 35, generator=g),
        "noisy": torch.randn(1, n, 35, generator=g),
        "timestep": torch.rand(1, chunks, generator=g) * 1000,
        "audio": torch.randn(1, n + A + 2 * R, FEATURE_DIM, generator=g),
        "neutral": torch.zeros(1, 35),
        "controls": split_controls(torch.as_tensor(Controls().vector())[None]),
    }


def student_stream(model, x):
    """The streaming path: each noisy chunk against the cache, then its clean chunk written."""
    cache = KVCache(model.config.num_layers, model.config.window_chunks)
    out = []
    for i in range(x["noisy"].shape[1] // C):
        frames, audio = slice(i * C, (i + 1) * C), x["audio"][:, i * C : i * C + model.audio_span]
        out.append(
            model.step(x["noisy"][:, frames], x["timestep"][:, i], audio, cache, x["neutral"], x["controls"])
        )
        model.step(
            x["clean"][:, frames], torch.zeros(1), audio, cache, x["neutral"], x["controls"], write=True
        )
    return torch.cat(out, dim=1), cache


TINY = dict(
    latent_channels=4,
    num_layers=2,
    num_heads=2,
    head_dim=16,
    ffn_dim=64,
    freq_dim=32,
    text_dim=32,
    text_tokens=4,
    audio_heads=2,
    audio_context=1,
    chunk_latent_frames=2,
    window_chunks=1,
)


def tiny_video(seed=0, audio=True, **overrides) -> WanAudioTransformer:
    torch.manual_seed(seed)
    model = WanAudioTransformer(**{**TINY, **overrides}).eval()
    if audio:  # the audio path starts at zero (a pretrained Wan unchanged); give it weight for the tests
        for attn in model.audio_attn:
            torch.nn.init.normal_(attn.to_out[0].weight, std=0.2)
    return model


def video_clip(model, frames=6, side=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = model.config.latent_channels
    rows = model.audio_rows(0, frames)
    portrait = torch.randn(1, z, 1, side, side, generator=g)
    return {
        "clean": torch.randn(1, z, frames, side, side, generator=g),
        "noisy": torch.randn(1, z, frames, side, side, generator=g),
        "timestep": torch.rand(1, frames // model.config.chunk_latent_frames, generator=g) * 1000,
        "audio": torch.randn(1, len(rows), FEATURE_DIM, generator=g),
        "portrait": portrait,
        "cond": model.condition_latents(portrait, 0, frames),
        "cross": model.cross_kv(1),
    }


def video_stream_steps(model, x):
    """Each chunk denoised against the cache (one pass), then its clean version written: velocities."""
    c, first_row = model.config.chunk_latent_frames, model.audio_rows(0, 1)[0]
    cache, out = model.new_cache(), []
    for i in range(x["noisy"].shape[2] // c):
        frames = slice(i * c, (i + 1) * c)
        rows = model.audio_rows(i * c, c)
        audio = x["audio"][:, rows[0] - first_row : rows[-1] + 1 - first_row]
        cond = model.condition_latents(x["portrait"], i * c, c)
        out.append(model.step(x["noisy"][:, :, frames], x["timestep"][:, i], cond, audio, cache, x["cross"]))
        model.step(x["clean"][:, :, frames], torch.zeros(1), cond, audio, cache, x["cross"], write=True)
    return torch.cat(out, dim=2)
