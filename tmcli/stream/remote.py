"""The generator in a process of its own: TalkingMachines' disaggregated serving.

The generator (audio, features, phones, the diffusion model) runs in process 0, on its own
device; the renderer and the encoder in process 1 (the caller's). Motion chunks go from one to
the other over torch.distributed: gloo between CPU processes, nccl between GPUs. Each chunk is
sent as it is made, so the renderer works on chunk k while the generator makes chunk k+1,
exactly as the threads of one process do; the frames are the same as a one-process render.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from tmcli.core.errors import ConfigError, TmError
from tmcli.core.runtime import StageDevices, StageTimer, render_threads, staged
from tmcli.face.rig import MOTION_DIM

END, FAILED, READY = 0, -1, -2  # chunk headers that are not frame counts
JOIN_TIMEOUT_S = 300  # how long either side waits for the other to join


def backend(devices: StageDevices) -> str:
    """nccl between two GPUs; gloo otherwise (CPUs, a CPU and a GPU, or both processes on one GPU,
    which nccl refuses), motion then going through host memory."""
    both_gpus = devices.generator.type == "cuda" and devices.renderer.type == "cuda"
    return "nccl" if both_gpus and devices.split else "gloo"


def link(devices: StageDevices, own, peer: int) -> MotionLink:
    """This process's end of the motion link: chunks on its own device under nccl, on the host under gloo."""
    return MotionLink(own if backend(devices) == "nccl" else "cpu", peer)


class MotionLink:
    """Motion chunks over torch.distributed: a header (frames in the chunk; END; FAILED), then the chunk."""

    def __init__(self, device, peer: int):
        self.device, self.peer = device, peer

    def send(self, chunk: np.ndarray | None, header: int | None = None) -> None:
        import torch
        import torch.distributed as dist

        n = len(chunk) if chunk is not None else END if header is None else header
        dist.send(torch.tensor([n], dtype=torch.int64, device=self.device), self.peer)
        if chunk is not None:
            dist.send(
                torch.as_tensor(np.ascontiguousarray(chunk, dtype=np.float32), device=self.device), self.peer
            )

    def wait_ready(self) -> None:
        """Wait for READY (or the failure that came instead)."""
        import torch
        import torch.distributed as dist

        header = torch.zeros(1, dtype=torch.int64, device=self.device)
        dist.recv(header, self.peer)
        if int(header.item()) == FAILED:
            raise _Failed()

    def receive(self) -> Iterator[np.ndarray]:
        import torch
        import torch.distributed as dist

        header = torch.zeros(1, dtype=torch.int64, device=self.device)
        while True:
            dist.recv(header, self.peer)
            n = int(header.item())
            if n <= 0:
                if n == FAILED:
                    raise _Failed()
                return
            chunk = torch.empty(n, MOTION_DIM, dtype=torch.float32, device=self.device)
            dist.recv(chunk, self.peer)
            yield chunk.cpu().numpy()


class _Failed(Exception):
    """The generator process failed; its error is in the error queue."""


class RemoteMotionSource:
    """MotionSource's interface, with the source running in a spawned process (rank 0)."""

    def __init__(
        self,
        audio_path,
        preset,
        generator,
        checkpoint,
        devices: StageDevices,
        seed,
        transcript,
        raw_rate,
        timer: StageTimer,
    ):
        if str(audio_path) == "-":
            raise ConfigError("--disaggregate reads audio from a file, not standard input")
        from tmcli.stream.sources import check_generator

        check_generator(generator)  # before a process is started for it
        local = dataclasses.replace(devices, processes=False)
        self.args = (audio_path, preset, generator, checkpoint, local, seed, transcript, raw_rate)
        self.devices, self.timer = devices, timer
        self.stage = "motion from the generator process"
        self.total_frames = None

    def __enter__(self) -> RemoteMotionSource:
        ctx = multiprocessing.get_context("spawn")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        self.errors = ctx.SimpleQueue()
        self.process = ctx.Process(
            target=_generator_process, args=(self.address, self.args, self.errors), name="tm-generator"
        )  # not a daemon: it starts a phones worker
        self.process.start()
        self.joined = False
        return self

    def start(self) -> None:
        """Nothing to wait for: the process loads while this one finds the portrait's landmarks."""

    def wait_ready(self) -> None:
        """Join the generator process and wait until it has loaded (so the stream's clock starts
        with both sides ready, as with one process)."""
        import datetime

        import torch.distributed as dist

        with self.timer("load generator (its process)"):
            dist.init_process_group(
                backend(self.devices),
                init_method=self.address,
                rank=1,
                world_size=2,
                timeout=datetime.timedelta(seconds=JOIN_TIMEOUT_S),
            )
            self.joined = True
            self.link = link(self.devices, self.devices.renderer, peer=0)
            try:
                self.link.wait_ready()
            except _Failed:
                raise self.errors.get() from None

    def chunks(self, writer=None) -> Iterator[np.ndarray]:
        try:
            yield from self.link.receive()
        except _Failed:
            raise self.errors.get() from None

    def __exit__(self, *exc) -> None:
        import torch.distributed as dist

        if self.joined:
            dist.destroy_process_group()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def _generator_process(address: str, args: tuple, errors) -> None:
    """Process 0: the motion source, each chunk sent to the renderer's process as it is made."""
    import datetime

    import torch.distributed as dist

    from tmcli.stream.sources import QUEUE_CHUNKS, MotionSource

    devices: StageDevices = args[4]
    dist.init_process_group(
        backend(devices),
        init_method=address,
        rank=0,
        world_size=2,
        timeout=datetime.timedelta(seconds=JOIN_TIMEOUT_S),
    )
    motion_link = link(devices, devices.generator, peer=1)
    try:
        with (
            render_threads(),
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            source = MotionSource(*args, timer=StageTimer(), pool=pool)
            source.start()
            motion_link.send(None, READY)
            for chunk in staged(source.chunks(), QUEUE_CHUNKS):  # made in a thread, as in one process
                motion_link.send(chunk)
        motion_link.send(None)
    except BaseException as exc:  # handed to the renderer's process, which raises it
        errors.put(
            exc
            if isinstance(exc, TmError)
            else TmError(f"the generator process failed: {type(exc).__name__}: {exc}")
        )
        motion_link.send(None, FAILED)
    finally:
        dist.destroy_process_group()
