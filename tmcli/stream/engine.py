"""Exported graphs (tm export) run behind the interfaces tm's own models have.

`ExportedModel` reads an export folder: its manifest (checked: version, files, checksums,
shapes) and the graphs in it, run by onnxruntime (format onnx) or torch.export's loader
(format torch-export). `ExportedChunkStep` puts the chunk-step graph behind
CausalMotionDiT's `step` interface, so StreamingGenerator and its sampler run it unchanged
(the noise is drawn the same way, so an export renders the frames PyTorch renders, within the
graph's rounding). `face_rig` is the rig graph with `pose_landmarks`' signature. A video
export's graphs go behind WanAudioTransformer's and the streaming VAE's interfaces in the
same way (`ExportedVideoChunkStep`, `ExportedVAE`).

The safetensors format is a plain tm checkpoint in the chosen dtype: `--checkpoint DIR` loads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from tmcli.core.errors import InputError
from tmcli.motion.controls import GROUPS

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tm-export"
MANIFEST_VERSION = 2  # 2: the motion export has the warp graph; video exports
ENGINES = ("onnx", "torch-export")  # formats that hold graphs (safetensors holds weights)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export(directory: str | Path | None) -> bool:
    """Whether `directory` holds an export's graphs (a safetensors export is a plain checkpoint).
    A manifest that cannot be read says yes: `ExportedModel` then says what is wrong with it."""
    if directory is None or not (Path(directory) / MANIFEST).is_file():
        return False
    try:
        return json.loads((Path(directory) / MANIFEST).read_text()).get("export_format") in ENGINES
    except (ValueError, AttributeError):
        return True


def read_export_manifest(directory: str | Path) -> dict:
    """The manifest of an export folder, checked; every problem is one clear InputError."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{directory} is not a tm export (no {MANIFEST})", hint="make one with `tm export CKPT -o DIR`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path} is not a tm export manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise InputError(
            f"{path} is version {manifest.get('version')}; this tm reads version {MANIFEST_VERSION}",
            hint="export the checkpoint again with this tm",
        )
    for name, graph in manifest.get("graphs", {}).items():
        file = directory / graph["file"]
        if not file.is_file():
            raise InputError(f"{directory}: the {name} graph ({graph['file']}) is missing")
        if sha256(file) != graph["sha256"]:
            raise InputError(f"{file} does not match its checksum in the manifest (changed or damaged)")
    return manifest


class ExportedModel:
    """An export folder's graphs, ready to run on the CPU."""

    def __init__(
        self, directory: str | Path, engine: str | None = None, graphs: tuple[str, ...] | None = None
    ):
        self.directory = Path(directory)
        self.manifest = read_export_manifest(self.directory)
        fmt = self.manifest["export_format"]
        if fmt not in ENGINES:
            raise InputError(
                f"{self.directory} holds a {fmt} export, which has no graphs to run",
                hint="render it with --checkpoint DIR (it is a tm checkpoint)",
            )
        if engine is not None and engine != fmt:
            raise InputError(
                f"{self.directory} holds a {fmt} export, not {engine}", hint=f"use --engine {fmt}"
            )
        self.format = fmt
        self._graphs = {name: self._load(name) for name in graphs or self.manifest["graphs"]}

    def _load(self, name: str):
        file = self.directory / self.manifest["graphs"][name]["file"]
        try:
            if self.format == "onnx":
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.log_severity_level = 3
                session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
                self._check_shapes(name, [(i.name, i.shape) for i in session.get_inputs()])
                names = [i.name for i in session.get_inputs()]
                return lambda *args: [
                    torch.from_numpy(o)
                    for o in session.run(None, dict(zip(names, (a.numpy() for a in args))))
                ]
            program = torch.export.load(str(file)).module()
            return lambda *args: _as_list(program(*args))
        except ImportError as exc:
            raise InputError(
                f"running an {self.format} export needs {exc.name}", hint='pip install "tm[export]"'
            ) from None
        except InputError:
            raise
        except Exception as exc:  # onnxruntime and torch.export raise their own types for a bad graph
            raise InputError(f"cannot load {file}: {str(exc).splitlines()[0][:200]}") from None

    def _check_shapes(self, name: str, graph_inputs: list[tuple[str, list]]) -> None:
        """The graph's inputs must be the manifest's (a symbolic size matches any)."""
        want = [(spec["name"], spec["shape"]) for spec in self.manifest["graphs"][name]["inputs"]]
        same = len(want) == len(graph_inputs) and all(
            n == m
            and len(s) == len(t)
            and all(isinstance(a, str) or isinstance(b, str) or a == b for a, b in zip(s, t))
            for (n, s), (m, t) in zip(want, graph_inputs)
        )
        if not same:
            raise InputError(
                f"{self.directory}: the {name} graph's inputs {graph_inputs} are not the manifest's {want}"
            )

    def run(self, name: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """One call of a graph: inputs cast to the dtypes it takes, outputs as it gives them."""
        specs = self.manifest["graphs"][name]["inputs"]
        return self._graphs[name](
            *(t.detach().cpu().to(getattr(torch, spec["dtype"])) for t, spec in zip(inputs, specs))
        )

    def face_rig(
        self,
        motion: torch.Tensor,
        rest: torch.Tensor,
        basis: torch.Tensor,
        pivot: torch.Tensor,
        unit: torch.Tensor,
    ) -> torch.Tensor:
        """`pose_landmarks` run by the exported face_rig graph."""
        return self.run("face_rig", motion, rest, basis, pivot, unit)[0].to(rest.dtype)

    def warp(self, landmarks: torch.Tensor, portrait: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One frame's landmarks (478, 3) -> the crop (1, 3, S, S), by the exported warp graph;
        portrait: FixedShapeWarp.portrait_inputs of the portrait's renderer."""
        return self.run("warp", torch.as_tensor(landmarks), *portrait)[0]


def _as_list(outputs) -> list[torch.Tensor]:
    """A graph's outputs as a list (a one-output program returns a bare tensor)."""
    return [t.detach() for t in outputs] if isinstance(outputs, (tuple, list)) else [outputs.detach()]


def empty_cache(manifest: dict) -> list[torch.Tensor]:
    """A new stream's cache for a chunk-step graph: zeros shaped as its inputs from sink_keys on
    (motion and video steps share the cache's layout, after their own chunk inputs)."""
    specs = manifest["graphs"]["chunk_step"]["inputs"]
    first = [spec["name"] for spec in specs].index("sink_keys")
    return [torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"])) for spec in specs[first:]]


class FixedCache:
    """The exported chunk step's KV cache: the tensors it takes and gives back."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors
        self.chunks = 0

    def update(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        self.chunks += 1


class ExportedChunkStep:
    """The exported chunk step behind CausalMotionDiT's streaming interface (step, sigmas,
    audio_span, normalize, denormalize, new_cache), for StreamingGenerator."""

    def __init__(self, model: ExportedModel):
        self.exported = model
        m = model.manifest
        self.config = SimpleNamespace(**m["model"])
        self.sigmas = m["sampler"]["sigmas"]
        self.audio_span = m["audio"]["span_frames"]
        self.motion_mean = torch.tensor(m["motion"]["mean"])
        self.motion_std = torch.tensor(m["motion"]["std"])
        self._empty = empty_cache(m)

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    def new_cache(self) -> FixedCache:
        return FixedCache([t.clone() for t in self._empty])

    def step(
        self,
        motion: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        cache: FixedCache,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        write: bool = False,
    ) -> torch.Tensor:
        vector = torch.cat([controls[name] for name in GROUPS], dim=-1)
        flag = torch.tensor([write])
        velocity, *new_cache = self.exported.run(
            "chunk_step", motion, timestep, audio, neutral, vector, flag, *cache.tensors
        )
        if write:
            cache.update(new_cache)
        return velocity.float()


class GraphedChunkStep:
    """The student's chunk step (FixedShapeStep) replayed as one CUDA graph, behind
    CausalMotionDiT's streaming interface as ExportedChunkStep is.

    A chunk is three passes of a small model (its denoising steps and the cache write), each a
    few hundred kernel launches: on a GPU the launches, not the arithmetic, set the chunk's time.
    The graph reads fixed buffers: the caller's inputs are copied in, the KV cache lives there
    (one stream at a time: `new_cache` empties it), and `write` is a buffer too, so one graph
    serves both passes. On the CPU the same buffers run eagerly, which is what the tests check."""

    def __init__(self, model, autocast=None):
        import contextlib

        from tmcli.core.runtime import capture_cuda_graph
        from tmcli.motion.causal_dit import FixedShapeStep

        self.config, self.sigmas, self.audio_span = model.config, model.sigmas, model.audio_span
        self.motion_mean, self.normalize, self.denormalize = (
            model.motion_mean,
            model.normalize,
            model.denormalize,
        )
        device = model.motion_mean.device
        self.fixed = FixedShapeStep(model).to(device)
        self.inputs = [t.to(device) for t in self.fixed.example_inputs()]  # the buffers, INPUTS order
        self.cache = self.inputs[6:]
        self.empty = [t.clone() for t in self.cache]
        self.graph = None
        if device.type == "cuda":  # captured with the write flag off; it is read on every replay
            with torch.no_grad(), (autocast or contextlib.nullcontext)():
                self.graph, self.outputs = capture_cuda_graph(lambda: self.fixed(*self.inputs), device)

    def new_cache(self) -> FixedCache:
        for buffer, empty in zip(self.cache, self.empty):
            buffer.copy_(empty)
        return FixedCache(self.cache)

    def step(
        self,
        motion: torch.Tensor,
        timestep: torch.Tensor,
        audio: torch.Tensor,
        cache: FixedCache,
        neutral: torch.Tensor,
        controls: dict[str, torch.Tensor],
        write: bool = False,
    ) -> torch.Tensor:
        if getattr(cache, "tensors", None) is not self.cache:
            raise RuntimeError(
                "a GraphedChunkStep streams the cache its new_cache made (one stream at a time)"
            )
        vector = torch.cat([controls[name] for name in GROUPS], dim=-1)
        for buffer, value in zip(self.inputs, (motion, timestep, audio, neutral, vector)):
            buffer.copy_(value)
        self.inputs[5].fill_(write)  # a fill, not a copy from the host
        if self.graph is not None:
            self.graph.replay()
        else:
            self.outputs = self.fixed(*self.inputs)
        velocity, *new_cache = self.outputs
        if write:
            for buffer, new in zip(self.cache, new_cache):
                buffer.copy_(new)
            cache.update(self.cache)
        return velocity.float().clone()  # the graph's own output is overwritten by the next replay


class ExportedWarp:
    """The warp graph behind MeshWarpRenderer's call (deformed landmarks -> crop), for one
    portrait: its tensors are read once from the portrait's own renderer."""

    def __init__(self, model: ExportedModel, renderer):
        from tmcli.core.errors import ConfigError
        from tmcli.motion.warp_graph import FixedShapeWarp

        size = model.manifest["warp"]["size"]
        if size != renderer.size:
            raise ConfigError(
                f"the export's warp makes {size} px crops; this portrait renders {renderer.size} px ones",
                hint=f"export for it: tm export CKPT -o DIR --portrait PORTRAIT --size N, as you render "
                f"(the crop follows --size, up to the portrait's own resolution), or render with "
                f"--size {size}",
            )
        self.exported, self.device = model, renderer.device
        self.portrait = FixedShapeWarp.portrait_inputs(renderer)

    def __call__(self, deformed) -> torch.Tensor:
        landmarks = torch.as_tensor(np.asarray(deformed), dtype=torch.float32)
        return self.exported.warp(landmarks, self.portrait).to(self.device)
