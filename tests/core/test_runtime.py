"""The runtime: devices, stages side by side, the generator in its own process, tm bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tmcli.core.errors import ConfigError
from tmcli.core.runtime import StageDevices, StageTimer, render_threads, staged

from conftest import PORTRAIT, SPEECH


def test_a_stage_stays_a_bounded_distance_ahead_and_stops_with_its_consumer():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    stream = staged(items(), maxsize=3)
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(made) <= 1 + 3 + 1  # the one taken, a full queue, one waiting to get in
    stream.close()  # the consumer stops early: the producer quits instead of blocking for ever
    time.sleep(0.3)
    assert len(made) <= 6


def test_a_stage_failure_reaches_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("broken chunk")

    stream = staged(items())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="broken chunk"):
        next(stream)


@pytest.mark.parametrize(
    "device, devices, dtype, message",
    [
        ("gpu", None, "fp32", "unknown device"),
        ("cuda:0", "cpu,cpu", "fp32", "not both"),
        (None, "cpu", "fp32", "two devices"),
        ("cpu", None, "fp8", "unknown dtype"),
        ("cpu", None, "bf16", "needs a GPU"),
    ],
)
def test_bad_device_settings_are_one_line_errors(device, devices, dtype, message):
    with pytest.raises(ConfigError, match=message):
        StageDevices.parse(device, devices, dtype)


def test_cuda_on_a_machine_without_it_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):
        StageDevices.parse("cuda:1")


def test_devices_split_the_generator_and_the_renderer():
    d = StageDevices.parse(devices="cpu,cpu")
    assert (str(d.generator), str(d.renderer), d.split, d.dtype) == ("cpu", "cpu", False, "fp32")
    assert StageDevices.parse("cpu", processes=True).describe() == "cpu (2 processes)"


def test_the_motion_link_uses_nccl_only_between_two_gpus():
    """nccl refuses two processes on one GPU: those, and CPUs, talk gloo through host memory."""
    import torch

    from tmcli.stream.remote import backend, link

    cpu, gpu0, gpu1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)
    cases = {(cpu, cpu): "gloo", (gpu0, cpu): "gloo", (gpu0, gpu0): "gloo", (gpu0, gpu1): "nccl"}
    for (generator, renderer), want in cases.items():
        devices = StageDevices(generator, renderer, processes=True)
        assert backend(devices) == want
        assert str(link(devices, renderer, peer=0).device) == (str(renderer) if want == "nccl" else "cpu")


def test_staged_rendering_gives_the_frames_of_one_frame_after_another(portrait):
    """Generator, renderer and encoder in threads of their own: the same frames, in order."""
    from tmcli.face.rig import MOTION_DIM, neutral
    from tmcli.stream.pipeline import frame_stream

    rng = np.random.default_rng(0)
    motion = neutral(12) + rng.normal(0, 0.15, (12, MOTION_DIM)).astype(np.float32)
    chunks = [motion[i : i + 5] for i in range(0, 12, 5)]  # 5, 5, 2 frames
    seen, timer = [], StageTimer(keep_calls=True)
    out = list(
        frame_stream(iter(chunks), portrait, StageDevices.cpu(), timer, on_motion=seen.append, queue_chunks=1)
    )
    assert len(out) == 12 and len(seen) == 3
    for (frame, started), m in zip(out, motion):
        np.testing.assert_array_equal(frame, portrait.render_frame(m))
    assert [i for i, (_, started) in enumerate(out) if started is not None] == [4, 9, 11]  # each chunk's last
    assert len(timer.calls["render"]) == 3 and len(timer.calls["generator"]) == 4  # 3 chunks + the end


def test_a_render_gives_back_autograd_and_the_thread_count_even_when_it_fails():
    """A script that renders and then trains must still get gradients (render used to switch
    autograd off for good on the calling thread)."""
    import torch

    threads = torch.get_num_threads()

    @render_threads()
    def failing_render():
        assert not torch.is_grad_enabled()
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 2) // 2)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        failing_render()
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads


@pytest.mark.slow
def test_the_generator_in_its_own_process_gives_the_same_video(tmp_path):
    """--disaggregate: the student in process 0, motion sent over gloo to the renderer in
    process 1; the same motion, bit for bit, and the same decoded frames as one process."""
    from tmcli.core.config import load_preset
    from tmcli.core.media import read_video_frames
    from tmcli.stream.pipeline import render

    motion = {}
    for name, processes in (("one", False), ("two", True)):
        chunks = []
        result = render(
            PORTRAIT,
            SPEECH,
            tmp_path / f"{name}.mp4",
            load_preset(),
            devices=StageDevices.parse("cpu", processes=processes),
            on_motion=chunks.append,
        )
        motion[name] = np.concatenate(chunks)
        assert result.frames == 100
    np.testing.assert_array_equal(motion["one"], motion["two"])
    one, two = (list(read_video_frames(tmp_path / f"{n}.mp4"))[1:] for n in ("one", "two"))
    assert len(one) == len(two) == 100
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_failing_generator_process_fails_the_render_with_its_message(tmp_path):
    from tmcli.core.config import load_preset
    from tmcli.core.errors import InputError
    from tmcli.stream.pipeline import render

    with pytest.raises(InputError, match="not a tm checkpoint"):
        render(
            PORTRAIT,
            SPEECH,
            tmp_path / "x.mp4",
            load_preset(),
            checkpoint=tmp_path,
            devices=StageDevices.parse("cpu", processes=True),
        )
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_bench_on_the_tiny_preset_reports_every_stage(tmp_path):
    """tm bench on CPU: the figures hang together (frames, stages, latencies, memory) and JSON round-trips."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmcli",
            "bench",
            "--preset",
            "tiny",
            "--seconds",
            "3",
            "--size",
            "192",
            "--crop",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "first frame" in proc.stderr + proc.stdout
    report = json.loads(out.read_text())
    assert report["frames"] == 75 and report["frame_size"] == "192x192" and report["devices"] == "cpu"
    stages = {s["stage"]: s for s in report["stages"]}
    assert set(stages) == {"audio, phones, generator (streamed)", "render", "encode (pipe)"}
    assert stages["render"]["calls"] == 15 and stages["encode (pipe)"]["calls"] == 75  # 5-frame chunks
    for s in stages.values():
        assert 0 < s["p50_ms"] <= s["p95_ms"]
    assert report["audio_before_first_frame_ms"] == 400  # a 200 ms chunk + look-ahead and context
    assert 0 < report["first_motion_ms"] < report["first_chunk_rendered_ms"] <= report["first_frame_ms"]
    assert report["first_frame_ms"] < 1000 * report["wall_s"]
    assert 0 < report["chunk_latency_p50_ms"] <= report["chunk_latency_p95_ms"]
    assert report["steady_fps"] > 0 and report["realtime_factor"] > 0
    assert report["overlap"] == pytest.approx(sum(s["share_of_wall"] for s in stages.values()), rel=1e-6)
    assert report["host_peak_mb"] > 100 and report["device_peak_mb"] == {}
    assert {"load generator", "landmarks"} <= set(report["load_s"])


def test_reduced_precision_streams_close_to_fp32():
    """--dtype bf16 / fp16 (autocast of the generator; offered on GPUs, run here on the CPU):
    the embedded student's motion stays within the precision's reach of fp32."""
    import torch

    from tmcli.motion.controls import Controls
    from tmcli.speech.features import FEATURE_DIM
    from tmcli.stream.generator import StreamingGenerator, load_motion_dit
    from tmcli.stream.sources import embedded_checkpoint

    model = load_motion_dit(embedded_checkpoint("student"))
    features = np.random.default_rng(0).normal(0, 1, (100, FEATURE_DIM)).astype(np.float32)
    reference = StreamingGenerator(model)(features, Controls(), 0)
    for dtype, tolerance in (("bf16", 0.05), ("fp16", 0.01)):
        devices = StageDevices(torch.device("cpu"), torch.device("cpu"), dtype)
        out = StreamingGenerator(model, devices.autocast)(features, Controls(), 0)
        assert out.dtype == np.float32 and out.shape == reference.shape
        error = np.abs(out - reference)
        assert 0 < error.max() < tolerance  # it did run in reduced precision, and stayed close
