"""tm export: the fixed-shape chunk step, each format's round trip, bad artifacts, and
`tm render --engine onnx` giving the frames PyTorch gives."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tmcli.core.errors import ExportError, InputError, OutputError
from tmcli.core.media import umask
from tmcli.face.rig import MOTION_DIM, pose_landmarks
from tmcli.motion.causal_dit import FixedShapeStep
from tmcli.motion.controls import Controls
from tmcli.speech.features import FEATURE_DIM
from tmcli.stream.engine import ExportedChunkStep, ExportedModel, GraphedChunkStep
from tmcli.stream.generator import StreamingGenerator
from tmcli.tools.export import export
from tmcli.tools.graphs import RealInputs

from conftest import PORTRAIT, SPEECH
from tiny_models import C, tiny_student
from tiny_models import student_clip as clip
from tiny_models import student_stream as stream


@torch.no_grad()
def test_the_fixed_shape_step_equals_the_cached_step_as_the_window_fills_and_rolls():
    model = tiny_student(window_chunks=2)
    x = clip(model, chunks=6)
    want, _ = stream(model, x)
    step = FixedShapeStep(model)
    state = list(step.example_inputs()[6:])
    vector = torch.as_tensor(Controls().vector())[None]
    got, valid = [], []
    for i in range(6):
        frames, audio = slice(i * C, (i + 1) * C), x["audio"][:, i * C : i * C + model.audio_span]
        velocity, *_ = step(
            x["noisy"][:, frames],
            x["timestep"][:, i],
            audio,
            x["neutral"],
            vector,
            torch.tensor([False]),
            *state,
        )
        got.append(velocity)
        _, *state = step(
            x["clean"][:, frames], torch.zeros(1), audio, x["neutral"], vector, torch.tensor([True]), *state
        )
        valid.append(int(state[5].sum()))
    torch.testing.assert_close(torch.cat(got, dim=1), want, atol=1e-5, rtol=1e-4)
    assert valid == [0, C, 2 * C, 2 * C, 2 * C, 2 * C]  # the sink first, then the band fills and rolls


@torch.no_grad()
def test_the_graphed_chunk_step_streams_what_the_student_streams():
    """GraphedChunkStep's buffers (inputs copied in, the cache kept in place, one graph for both
    passes) run eagerly on the CPU: the stream equals the student's through the rolling window,
    twice in a row (new_cache empties it), and refuses a cache it did not make."""
    model = tiny_student(window_chunks=2)
    features = np.random.default_rng(2).normal(size=(37, FEATURE_DIM)).astype(np.float32)
    want = StreamingGenerator(model)(features, Controls(), seed=4)
    graphed = GraphedChunkStep(model)
    for _ in range(2):
        got = StreamingGenerator(graphed)(features, Controls(), seed=4)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError, match="the cache its new_cache made"):
        graphed.step(
            torch.zeros(1, C, MOTION_DIM),
            torch.zeros(1),
            torch.zeros(1, model.audio_span, FEATURE_DIM),
            model.new_cache(),
            torch.zeros(1, MOTION_DIM),
            {},
        )


def test_the_rig_poses_a_batch_as_it_poses_each_frame(portrait):
    rig = portrait.rig
    motion = np.random.default_rng(0).normal(scale=0.4, size=(6, MOTION_DIM))
    batch = pose_landmarks(torch.as_tensor(motion), **rig.tensors()).numpy()
    np.testing.assert_allclose(batch, np.stack([rig.apply(m) for m in motion]), atol=1e-9)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    tiny_student(window_chunks=2).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def real():
    """Features, and the astronaut's rig and renderer at 192 px (the warp graph's size)."""
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait

    features = np.random.default_rng(1).normal(size=(23, FEATURE_DIM)).astype(np.float32)
    face = Portrait.load(PORTRAIT, load_preset().with_overrides(output={"size": 192}))
    return RealInputs(features, face.rig.tensors(), face.renderer)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, dtype", [("onnx", "fp32"), ("onnx", "fp16"), ("torch-export", "fp32"), ("safetensors", "fp16")]
)
def test_an_export_streams_the_motion_pytorch_streams(student_dir, real, tmp_path, fmt, dtype):
    manifest = export(student_dir, tmp_path / "x", fmt, dtype, real)
    check = manifest["verification"]
    assert check["stream, real"]["max_abs"] <= check["tolerance"]["motion"] * max(
        1, check["stream, real"]["scale"]
    )
    on_disk = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert on_disk["verification"] == check and on_disk["chunk"]["frames"] == C
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temporary folder left
    if fmt == "safetensors":
        weights = tmp_path / "x" / "diffusion_pytorch_model.safetensors"
        assert weights.is_file() and weights.stat().st_mode & 0o777 == 0o666 & ~umask()  # shareable, not 0600
        assert check["stream, real"]["max_abs"] > 0  # checked against the fp32 model, not its rounded copy
        from tmcli.core.config import load_preset
        from tmcli.motion.causal_dit import CausalMotionDiT
        from tmcli.stream.generator import load_generator

        loaded = load_generator(tmp_path / "x", load_preset("default"), "student")  # as --checkpoint x does
        assert isinstance(loaded.model, CausalMotionDiT)  # a plain checkpoint, not a graph folder
        return
    assert check["face_rig, real"]["max_abs"] <= check["tolerance"]["landmarks_px"]
    assert (
        check["warp, real"]["max_abs"] <= check["tolerance"]["warp"] and check["warp, random"]["scale"] > 0.5
    )
    assert set(manifest["graphs"]) == {"chunk_step", "face_rig", "warp"} and manifest["warp"]["size"] == 192
    # run it again here, as `tm render --engine` does, on features the check did not see
    features = np.random.default_rng(5).normal(size=(31, FEATURE_DIM)).astype(np.float32)
    model = tiny_student(window_chunks=2)
    want = StreamingGenerator(model)(features, Controls(), seed=3)
    got = StreamingGenerator(ExportedChunkStep(ExportedModel(tmp_path / "x", fmt)))(
        features, Controls(), seed=3
    )
    assert got.shape == want.shape == (31, MOTION_DIM)
    want, got = model.normalize(torch.as_tensor(want)), model.normalize(torch.as_tensor(got))
    error = float((want - got).abs().max())
    assert error <= check["tolerance"]["motion"] * max(1.0, float(want.abs().max()))
    assert error > 0 or dtype == "fp32"  # fp16 rounds: the check is not comparing PyTorch with itself


@pytest.mark.slow
def test_bad_requests_and_bad_artifacts_are_clear_errors(student_dir, real, tmp_path):
    with pytest.raises(ExportError, match="bf16"):
        export(student_dir, tmp_path / "a", "onnx", "bf16", real)
    with pytest.raises(ExportError, match="unknown format"):
        export(student_dir, tmp_path / "a", "tflite", "fp32", real)
    teacher = tmp_path / "teacher"
    from tmcli.motion.dit import MotionDiT

    MotionDiT(hidden_size=32, num_layers=1, num_heads=2).save_pretrained(teacher)
    with pytest.raises(InputError, match="teacher"):
        export(teacher, tmp_path / "a", "onnx", "fp32", real)
    good = tmp_path / "good"
    export(student_dir, good, "onnx", "fp32", real)
    with pytest.raises(OutputError, match="exists"):
        export(student_dir, good, "onnx", "fp32", real)
    with pytest.raises(InputError, match="no manifest.json"):
        ExportedModel(tmp_path)
    with pytest.raises(InputError, match="holds a onnx export, not torch-export"):
        ExportedModel(good, "torch-export")

    def damaged(change):
        bad = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        subprocess.run(["cp", "-r", str(good), str(bad)], check=True)
        change(bad, json.loads((bad / "manifest.json").read_text()))
        return bad

    def write(folder, manifest):
        (folder / "manifest.json").write_text(json.dumps(manifest))

    cases = {
        "version 9": lambda d, m: write(d, m | {"version": 9}),
        "is missing": lambda d, m: (d / "face_rig.onnx").unlink(),
        "checksum": lambda d, m: (d / "chunk_step.onnx").write_bytes(
            (d / "chunk_step.onnx").read_bytes()[:-9]
        ),
        "not valid JSON": lambda d, m: (d / "manifest.json").write_text("{"),
        "not the manifest's": lambda d, m: write(
            d,
            m
            | {
                "graphs": m["graphs"]
                | {
                    "chunk_step": m["graphs"]["chunk_step"]
                    | {
                        "inputs": [
                            s | {"shape": [2, *s["shape"][1:]]} if s["name"] == "motion" else s
                            for s in m["graphs"]["chunk_step"]["inputs"]
                        ]
                    }
                }
            },
        ),
    }
    for message, change in cases.items():
        with pytest.raises(InputError, match=message):
            ExportedModel(damaged(change))


def tm(*args):
    return subprocess.run(
        [sys.executable, "-m", "tmcli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_tm_export_then_render_with_the_onnx_engine_gives_pytorchs_video(tmp_path):
    """The shipped student exported by the CLI, then rendered by onnxruntime: the same motion and,
    but for a level of rounding, the same frames."""
    from tmcli.core.media import read_video_frames
    from tmcli.motion.curves import read_motion

    done = tm("export", "default", "-o", tmp_path / "onnx", "--size", "192", "-q")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    lossless = (
        tmp_path / "lossless.toml"
    )  # so the encoder cannot spread one-level differences (yuv420p still can)
    lossless.write_text("[output]\ncrf = 0\n")
    small = ["--size", "192", "--crop", "-q", "--preset", lossless]
    for name, extra in (("torch", []), ("onnx", ["--engine", "onnx", "--model", tmp_path / "onnx"])):
        run = tm(
            "render",
            PORTRAIT,
            SPEECH,
            "-o",
            tmp_path / f"{name}.mp4",
            "--motion-out",
            tmp_path / f"{name}.json",
            *small,
            *extra,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    a, b = (read_motion(tmp_path / f"{n}.json", 25.0) for n in ("torch", "onnx"))
    assert a.shape == b.shape == (100, MOTION_DIM) and np.abs(a - b).max() < 1e-4
    x, y = (
        np.stack(list(read_video_frames(tmp_path / f"{n}.mp4"))[1:]).astype(float) for n in ("torch", "onnx")
    )
    assert x.shape == y.shape and np.abs(x - y).max() <= 4 and np.abs(x - y).mean() < 0.05
    wrong = tm(
        "render",
        PORTRAIT,
        SPEECH,
        "-o",
        tmp_path / "w.mp4",
        "--engine",
        "torch-export",
        "--model",
        tmp_path / "onnx",
    )
    assert wrong.returncode == 2 and "not torch-export" in wrong.stderr and not (tmp_path / "w.mp4").exists()
    other_size = tm(
        "render",
        PORTRAIT,
        SPEECH,
        "-o",
        tmp_path / "w.mp4",
        "--size",
        "256",
        "--crop",
        "--engine",
        "onnx",
        "--model",
        tmp_path / "onnx",
    )
    assert (
        other_size.returncode == 2
        and "--size 192" in other_size.stderr
        and "Traceback" not in other_size.stderr
    )
    assert not (tmp_path / "w.mp4").exists()


# ---- the video backend ------------------------------------------------------------------------


@torch.no_grad()
def test_the_fixed_shape_video_step_equals_the_cached_step_as_the_window_fills_and_rolls():
    """Including the first chunk, which hears fewer audio rows and gets them padded in front."""
    from tmcli.video.wan_step import FixedShapeVideoStep

    from tiny_models import tiny_video as tiny
    from tiny_models import video_clip
    from tiny_models import video_stream_steps as stream_steps

    model = tiny(window_chunks=2)
    x = video_clip(model, frames=10)
    want = stream_steps(model, x)
    step = FixedShapeVideoStep(model, latent_size=8)
    state = list(step.example_inputs()[5:])
    c, first_row = model.config.chunk_latent_frames, model.audio_rows(0, 1)[0]
    got, valid = [], []
    for i in range(5):
        frames, rows = slice(i * c, (i + 1) * c), model.audio_rows(i * c, c)
        audio = x["audio"][:, rows[0] - first_row : rows[-1] + 1 - first_row]
        if i == 0:  # whatever the padding holds is not heard
            audio = torch.cat([torch.randn(1, step.first_chunk_pad, FEATURE_DIM) * 100, audio], dim=1)
        assert audio.shape[1] == step.audio_rows
        cond = model.condition_latents(x["portrait"], i * c, c)
        velocity, *_ = step(
            x["noisy"][:, :, frames], x["timestep"][:, i], cond, audio, torch.tensor([False]), *state
        )
        got.append(velocity)
        _, *state = step(x["clean"][:, :, frames], torch.zeros(1), cond, audio, torch.tensor([True]), *state)
        valid.append(int(state[5].sum()))
    torch.testing.assert_close(torch.cat(got, dim=2), want, atol=1e-5, rtol=1e-4)
    assert valid == [0, step.tokens, 2 * step.tokens, 2 * step.tokens, 2 * step.tokens]


@torch.no_grad()
def test_the_fixed_shape_vae_decoder_equals_the_streaming_decoder():
    from tmcli.video.vae import FixedShapeVAEDecode, StreamingVAEDecoder, build_vae

    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    latents = torch.randn(1, 4, 5, 4, 4)
    want = StreamingVAEDecoder(vae).decode(latents)
    first, later = FixedShapeVAEDecode(vae, 4, first=True), FixedShapeVAEDecode(vae, 4, first=False)
    frames, *cache = first(latents[:, :, :1])
    shapes = [t.shape for t in cache]
    assert frames.shape[2] == 1 and shapes == [t.shape for t in later.example_inputs()[1:]]
    out = [frames]
    for i in range(1, 5):
        frames, *cache = later(latents[:, :, i : i + 1], *cache)
        assert frames.shape[2] == 4 and [t.shape for t in cache] == shapes  # one cache shape throughout
        out.append(frames)
    torch.testing.assert_close(torch.cat(out, dim=2), want, atol=1e-6, rtol=0)


def make_video_student(folder, **overrides):
    """A tiny video student folder as tm distill writes one: transformer, vae/, train.json."""
    from tmcli.video.vae import build_vae

    from tiny_models import tiny_video as tiny

    tiny(window_chunks=2, **overrides).save_pretrained(folder)
    torch.manual_seed(0)
    build_vae("tiny").save_pretrained(folder / "vae")
    (folder / "train.json").write_text(json.dumps({"stage": "student", "data": {"size": 64}}))
    return folder


@pytest.fixture(scope="module")
def video_student(tmp_path_factory):
    return make_video_student(tmp_path_factory.mktemp("video_student"))


@pytest.fixture(scope="module")
def video_real():
    rng = np.random.default_rng(2)
    return RealInputs(
        rng.normal(size=(23, FEATURE_DIM)).astype(np.float32),
        face=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, dtype", [("onnx", "fp32"), ("onnx", "fp16"), ("torch-export", "fp32"), ("safetensors", "fp16")]
)
def test_a_video_export_streams_and_decodes_what_pytorch_does(
    video_student, video_real, tmp_path, fmt, dtype
):
    from tmcli.core.runtime import StageDevices
    from tmcli.stream.generator import VideoStreamingGenerator
    from tmcli.stream.video import VideoStudent

    manifest = export(video_student, tmp_path / "x", fmt, dtype, video_real)
    check = manifest["verification"]
    expected = {
        "vae_encode, real",
        "stream, real",
        "stream, random",
        "vae decode, real",
        "vae decode, random",
    }
    assert expected | ({"chunk_step, random"} if fmt != "safetensors" else set()) == set(check) - {
        "tolerance"
    }
    assert manifest["model"]["class"] == "WanAudioTransformer" and manifest["frame_size"] == 64
    assert [p.name for p in tmp_path.iterdir()] == ["x"]
    if fmt != "safetensors":
        assert set(manifest["graphs"]) == {"chunk_step", "vae_encode", "vae_decode_first", "vae_decode_next"}
    # run it again here, as `tm render` does, on features and a face the check did not see
    features = np.random.default_rng(7).normal(size=(30, FEATURE_DIM)).astype(np.float32)
    face = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    students = [VideoStudent(folder, StageDevices.cpu()) for folder in (video_student, tmp_path / "x")]
    frames = []
    for student in students:
        portrait = student.encode(face)
        latents = torch.cat(
            list(VideoStreamingGenerator(student.model).stream([features], portrait, seed=3)), dim=2
        )
        frames.append(student.new_decoder().decode(latents))
    want, got = frames
    assert (
        want.shape == got.shape == (1, 3, 1 + 4 * 9, 64, 64)
    )  # 30 frames need latent frames 0..8 (4 chunks of 2)
    error = float((want - got).abs().max())
    assert error <= 5 * check["tolerance"]["normalised latents, frames in [-1, 1]"]
    assert error > 0 or dtype == "fp32"  # fp16 rounds: the check is not comparing PyTorch with itself


def test_a_video_student_with_clip_image_tokens_does_not_export(tmp_path, video_real):
    student = make_video_student(tmp_path / "i2v", image_dim=16, added_kv_proj_dim=32)
    with pytest.raises(InputError, match="CLIP image tokens"):
        export(student, tmp_path / "x", "onnx", "fp32", video_real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i2v"]


@pytest.mark.slow
def test_tm_export_of_a_video_student_then_render_with_onnx_gives_pytorchs_video(video_student, tmp_path):
    from tmcli.core.media import read_video_frames

    done = tm("export", video_student, "-o", tmp_path / "onnx", "-q")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    lossless = tmp_path / "lossless.toml"
    lossless.write_text("[output]\ncrf = 0\n")
    for name, extra in (
        ("torch", ["--checkpoint", video_student]),
        ("onnx", ["--engine", "onnx", "--model", tmp_path / "onnx"]),
    ):
        run = tm(
            "render", PORTRAIT, SPEECH, "-o", tmp_path / f"{name}.mp4", "--preset", lossless, "-q", *extra
        )
        assert run.returncode == 0, run.stderr[-2000:]
    x, y = (
        np.stack(list(read_video_frames(tmp_path / f"{n}.mp4"))[1:]).astype(float) for n in ("torch", "onnx")
    )
    assert x.shape == y.shape == (100, 64, 64, 3) and x.std() > 5  # frames, not a blank
    assert np.abs(x - y).max() <= 4 and np.abs(x - y).mean() < 0.05
    wrong = tm(
        "render",
        PORTRAIT,
        SPEECH,
        "-o",
        tmp_path / "w.mp4",
        "--engine",
        "onnx",
        "--model",
        tmp_path / "onnx",
        "--device",
        "cuda",
    )
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr and not (tmp_path / "w.mp4").exists()
