"""The data format: clips written to shards come back the same; writers resume; readers refuse
data they cannot read; the window stream is deterministic and resumable."""

import json

import numpy as np
import pytest

from tmcli.core.errors import InputError
from tmcli.speech.features import FEATURE_DIM, FEATURES_VERSION
from tmcli.train.shards import MANIFEST, ShardWriter, read_clips, read_manifest

from conftest import toy_clip


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    clips = [toy_clip(rng, n) for n in (50, 73, 61)]
    with ShardWriter(tmp_path, fps=25.0, source="toy", shard_mb=0.1) as writer:
        for clip in clips:
            writer.add(clip)
    manifest = read_manifest(tmp_path)
    assert manifest["clips"] == 3 and manifest["frames"] == 50 + 73 + 61 and len(manifest["shards"]) >= 2
    back = list(read_clips(tmp_path))
    for a, b in zip(clips, back, strict=True):
        np.testing.assert_array_equal(a.motion, b.motion)
        np.testing.assert_allclose(a.features, b.features, atol=2e-3)  # stored as float16
        np.testing.assert_allclose(a.audio, b.audio, atol=1 / 16000)  # stored as int16
        np.testing.assert_array_equal(a.controls, b.controls)
    motion = np.concatenate([c.motion for c in clips])
    np.testing.assert_allclose(manifest["stats"]["mean"], motion.mean(0), atol=1e-5)
    np.testing.assert_allclose(manifest["stats"]["std"], motion.std(0), atol=1e-4)
    lines = (tmp_path / "clips.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2]


def test_writer_resumes_and_keeps_statistics(tmp_path):
    rng = np.random.default_rng(2)
    clips = [toy_clip(rng, 40) for _ in range(4)]
    with ShardWriter(tmp_path, 25.0, "toy") as writer:
        writer.add(clips[0])
        writer.add(clips[1])
    with ShardWriter(tmp_path, 25.0, "toy") as writer:
        assert writer.num_clips == 2
        writer.add(clips[2])
        writer.add(clips[3])
    manifest = read_manifest(tmp_path)
    assert manifest["clips"] == 4 and len(manifest["shards"]) == 2
    motion = np.concatenate([c.motion for c in clips])
    np.testing.assert_allclose(manifest["stats"]["std"], motion.std(0), atol=1e-4)


def test_unfinished_shard_is_dropped_on_resume(tmp_path):
    """Clips not yet flushed are not in the manifest: a new writer starts after the last shard."""
    rng = np.random.default_rng(3)
    with ShardWriter(tmp_path, 25.0, "toy") as writer:
        writer.add(toy_clip(rng, 40))
    writer = ShardWriter(tmp_path, 25.0, "toy")
    writer.add(toy_clip(rng, 40))  # never flushed: the process "died"
    with open(tmp_path / "clips.jsonl", "a") as f:
        f.write('{"id": 1}\n')  # died between the clip lines and the manifest
    writer = ShardWriter(tmp_path, 25.0, "toy")
    assert writer.num_clips == 1
    assert len((tmp_path / "clips.jsonl").read_text().splitlines()) == 1


def test_bad_data_sets_are_refused(tmp_path):
    with pytest.raises(InputError, match="not a tm data set"):
        read_manifest(tmp_path)
    with ShardWriter(tmp_path, 25.0, "toy") as writer:
        writer.add(toy_clip(np.random.default_rng(0), 30))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["features"]["version"] = 999
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="other audio features"):
        read_manifest(tmp_path)
    manifest["features"]["version"] = FEATURES_VERSION
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="fps"):
        ShardWriter(tmp_path, 30.0, "toy")


def test_window_stream_is_deterministic_and_resumable(toy_data):
    from tmcli.train.windows import WindowStream

    stream = WindowStream(toy_data, window=20, context_frames=4, batch_size=3, seed=5)
    first = [b for _, b in zip(range(12), stream(0))]
    again = [b for _, b in zip(range(12), stream(0))]
    resumed = [b for _, b in zip(range(5), stream(7))]
    for a, b in zip(first, again):
        assert (a.motion == b.motion).all() and (a.audio == b.audio).all()
    for a, b in zip(first[7:], resumed):
        assert (a.motion == b.motion).all()
    batch = first[0]
    assert (
        batch.motion.shape == (3, 20, 35)
        and batch.audio.shape == (3, 24, FEATURE_DIM)
        and batch.context.shape == (3, 4, 35)
    )
    # a window at a clip's start has no context, and hears silence there
    from tmcli.speech.features import silence_features

    for b in first:
        for i in np.flatnonzero(~b.has_context.numpy()):
            np.testing.assert_array_equal(b.audio[i, :4].numpy(), silence_features(4))
