"""The runtime: the device each stage runs on, and the stages run side by side.

TalkingMachines keeps every device busy: the generator makes chunk k+1 while chunk k is
rendered and encoded. Here each stage is a thread (torch and the ffmpeg pipe release the GIL)
joined to the next by a bounded queue, so memory stays bounded however far one stage runs
ahead. On CUDA each stage thread issues its work on its own stream, and frames come back to
the host through pinned buffers on a copy stream, so the copy of frame k overlaps the compute
of frame k+1. The same pipeline runs on CPU, on one GPU, or with the generator and the
renderer on two (`--devices cuda:0,cuda:1`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tmcli.core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when first used: the speech worker starts before it loads
    import torch

DTYPES = ("fp32", "bf16", "fp16")  # precisions by name


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def parse_device(name: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N', checked against this machine, or a one-line error."""
    import torch

    try:
        device = torch.device(name.strip())
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}", hint="use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}", hint="use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for, but this machine has no usable CUDA GPU", hint="use --device cpu"
            )
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
            )
        device = torch.device("cuda", index)
    return device


@dataclass(frozen=True)
class StageDevices:
    """Where the generator and the renderer run (the decoder's place in the video backend)."""

    generator: torch.device
    renderer: torch.device
    dtype: str = "fp32"  # the generator's: fp32, or bf16 / fp16 (autocast) on a GPU
    processes: bool = False  # the generator in a process of its own (remote.py), else a thread

    @classmethod
    def cpu(cls) -> StageDevices:
        return cls.parse("cpu")

    @classmethod
    def parse(
        cls,
        device: str | None = None,
        devices: str | None = None,
        dtype: str = "fp32",
        processes: bool = False,
    ) -> StageDevices:
        """--device D (every stage on D) or --devices G,R (generator on G, renderer on R);
        processes: --disaggregate."""
        if device and devices:
            raise ConfigError("give --device or --devices, not both")
        if devices:
            names = [n for n in devices.split(",") if n.strip()]
            if len(names) != 2:
                raise ConfigError(f"--devices takes two devices, GENERATOR,RENDERER; got {devices!r}")
            generator, renderer = (parse_device(n) for n in names)
        else:
            generator = renderer = parse_device(device or "cpu")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
        if dtype != "fp32" and generator.type == "cpu":
            raise ConfigError(
                f"--dtype {dtype} needs a GPU generator", hint="on CPU the generator runs in fp32"
            )
        return cls(generator, renderer, dtype, processes)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The generator's precision: a no-op in fp32."""
        import torch

        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.generator.type, dtype=torch_dtype(self.dtype))

    @property
    def split(self) -> bool:
        return self.generator != self.renderer

    def describe(self) -> str:
        where = (
            str(self.generator) if not self.split else f"generator {self.generator}, renderer {self.renderer}"
        )
        return where + (" (2 processes)" if self.processes else "")


class StageTimer:
    """Busy time per stage, summed over calls; with `keep_calls`, every call's duration too
    (for percentiles; 8 bytes a call). Stages in different threads add to different keys."""

    def __init__(self, keep_calls: bool = False):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, array] | None = defaultdict(lambda: array("d")) if keep_calls else None
        self.marks: dict[str, float] = {}
        self.spans: dict[
            str, list[float]
        ] = {}  # stage -> [first began, last ended], seconds after the timer began
        self.origin = time.perf_counter()
        self.origin_epoch = time.time()  # the same moment on the wall clock, for other processes' timestamps

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            elapsed = end - start
            self.seconds[stage] += elapsed
            self.spans.setdefault(stage, [start - self.origin, 0.0])[1] = end - self.origin
            if self.calls is not None:
                self.calls[stage].append(elapsed)

    def record(self, stage: str, seconds: float) -> None:
        """A duration measured elsewhere, kept for percentiles only (e.g. a chunk's way from
        generator to encoder, which overlaps the stages' busy times)."""
        if self.calls is not None:
            self.calls[stage].append(seconds)

    def mark(self, event: str) -> None:
        """Seconds since the timer began at which `event` first happened (e.g. 'first frame')."""
        self.marks.setdefault(event, time.perf_counter() - self.origin)

    def write_json(self, path: str | os.PathLike, **extra) -> None:
        """Stage seconds, marks (seconds after the timer began) and the wall-clock moment it
        began, to a JSON file (`TM_TIMINGS=path.json tm render ...`: benchmarks/startup.py)."""
        record = {
            "origin_epoch": self.origin_epoch,
            "peak_memory_mb": host_peak_memory() / 2**20,
            "seconds": dict(self.seconds),
            "marks": dict(self.marks),
            "spans": dict(self.spans),
            **extra,
        }
        with open(path, "w") as f:
            json.dump(record, f, indent=1)


def preload(*modules: str) -> threading.Thread:
    """Import `modules` in a daemon thread, started now: a stage that will need them later finds
    them loaded (a second importer waits for the first)."""
    import importlib

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the stage that needs the module imports it again and reports
                return

    thread = threading.Thread(target=run, name="preload", daemon=True)
    thread.start()
    return thread


def read_ahead(items: Iterable, max_items: int = 64, stop: threading.Event | None = None) -> queue.Queue:
    """Items from a thread (started now) into a bounded queue, then None at the end (or the
    exception raised). Once `stop` is set the thread quits at its next item."""
    out: queue.Queue = queue.Queue(max_items)

    def put(item) -> bool:
        while not (stop and stop.is_set()):
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(None)
        except BaseException as exc:  # handed to the reading thread, which raises it
            put(exc)

    threading.Thread(target=run, daemon=True).start()
    return out


def staged(items: Iterable, maxsize: int = 4) -> Iterator:
    """`items` made in a thread of its own, started now, at most `maxsize` ahead of the consumer:
    a stage of the pipeline (or a prefetch). Its exception is raised in the consumer; a consumer
    that stops early stops it."""
    stop = threading.Event()
    source = read_ahead(items, maxsize, stop)

    def drain() -> Iterator:
        try:
            while (item := source.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    return drain()


@contextlib.contextmanager
def render_threads() -> Iterator[None]:
    """No autograd on this thread and half the cores for torch while a render runs (the rest
    encode: oversubscribed OpenMP threads spin and run 10x slower); both restored after, so a
    caller that renders and then trains keeps its gradients and threads. Also a decorator."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)


def on_stream(device: torch.device) -> contextlib.AbstractContextManager:
    """Run what follows on a side CUDA stream of its own (a no-op on CPU); call once per stage thread."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    import torch

    return torch.cuda.stream(torch.cuda.Stream(device))


class HostFrames:
    """Device frames (H, W, 3 uint8) -> numpy frames for the encoder.

    On CUDA: each frame is copied into one of `slots` pinned host buffers, without blocking,
    on a copy stream of its own; the encoder waits for that copy alone. `slots` must exceed
    the frames in flight between renderer and encoder (queue size x chunk + 2)."""

    def __init__(self, device: torch.device, slots: int):
        import torch

        self.device, self.slots, self.next = device, slots, 0
        self.buffers: list[torch.Tensor] = []
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, frame: torch.Tensor) -> Callable[[], np.ndarray]:
        """Start bringing `frame` to the host; the returned call waits for it and gives the array."""
        if self.copy_stream is None:
            array_ = frame.numpy()
            return lambda: array_
        import torch

        if not self.buffers:
            self.buffers = [
                torch.empty(frame.shape, dtype=frame.dtype, pin_memory=True) for _ in range(self.slots)
            ]
        slot = self.buffers[self.next]
        self.next = (self.next + 1) % self.slots
        self.copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.copy_stream):
            slot.copy_(frame, non_blocking=True)
            frame.record_stream(self.copy_stream)
            done = torch.cuda.Event()
            done.record()

        def wait() -> np.ndarray:
            done.synchronize()
            return slot.numpy()

        return wait


def capture_cuda_graph(
    run: Callable[[], object], device: torch.device
) -> tuple[torch.cuda.CUDAGraph, object]:
    """`run` (fixed shapes, no host syncs, no tensors made from host data) warmed up on a side
    stream, then captured as a CUDA graph: (the graph, the outputs each replay rewrites).
    Capture is thread-local: another stage's thread may be running kernels meanwhile."""
    import torch

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # kernels loaded, workspaces allocated, outside the graph
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = run()
    return graph, outputs


def peak_device_memory(device: torch.device) -> int | None:
    """Bytes the device's allocator held at most (None on CPU)."""
    if device.type != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))


def host_peak_memory() -> int:
    """This process's own resident high-water mark in bytes (VmHWM; ru_maxrss would include
    what the process inherited before an exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
