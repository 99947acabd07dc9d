"""tm render's options as a RenderRequest: one render or a batch, and every check that involves
several options, before any work."""

from pathlib import Path

import pytest

from tmcli.core.errors import ConfigError
from tmcli.stream.request import RenderRequest

from conftest import PORTRAIT, SPEECH


def test_one_audio_is_one_render_named_after_it():
    request = RenderRequest(PORTRAIT, [SPEECH])
    assert request.single
    assert request.video_output() == Path("speech.mp4")
    assert RenderRequest(PORTRAIT, [Path("-")]).video_output() == Path("-")
    assert RenderRequest(PORTRAIT, [SPEECH], output=Path("x.mp4")).video_output() == Path("x.mp4")
    assert RenderRequest(PORTRAIT, [SPEECH], video=False, motion_out=Path("m.json")).video_output() is None


def test_the_flags_reach_the_preset_and_the_devices():
    request = RenderRequest(PORTRAIT, [SPEECH], fps=30, size=256, crop=True, gaze="0.5,-0.2", cfg_scale=2.0)
    settings = request.settings
    assert (settings.output.fps, settings.output.size, settings.output.crop) == (30, 256, True)
    assert (settings.controls.gaze_x, settings.controls.gaze_y) == (0.5, -0.2)
    assert settings.generator.cfg_audio == 2.0
    assert request.stage_devices.generator.type == "cpu"


def test_several_audio_files_or_a_manifest_or_processes_make_a_batch(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    batch = RenderRequest(PORTRAIT, [a, b], output=tmp_path / "out", seed=3).batch()
    assert [j.output for j in batch.jobs] == [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4"]
    assert batch.options["seed"] == 3 and "gaze" not in batch.options  # flags not given stay unset
    assert not RenderRequest(PORTRAIT, [SPEECH], num_processes=2).single


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rate": 12}, "--rate must be a sample rate"),
        ({"num_processes": 0}, "--num-processes must be at least 1"),
        ({"video": False}, "--no-video leaves nothing to write"),
        ({"motion_in": Path("m.json"), "num_processes": 2}, "--motion-in renders one video"),
        ({"audio": [Path("-")], "motion_in": Path("m.json")}, "not standard input"),
        ({"model": Path("export")}, "--model is for --engine onnx"),
        ({"engine": "tensorrt"}, "unknown engine 'tensorrt'"),
        ({"engine": "onnx"}, "--engine onnx needs --model"),
        ({"gaze": "left"}, "--gaze takes two numbers"),
    ],
)
def test_bad_option_combinations_fail_before_any_work(options, message):
    given = {"portrait": PORTRAIT, "audio": [SPEECH]} | options
    with pytest.raises(ConfigError, match=message):
        RenderRequest(**given)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"motion_out": Path("m.json")}, "--motion-out and --no-video are for one render"),
        ({"manifest": Path("jobs.csv")}, "give AUDIO files or --manifest, not both"),
        ({"output": Path("-")}, "many videos cannot all go to standard output"),
    ],
)
def test_a_batch_refuses_what_only_one_render_can_do(options, message, tmp_path):
    given = {"portrait": PORTRAIT, "audio": [tmp_path / "a.wav", tmp_path / "b.wav"]} | options
    with pytest.raises(ConfigError, match=message):
        RenderRequest(**given).batch()


def test_standard_input_can_only_be_the_one_audio(tmp_path):
    with pytest.raises(ConfigError, match="standard input can be the only AUDIO"):
        RenderRequest(PORTRAIT, [SPEECH, Path("-")]).batch()
