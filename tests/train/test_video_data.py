"""tm data video: each clip's motion rendered on the portraits, with its own features."""

import numpy as np
import pytest


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
