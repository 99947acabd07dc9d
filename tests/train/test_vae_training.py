"""Training the video backend's VAE through its streaming state."""

import pytest
import torch

from tmcli.video.vae import build_vae


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
