"""tm bench on a video preset: every chunk timed, bad requests refused in one line."""

import json
import sys

import pytest
from typer.testing import CliRunner

from tmcli.cli.app import app, main


def test_bench_video_tiny_reports_every_chunk():
    result = CliRunner().invoke(
        app, ["bench", "--preset", "video-tiny", "--chunks", "3", "--size", "32", "--json", "-"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{\n") :])
    assert report["chunks"] == 3 and len(report["dit_chunk_ms"]) == 3 and len(report["vae_chunk_ms"]) == 3
    assert report["frames_per_chunk"] == 12 and report["frame_size"] == 32
    assert min(report["dit_chunk_ms"]) > 0 and report["first_chunk_ms"] >= report["dit_chunk_ms"][0]
    assert report["frames_per_s"] > 0


@pytest.mark.parametrize(
    "args, message",
    [(["--preset", "wan-1.3b-audio"], "GiB free"), (["--preset", "video-tiny", "--chunks", "1"], "--chunks")],
)
def test_bench_video_refuses_bad_requests_in_one_line(monkeypatch, capsys, args, message):
    monkeypatch.setattr("tmcli.tools.bench_video._free_bytes", lambda device: 2**30)
    monkeypatch.setattr(sys, "argv", ["tm", "bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code != 0 and message in out + err and "Traceback" not in out + err
