"""The video backend's render: audio -> features -> causal video DiT -> latent chunks -> VAE decoder -> sink.

`tm render --checkpoint STUDENT` with a folder from `tm distill` on a video teacher lands here
(pipeline.render hands over). The student streams latent chunks as the audio arrives (the same
FeatureStream as the motion student's), and the VAE decodes each chunk once, in order, in a
thread of its own on its own device while the DiT makes the next: the TalkingMachines split.
Frames are the face crop the model was trained on (`tm data video --size`).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tmcli.core import audio as audio_mod
from tmcli.core.config import Preset
from tmcli.core.errors import ConfigError, InputError
from tmcli.core.media import VideoWriter, check_writable
from tmcli.core.runtime import StageDevices, StageTimer, on_stream, render_threads, staged


class VideoStudent:
    """A distilled video student folder (the causal WanAudioTransformer, its VAE in vae/, the
    frame size), or a `tm export` of one (its graphs, on the CPU): what the render needs of it,
    the same for both: `model` (the streaming step), `encode(frame)` -> normalised latent, and
    `new_decoder()` for a stream (its `decode(latents)` -> frames in [-1, 1])."""

    def __init__(self, path: str | Path, devices: StageDevices):
        from tmcli.stream.engine import is_export

        self.devices = devices
        if is_export(path):
            self._load_export(Path(path))
            return
        from diffusers import AutoencoderKLWan

        from tmcli.video.vae import StreamingVAEDecoder, encode, use_tap_sum_convolutions
        from tmcli.video.wan_audio import WanAudioTransformer

        path = Path(path)
        try:
            record = json.loads((path / "train.json").read_text())
            if record.get("stage") != "student":
                raise ValueError(f"it holds a video {record.get('stage')}, not a distilled student")
            self.model = WanAudioTransformer.from_pretrained(path).to(devices.generator).eval()
            vae = (
                use_tap_sum_convolutions(AutoencoderKLWan.from_pretrained(path / "vae"))
                .to(devices.renderer)
                .eval()
            )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"cannot load the video student in {path}: {str(exc).splitlines()[0]}",
                hint="make one with `tm distill VIDEO_TEACHER VIDEO_DATA -o DIR`",
            ) from None
        self.size = int(record["data"]["size"])
        self.vae = vae
        self.encode = lambda frame: encode(vae, frame.to(devices.renderer))
        self.new_decoder = lambda: StreamingVAEDecoder(vae)

    def _load_export(self, path: Path) -> None:
        from tmcli.stream.engine import ExportedModel
        from tmcli.stream.engine_video import ExportedVAE, ExportedVideoChunkStep

        if self.devices.generator.type != "cpu" or self.devices.renderer.type != "cpu":
            raise ConfigError("an export runs its graphs on the CPU", hint="render it with no --device")
        exported = ExportedModel(path)
        self.model = ExportedVideoChunkStep(exported)
        vae = ExportedVAE(exported)
        self.size = int(exported.manifest["frame_size"])
        self.encode, self.new_decoder = vae.encode, vae.decoder

    def portrait_latent(self, portrait_path: str | Path, preset: Preset, face_index: int) -> torch.Tensor:
        """The portrait's face crop at the model's size, encoded as a one-frame video (1, z, 1, h, w)."""
        return self.encode_crop(face_crop(portrait_path, preset, self.size, face_index))

    def encode_crop(self, crop: np.ndarray) -> torch.Tensor:
        """A face crop (S, S, 3) uint8 -> its normalised latent, on the generator's device."""
        pixels = torch.from_numpy(crop).permute(2, 0, 1)[None, :, None].float() / 127.5 - 1.0
        return self.encode(pixels).to(self.devices.generator)


def face_crop(portrait_path: str | Path, preset: Preset, size: int, face_index: int = 0) -> np.ndarray:
    """The portrait's face crop (size, size, 3) uint8 at rest: the first frame a video model continues."""
    from tmcli.face.rig import neutral
    from tmcli.motion.portrait import Portrait

    crop_preset = preset.with_overrides(output={"size": size, "crop": True})
    return Portrait.load(portrait_path, crop_preset, face_index).render_frame(neutral()[0])


@render_threads()
def render_video(
    portrait_path: str | Path,
    audio_path: str | Path,
    output: str | Path,
    preset: Preset,
    checkpoint: str | Path,
    seed: int = 0,
    transcript: str | None = None,
    face_index: int = 0,
    on_frame: Callable[[int, int | None], None] | None = None,
    devices: StageDevices | None = None,
    timer: StageTimer | None = None,
):
    """Render `audio_path` ("-": standard input) with the video student in `checkpoint` to `output`."""
    from tmcli.stream.generator import VideoStreamingGenerator
    from tmcli.stream.sources import RenderResult, student_features

    start, fps = time.perf_counter(), preset.output.fps
    timer = timer or StageTimer()
    devices = devices or StageDevices.cpu()
    if str(output) != "-":
        check_writable(Path(output))
    from_stdin = str(audio_path) == "-"
    student = _student(checkpoint, devices, fps, timer)
    with timer("portrait latent"):
        portrait = student.portrait_latent(portrait_path, preset, face_index)
    size = student.size
    with (
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        VideoWriter.for_speech(output, size, size, preset.output, audio_path) as writer,
    ):
        blocks = audio_mod.read_audio_blocks(audio_path, None)
        blocks = writer.tee_audio(blocks) if from_stdin else blocks
        rows = _RowCounter(student_features(blocks, preset, transcript, audio_path, pool))
        timer.mark("stream start")
        latents = VideoStreamingGenerator(student.model, devices.autocast).stream(rows, portrait, seed)
        frames = _write(
            _decoded(latents, student.new_decoder(), devices, timer), rows, writer, timer, on_frame
        )
    timer.seconds["encode (pipe)"] += writer.close_seconds
    return RenderResult.of(frames, fps, start, timer, size, (size, size))


def _student(checkpoint: str | Path, devices: StageDevices, fps: float, timer: StageTimer) -> VideoStudent:
    with timer("load generator"):
        student = VideoStudent(checkpoint, devices)
    if abs(student.model.config.fps - fps) > 1e-6:
        raise InputError(
            f"the student makes {student.model.config.fps:g} fps video; asked for {fps:g} fps",
            hint=f"render with --fps {student.model.config.fps:g}",
        )
    return student


def _write(
    chunks: Iterator[np.ndarray],
    rows: _RowCounter,
    writer: VideoWriter,
    timer: StageTimer,
    on_frame: Callable | None,
) -> int:
    """Decoded chunks to the writer, cut at the audio's last frame -> the number of frames written."""
    frames = 0
    for chunk in chunks:
        for frame in chunk[: max(0, rows.total - frames)] if rows.done else chunk:
            with timer("encode (pipe)"):
                writer.write(frame)
            frames += 1
            if frames == 1:
                timer.mark("first frame")
            if on_frame:
                on_frame(frames, rows.total if rows.done else None)
    return frames


class _RowCounter:
    """Feature blocks passed through, counted: the video ends at the last row's frame."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self.blocks, self.total, self.done = blocks, 0, False

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.total += len(block)
            yield block
        self.done = True


def _decoded(
    latent_chunks: Iterator[torch.Tensor], decoder, devices: StageDevices, timer: StageTimer
) -> Iterator[np.ndarray]:
    """Latent chunks -> uint8 frames (T, S, S, 3), the DiT and the decoder each in a thread on its own
    device."""

    def generate():
        with on_stream(devices.generator), torch.no_grad():
            while True:
                with timer("video DiT (streamed)"):
                    latents = next(latent_chunks, None)
                if latents is None:
                    return
                yield latents

    def decode(chunks):
        with on_stream(devices.renderer), torch.no_grad():
            for latents in chunks:
                with timer("VAE decode"):
                    frames = decoder.decode(latents.to(devices.renderer))[0]  # (3, T, S, S) in [-1, 1]
                    yield ((frames.permute(1, 2, 3, 0).float() + 1.0) * 127.5).round().byte().cpu().numpy()

    return staged(decode(staged(generate())))
