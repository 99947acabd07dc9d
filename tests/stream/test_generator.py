"""The streaming generators: the video student's stream does not depend on how the audio arrives."""

import numpy as np
import torch

from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import VideoStreamingGenerator

from tiny_models import tiny_video as tiny


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
