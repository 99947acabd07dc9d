"""The streaming VAE: decoding and encoding a clip in pieces equals doing it whole."""

import torch

from tmcli.video.vae import StreamingVAEDecoder, StreamingVAEEncoder, build_vae, denormalize, encode


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
