"""Start-up of `tm render` (issue 27): what is imported, and the timings it can write."""

import json
import subprocess
import sys
import time

from tmcli.core.runtime import StageTimer, preload


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_the_render_command_path_imports_no_video_backend():
    """diffusers' Wan (0.6 s) is for the video backend only; the CLI and the motion pipeline
    must not import it (stream/engine.py imports it when a video export is run)."""
    modules = _imported_after(
        "import tmcli.cli.app, tmcli.stream.pipeline, tmcli.stream.engine, tmcli.stream.generator"
    )
    assert "diffusers.models.transformers.transformer_wan" not in modules
    assert "tmcli.video.wan_audio" not in modules


def test_timer_writes_seconds_marks_and_spans(tmp_path):
    timer = StageTimer()
    with timer("load"):
        time.sleep(0.01)
    timer.mark("first frame")
    timer.write_json(tmp_path / "t.json", frames=3)
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["frames"] == 3 and record["seconds"]["load"] >= 0.01
    began, ended = record["spans"]["load"]
    assert 0 <= began < ended <= record["marks"]["first frame"]
    assert abs(record["origin_epoch"] - time.time()) < 60 and record["peak_memory_mb"] > 0


def test_preload_imports_in_a_thread_and_survives_a_missing_module():
    preload("no_such_module_here", "json").join(10)
    preload("colorsys").join(10)
    assert "colorsys" in sys.modules
