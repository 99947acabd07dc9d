"""tm bench for the video backend: the causal Wan DiT and the streaming VAE decoder, chunk by chunk.

Weights are random (latency does not depend on their values), so the paper-scale presets can
be timed without their weights: the DiT is built on the meta device, given memory on the
device asked for and filled with small random values. Each chunk runs exactly the streaming
path (`VideoStreamingGenerator`: `denoising_steps` passes + one cache write) and is then decoded
by `StreamingVAEDecoder`. With the DiT and the decoder on two devices the two run at once (a
thread per device), so a chunk's decode overlaps the next chunk's generation.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import queue
import threading
import time

import numpy as np
import torch
from diffusers import WanTransformer3DModel

from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError
from tmcli.core.runtime import StageDevices, host_peak_memory, peak_device_memory, torch_dtype
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.generator import VideoStreamingGenerator
from tmcli.tools.bench import commit, machine
from tmcli.video.vae import StreamingVAEDecoder, build_vae, use_tap_sum_convolutions
from tmcli.video.wan_audio import WanAudioTransformer


@dataclasses.dataclass
class VideoBenchReport:
    date: str
    machine: str
    commit: str
    preset: str
    devices: str
    dtype: str
    frame_size: int
    fps: float
    parameters: dict  # millions: dit, of it wan and audio (+ prompt), vae
    chunks: int
    frames_per_chunk: int  # video frames of a steady-state chunk
    steps: int
    dit_chunk_ms: list  # per chunk: the denoising passes and the cache write
    floor_chunk_ms: float  # (steps + 1) plain passes over a chunk alone: no cache, no past, no sink
    vae_chunk_ms: list
    first_chunk_ms: float  # stream start (models loaded) to the first chunk's frames decoded
    frames_per_s: float  # steady state, chunks after the first
    real_time_factor: float  # frames/s over the output fps
    peak_memory_gib: dict

    def rows(self) -> list[tuple[str, str]]:
        p50 = lambda xs: float(np.median(xs[1:] if len(xs) > 1 else xs))  # noqa: E731 (steady state)
        budget = 1000 * self.frames_per_chunk / self.fps
        dit = p50(self.dit_chunk_ms)
        return [
            ("parameters (M)", ", ".join(f"{k} {v:.1f}" for k, v in self.parameters.items())),
            (
                "frame size, chunk",
                f"{self.frame_size} px, {self.frames_per_chunk} frames ({budget:.0f} ms of video)",
            ),
            ("DiT per chunk (p50)", f"{dit:.1f} ms ({self.steps} steps + cache write)"),
            (
                "  floor: same passes, chunk alone",
                f"{self.floor_chunk_ms:.1f} ms (x{dit / self.floor_chunk_ms:.2f} for the cache)",
            ),
            ("VAE decode per chunk (p50)", f"{p50(self.vae_chunk_ms):.1f} ms"),
            ("first-chunk latency", f"{self.first_chunk_ms:.0f} ms"),
            (
                "frames/s (steady)",
                f"{self.frames_per_s:.2f} ({self.real_time_factor:.2f}x real time at {self.fps:g} fps)",
            ),
            (
                "DiT devices for real time",
                f"{math.ceil(dit / budget)} (DiT time / chunk duration, ideal scaling)",
            ),
            ("peak memory (GiB)", ", ".join(f"{k} {v:.2f}" for k, v in self.peak_memory_gib.items())),
        ]


def random_dit(settings, device: torch.device, dtype: torch.dtype) -> WanAudioTransformer:
    """The preset's DiT with random weights, allocated once on the device (no fp32 copy on the host)."""
    with torch.device("meta"):
        model = WanAudioTransformer(**settings.model_config())
    need = sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits // 8
    free = _free_bytes(device)
    if need > 0.9 * free:
        raise ConfigError(
            f"the DiT's weights need {need / 2**30:.1f} GiB in {dtype}; {device} has "
            f"{free / 2**30:.1f} GiB free",
            hint="on a GPU: --device cuda --dtype bf16"
            if device.type == "cpu"
            else "--dtype bf16 halves it"
            if dtype == torch.float32
            else "it needs a larger GPU",
        )
    rope = model.wan.rope
    model = model.to_empty(device=device)
    keep = set(
        WanTransformer3DModel._keep_in_fp32_modules
    )  # norms, time embedding, RoPE stay fp32 (as from_pretrained)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.data = torch.empty_like(
                p, dtype=torch.float32 if keep & set(name.split(".")) else dtype
            ).normal_(0.0, 0.02)
        fresh = type(rope)(
            rope.attention_head_dim, rope.patch_size, rope.max_seq_len
        )  # non-persistent tables
        rope.freqs_cos, rope.freqs_sin = fresh.freqs_cos.to(device), fresh.freqs_sin.to(device)
    return model.eval()


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _floor_ms(
    model: WanAudioTransformer, settings, portrait: torch.Tensor, image, device: torch.device
) -> float:
    """What a chunk's passes cost with nothing cached to attend to: the bidirectional pass over
    one chunk, (steps + 1) times; the median of 3."""
    c = settings.chunk_latent_frames
    x = torch.randn(1, portrait.shape[1], c, *portrait.shape[-2:], device=device)
    audio = torch.randn(1, len(model.audio_rows(0, c)), FEATURE_DIM, device=device)
    cond, cross = model.condition_latents(portrait, 0, c), model.cross_kv(1, image)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(settings.denoising_steps + 1):
            model(x, torch.full((1,), 500.0, device=device), cond, audio, cross)
        _sync(device)
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def bench_video(
    preset: Preset, devices: StageDevices, chunks: int, preset_name: str, seed: int = 0
) -> VideoBenchReport:
    settings = preset.video
    dtype = torch_dtype(devices.dtype)
    model = random_dit(settings, devices.generator, dtype)
    z = model.config.latent_channels
    vae = (
        use_tap_sum_convolutions(build_vae(settings.vae)).to(devices.renderer).eval()
    )  # as the render runs it
    if dtype != torch.float32:
        vae = torch.nn.Module.to(vae, dtype)  # all of it: the decoder has no fp32-only parts
    decoder = StreamingVAEDecoder(vae)
    side = settings.size // 8
    portrait = torch.randn(1, z, 1, side, side, device=devices.generator, dtype=dtype)
    image = (
        torch.randn(1, settings.image_tokens, settings.image_dim, device=devices.generator, dtype=dtype)
        if settings.image_dim
        else None
    )
    c = settings.chunk_latent_frames
    total_frames = 1 + 4 * (c * chunks - 1)
    features = np.random.default_rng(seed).standard_normal((total_frames, FEATURE_DIM)).astype(np.float32)
    stream = VideoStreamingGenerator(model).stream([features], portrait, seed, image)
    dit_ms, vae_ms, marks, done = [], [], [], queue.Queue()  # marks: when each chunk's frames were decoded
    for device in {devices.generator, devices.renderer}:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def decode_all():
        while (latents := done.get()) is not None:
            t = time.perf_counter()
            decoder.decode(latents)
            _sync(devices.renderer)
            vae_ms.append(1000 * (time.perf_counter() - t))
            marks.append(time.perf_counter())

    worker = threading.Thread(target=decode_all) if devices.split else None
    start = time.perf_counter()
    if worker:
        worker.start()
    for _ in range(chunks):
        t = time.perf_counter()
        latents = next(stream)
        _sync(devices.generator)
        dit_ms.append(1000 * (time.perf_counter() - t))
        done.put(latents)
        if not worker:
            done.put(None)
            decode_all()
    if worker:
        done.put(None)
        worker.join()
    floor = _floor_ms(model, settings, portrait, image, devices.generator)
    steady = (marks[-1] - marks[0]) if len(marks) > 1 else float("nan")
    fps = (
        (len(marks) - 1) * 4 * c / steady if len(marks) > 1 else float("nan")
    )  # 4c frames a chunk after the first
    total = sum(p.numel() for p in model.parameters()) / 1e6
    wan = sum(p.numel() for p in model.wan.parameters()) / 1e6
    memory = {
        "host": host_peak_memory() / 2**30,
        **{
            str(d): peak_device_memory(d) / 2**30
            for d in {devices.generator, devices.renderer}
            if d.type == "cuda"
        },
    }
    return VideoBenchReport(
        date=datetime.date.today().isoformat(),
        machine=machine(),
        commit=commit(),
        preset=preset_name,
        devices=devices.describe(),
        dtype=devices.dtype,
        frame_size=settings.size,
        fps=preset.output.fps,
        parameters={
            "dit": total,
            "wan": wan,
            "audio+prompt": total - wan,
            "vae": sum(p.numel() for p in vae.parameters()) / 1e6,
        },
        chunks=chunks,
        frames_per_chunk=4 * c,
        steps=settings.denoising_steps,
        dit_chunk_ms=dit_ms,
        floor_chunk_ms=floor,
        vae_chunk_ms=vae_ms,
        first_chunk_ms=1000 * (marks[0] - start),
        frames_per_s=fps,
        real_time_factor=fps / preset.output.fps,
        peak_memory_gib=memory,
    )


def report_table(report: VideoBenchReport):
    """The report as a rich table: one row per measure."""
    from rich.table import Table

    table = Table(
        title=f"tm bench --preset {report.preset} on {report.devices}, {report.dtype}, random weights"
    )
    table.add_column("measure")
    table.add_column("value")
    for row in report.rows():
        table.add_row(*row)
    return table
