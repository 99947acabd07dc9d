"""The causal student network: block-causal masks, KV-cache equivalence, bounded cache."""

import numpy as np
import torch

from tmcli.motion.causal_dit import CausalMotionDiT
from tmcli.motion.controls import Controls
from tmcli.motion.dit import MotionDiT
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import StreamingGenerator

from tiny_models import A, C, R, tiny_student
from tiny_models import student_clip as clip
from tiny_models import student_stream as stream


@torch.no_grad()
def test_cached_streaming_equals_recomputing_the_whole_sequence():
    model = tiny_student(window_chunks=2)
    x = clip(model, chunks=6)  # longer than sink + window: the rolling window evicts chunks
    streamed, _ = stream(model, x)
    whole = model.forward_sequence(**x)
    np.testing.assert_allclose(streamed.numpy(), whole.numpy(), atol=2e-5)


@torch.no_grad()
def test_a_future_chunk_cannot_change_an_earlier_one():
    model = tiny_student()
    x = clip(model, chunks=5)
    before = model.forward_sequence(**x)
    last_heard = 2 * C + model.audio_span  # chunk 2 hears audio up to here (its look-ahead included)
    changed = dict(x, audio=x["audio"].clone(), clean=x["clean"].clone(), noisy=x["noisy"].clone())
    changed["audio"][:, last_heard:] += 5.0
    changed["clean"][:, 3 * C :] += 5.0
    changed["noisy"][:, 3 * C :] += 5.0
    after = model.forward_sequence(**changed)
    np.testing.assert_allclose(before[:, : 3 * C].numpy(), after[:, : 3 * C].numpy(), atol=1e-6)
    assert (before[:, 3 * C :] - after[:, 3 * C :]).abs().min() > 0  # and the later ones do change


@torch.no_grad()
def test_the_look_ahead_is_heard():
    model = tiny_student()
    x = clip(model, chunks=3)
    changed = dict(x, audio=x["audio"].clone())
    changed["audio"][:, C + R : C + R + A] += 5.0  # the audio just after chunk 0, before chunk 1 ends
    delta = (model.forward_sequence(**x) - model.forward_sequence(**changed)).abs()
    assert delta[:, :C].max() > 1e-3  # chunk 0 hears its look-ahead


@torch.no_grad()
def test_the_sink_is_never_evicted_and_the_cache_stays_bounded():
    model = tiny_student(window_chunks=2)
    x = clip(model, chunks=8)
    changed = dict(x, clean=x["clean"].clone())
    changed["clean"][:, :C] += 5.0  # the first chunk only
    a, cache = stream(model, x)
    b, _ = stream(model, changed)
    assert (a[:, -C:] - b[:, -C:]).abs().max() > 1e-3  # the last chunk still attends to the first
    sizes = []
    short, long_ = clip(model, chunks=4, seed=1), clip(model, chunks=12, seed=1)
    for x in (short, long_):
        sizes.append(stream(model, x)[1].nbytes())
    assert sizes[0] == sizes[1] > 0  # sink + window: the same however long the stream


@torch.no_grad()
def test_the_student_starts_from_the_teachers_weights():
    torch.manual_seed(0)
    teacher = MotionDiT(hidden_size=32, num_layers=2, num_heads=2, audio_context=R)
    student = CausalMotionDiT.from_teacher(teacher, chunk_frames=C, lookahead_frames=A)
    for (name, p), (_, q) in zip(teacher.state_dict().items(), student.state_dict().items()):
        assert torch.equal(p, q), name
    assert student.config.chunk_frames == C and student.config.hidden_size == 32


@torch.no_grad()
def test_student_save_load_round_trip(tmp_path):
    model = tiny_student()
    model.save_pretrained(tmp_path)
    loaded = CausalMotionDiT.from_pretrained(tmp_path).eval()
    assert loaded.config.window_chunks == 2 and loaded.config.lookahead_frames == A
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name  # the round trip itself is exact
    x = clip(model, chunks=3)  # the outputs to float32 rounding (kernels may differ with the tensors' layout)
    np.testing.assert_allclose(
        model.forward_sequence(**x).numpy(), loaded.forward_sequence(**x).numpy(), rtol=1e-5, atol=1e-5
    )


def test_streaming_in_any_block_sizes_gives_the_same_motion():
    model = tiny_student()
    features = np.random.default_rng(0).normal(size=(23, FEATURE_DIM)).astype(np.float32)  # not whole chunks
    generator = StreamingGenerator(model)
    whole = generator(features, Controls(), seed=3)
    assert whole.shape == (23, 35)
    blocks = [features[:1], features[1:5], features[5:5], features[5:17], features[17:]]
    chunks = list(generator.stream(iter(blocks), Controls(), seed=3))
    assert [len(c) for c in chunks] == [C] * 7 + [2]
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-6)
    assert not np.allclose(generator(features, Controls(), seed=4), whole)


def test_a_chunk_is_emitted_once_its_look_ahead_has_arrived():
    model = tiny_student()
    generator = StreamingGenerator(model)
    rows = np.zeros((1, FEATURE_DIM), dtype=np.float32)
    emitted = []

    def feed():
        for i in range(12):
            emitted.append(("in", i))
            yield rows

    for _ in generator.stream(feed(), Controls()):
        emitted.append(("out",))
    first_out = emitted.index(("out",))
    assert emitted[first_out - 1] == ("in", C + A + R - 1)  # chunk 0 needs frames up to C + A + R - 1
