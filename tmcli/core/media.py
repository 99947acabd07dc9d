"""Media in and out: portraits from image files, video to an mp4 through ffmpeg.

The writer drives the ffmpeg that imageio-ffmpeg ships (ffmpeg-python builds the command), writes
to a temporary file beside the output and renames it on success, so a failed or interrupted
render never leaves a partial file at the output path.
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from tmcli.core.audio import SAMPLE_RATE, ffmpeg_exe
from tmcli.core.config import OutputSettings
from tmcli.core.errors import InputError, OutputError

VIDEO_SUFFIX = ".mp4"  # what VideoWriter writes (H.264 + AAC in mp4); another name would mislabel it


def media_streams(path: Path) -> set[str]:
    """The kinds of stream ("Video", "Audio") ffmpeg finds in a file. A still image (ffmpeg's image2
    or *_pipe formats, which also take files that are no image at all) has none."""
    try:
        probe = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    lines = probe.stderr.splitlines()
    formats = [line.split(",")[1].strip() for line in lines if line.startswith("Input #0,")]
    if not formats or formats[0] in ("image2", "mjpeg") or formats[0].endswith("_pipe"):
        return set()
    return {
        kind for line in lines if "Stream #" in line for kind in ("Video", "Audio") if f": {kind}:" in line
    }


def check_writable(path: Path) -> None:
    """Fail before rendering, not after, when the output cannot be written: its folder is made
    if missing, then a file is made in it and removed (permissions alone say nothing to root, nor
    about a read-only file system or /proc). A disk that fills up later fails in VideoWriter."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory", hint="give a file name such as out.mp4")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp_beside(path, ".check").unlink()
    except FileExistsError:
        raise OutputError(
            f"cannot make the folder {path.parent}: a file of that name is in the way",
            hint="choose another output path",
        ) from None
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent}: {exc.strerror or exc}", hint="choose a folder you can write to"
        ) from None


def check_outputs(video: str | Path | None, others: tuple = (), inputs: tuple = ()) -> None:
    """Before any work: the video (an .mp4, or "-" for standard output) and the other output
    files can be written, and none of them is one of the `inputs` (which it would overwrite)."""
    if video is not None and str(video) != "-" and Path(video).suffix.lower() != VIDEO_SUFFIX:
        raise OutputError(
            f"{video}: tm writes H.264 + AAC in an {VIDEO_SUFFIX} file, "
            f"not {Path(video).suffix or 'a file without extension'}",
            hint=f"name it {Path(video).with_suffix(VIDEO_SUFFIX)}",
        )
    for output in (video, *others):
        if output is None or str(output) == "-":
            continue
        for source in inputs:
            if source is not None and str(source) != "-" and _same_file(Path(output), Path(source)):
                raise OutputError(
                    f"the output {output} is the input {source}: it would be overwritten",
                    hint="give -o another name",
                )
        check_writable(Path(output))


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def temp_beside(path: Path, suffix: str) -> Path:
    """An empty file in `path`'s folder, hidden and unique, that `publish` renames into place."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write to {path.parent}: {exc.strerror or exc}", hint="choose a folder you can write to"
        ) from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file into place, with the permissions a plain open() would
    give it (mkstemp makes files only their owner can read)."""
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def umask() -> int:
    """The process's umask (reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_pretrained(model, folder: str | Path) -> None:
    """`model.save_pretrained(folder)` with its files readable as the umask allows: diffusers
    writes the weights file owner-only (0600), which a checkpoint meant to be shared should not be."""
    model.save_pretrained(folder)
    mode = 0o666 & ~umask()
    for file in Path(folder).iterdir():
        if file.is_file():
            file.chmod(mode)


_WRITE_HINT = "nothing was written; check the free space of the output's disk, or choose another -o"


class VideoWriter:
    """Raw RGB frames in, an H.264 yuv420p + AAC mp4 out (with +faststart).

    Use as a context manager: the file appears at `path` only if the block finishes without
    an exception. `audio_path` is muxed as it is (its own rate and channels), re-encoded to AAC;
    or, with `audio_rate`, mono float samples given to write_audio / tee_audio as they come.
    `path` of "-" writes a fragmented mp4 to standard output (for pipelines), a fragment per
    second, so a reader gets the video while it is being made.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        audio_path: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        audio_rate: int | None = None,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.to_stdout = str(path) == "-"
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.audio_path, self.audio_rate = audio_path, audio_rate
        self.crf, self.preset = crf, preset
        self._audio_queue: queue.Queue | None = None
        self._audio_thread: threading.Thread | None = None
        self.frames_written = 0
        self.close_seconds = 0.0  # time spent waiting for ffmpeg to finish after the last frame
        self._proc = None
        self._tmp: Path | None = None

    @classmethod
    def for_speech(
        cls, path: str | Path, width: int, height: int, output: OutputSettings, audio_path: str | Path | None
    ) -> VideoWriter:
        """The writer of a render of `audio_path`: its audio muxed from the file, or from standard
        input ("-") teed in as it is read; frame rate and encoder settings from `output`."""
        from_stdin = str(audio_path) == "-"
        audio, rate = (None, SAMPLE_RATE) if from_stdin else (audio_path, None)
        return cls(path, width, height, output.fps, audio, output.crf, output.x264_preset, rate)

    def __enter__(self) -> "VideoWriter":
        import ffmpeg

        if self.to_stdout:
            target, movflags = "pipe:1", "frag_keyframe+empty_moov+default_base_moof"
        else:
            check_writable(self.path)
            self._tmp = temp_beside(self.path, ".partial.mp4")
            target, movflags = str(self._tmp), "+faststart"
        video = ffmpeg.input(
            "pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{self.width}x{self.height}", r=self.fps
        )
        streams = [video.video]
        audio_fd = None
        if self.audio_path is not None:
            streams.append(ffmpeg.input(str(self.audio_path)).audio)
        elif self.audio_rate is not None:
            audio_fd, write_fd = os.pipe()
            streams.append(ffmpeg.input(f"pipe:{audio_fd}", format="f32le", ar=self.audio_rate, ac=1).audio)
        # a stream: a fragment per second, and no B-frames (they delay output, and with no edit
        # list in a fragmented mp4 they would start the video 2 frames after the audio)
        extra = {"g": max(1, round(self.fps)), "tune": "zerolatency"} if self.to_stdout else {}
        out = ffmpeg.output(
            *streams,
            target,
            format="mp4",
            vcodec="libx264",
            pix_fmt="yuv420p",
            crf=self.crf,
            preset=self.preset,
            acodec="aac",
            audio_bitrate="128k",
            movflags=movflags,
            r=self.fps,
            **extra,
        )
        out = out.global_args("-nostdin", "-v", "error", "-y")
        self._proc = subprocess.Popen(
            out.compile(cmd=ffmpeg_exe()),
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(audio_fd,) if audio_fd is not None else (),
        )
        if audio_fd is not None:
            os.close(audio_fd)
            # a thread feeds the audio, so neither pipe can stall the other inside ffmpeg
            self._audio_queue = queue.Queue()
            self._audio_thread = threading.Thread(
                target=self._feed_audio, args=(os.fdopen(write_fd, "wb"),), daemon=True
            )
            self._audio_thread.start()
        return self

    def _feed_audio(self, pipe) -> None:
        with pipe:
            while (block := self._audio_queue.get()) is not None:
                try:
                    pipe.write(block)
                except BrokenPipeError:
                    return

    def write_audio(self, samples: np.ndarray) -> None:
        """Mono float samples at audio_rate, in order (only with audio_rate)."""
        self._audio_queue.put(np.asarray(samples, dtype=np.float32).tobytes())

    def tee_audio(self, blocks):
        """Pass audio blocks through, writing each one to the video as it goes by."""
        for block in blocks:
            self.write_audio(block)
            yield block

    def write(self, frame: np.ndarray) -> None:
        """One H x W x 3 uint8 frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be {self.height}x{self.width}x3 uint8, got {frame.shape} {frame.dtype}"
            )
        try:
            self._proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            raise OutputError(
                f"ffmpeg stopped while writing {self.path}: {self._stderr()}", hint=_WRITE_HINT
            ) from None
        self.frames_written += 1

    def _stderr(self) -> str:
        """ffmpeg's last error line, e.g. "No space left on device"."""
        err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
        return err.splitlines()[-1] if err else f"exit code {self._proc.poll()}"

    def __exit__(self, exc_type, exc, tb) -> None:
        import time

        start = time.perf_counter()
        try:
            if exc_type is not None:
                self._proc.kill()
            if self._proc.stdin:
                try:
                    self._proc.stdin.close()
                except BrokenPipeError:
                    pass
            if self._audio_thread is not None:  # after the video's end, so ffmpeg can drain the audio
                self._audio_queue.put(None)
                self._audio_thread.join()
            self._proc.wait()
            self.close_seconds = time.perf_counter() - start
            if exc_type is None and self._proc.returncode != 0:
                raise OutputError(f"ffmpeg could not write {self.path}: {self._stderr()}", hint=_WRITE_HINT)
            if exc_type is None and self._tmp is not None:
                publish(self._tmp, self.path)
                self._tmp = None
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()


def read_video_frames(path: str | Path, start: float = 0.0):
    """Yield H x W x 3 uint8 frames of a video file, and its fps as the first item. start: seconds
    into the video of the first frame (ffmpeg decodes from the keyframe before and drops the frames
    before `start`, so it is frame-exact; give a time half a frame before the wanted frame's)."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    try:
        # passthrough: the frames as stored (a stream whose audio runs longer is not padded with copies)
        reader = imageio_ffmpeg.read_frames(
            str(path),
            pix_fmt="rgb24",
            input_params=["-ss", f"{start:.6f}"] if start > 0 else [],
            output_params=["-fps_mode", "passthrough"],
        )
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path} as a video: {reason}") from None
    w, h = meta["size"]
    yield meta["fps"]
    for raw in reader:
        yield np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def is_video(path: str | Path) -> bool:
    """A file with moving pictures (a video, an animated GIF), as opposed to a still image (a GIF
    of one frame is a picture)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            if not getattr(image, "is_animated", False):
                return False
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        pass
    return "Video" in media_streams(path)
