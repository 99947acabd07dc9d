"""Many renders: jobs from arguments and manifests, claims, and a batch over 2 processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tmcli.core.errors import ConfigError, InputError
from tmcli.stream.batch import Claims, jobs_from_arguments, read_jobs

from conftest import PORTRAIT, SPEECH


def test_several_audio_files_become_one_video_each_in_the_folder(tmp_path):
    jobs = jobs_from_arguments(PORTRAIT, [tmp_path / "a.wav", tmp_path / "x" / "b.flac"], tmp_path / "out")
    assert [(j.audio.name, str(j.output.relative_to(tmp_path))) for j in jobs] == [
        ("a.wav", "out/a.mp4"),
        ("b.flac", "out/b.mp4"),
    ]
    with pytest.raises(ConfigError, match="same output a.mp4"):
        jobs_from_arguments(PORTRAIT, [tmp_path / "a.wav", tmp_path / "x" / "a.mp3"], tmp_path / "out")
    with pytest.raises(ConfigError, match="must be a folder"):
        jobs_from_arguments(PORTRAIT, [tmp_path / "a.wav", tmp_path / "b.wav"], tmp_path / "out.mp4")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="must be a folder"):
        jobs_from_arguments(PORTRAIT, [tmp_path / "a.wav", tmp_path / "b.wav"], tmp_path / "file")


def test_manifests_in_csv_and_jsonl_give_the_same_jobs(tmp_path):
    (tmp_path / "jobs.csv").write_text(
        "portrait,audio,output,seed,emotion,crop\nface.png,a.wav,v/a.mp4,3,happy,true\n,b.wav,,,,\n"
    )
    (tmp_path / "jobs.jsonl").write_text(
        json.dumps(
            {
                "portrait": "face.png",
                "audio": "a.wav",
                "output": "v/a.mp4",
                "seed": 3,
                "emotion": "happy",
                "crop": True,
            }
        )
        + "\n\n"
        + json.dumps({"audio": "b.wav"})
        + "\n"
    )
    csv_jobs = read_jobs(tmp_path / "jobs.csv", portrait=PORTRAIT, output_dir=tmp_path / "out")
    jsonl_jobs = read_jobs(tmp_path / "jobs.jsonl", portrait=PORTRAIT, output_dir=tmp_path / "out")
    assert csv_jobs == jsonl_jobs
    first, second = csv_jobs
    assert (first.portrait, first.audio, first.output) == (
        tmp_path / "face.png",
        tmp_path / "a.wav",
        tmp_path / "v/a.mp4",
    )
    assert first.options == {"seed": 3, "emotion": "happy", "crop": True}
    assert (second.portrait, second.output, second.options) == (PORTRAIT, tmp_path / "out/b.mp4", {})


@pytest.mark.parametrize(
    "text, message",
    [
        ("audio,colour\na.wav,red\n", "unknown column 'colour'"),
        ("output\nx.mp4\n", "row 2: no audio"),
        ("audio,seed\na.wav,three\n", "row 2"),
        ("audio,output\na.wav,x.mp4\nb.wav,x.mp4\n", "two rows write"),
        ("audio\n", "lists no jobs"),
    ],
)
def test_bad_manifests_fail_before_any_rendering(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_jobs(tmp_path / "m.csv", portrait=PORTRAIT)


def test_claims_share_jobs_within_a_run_and_take_over_those_of_a_dead_run(tmp_path):
    out = tmp_path / "a.mp4"
    first, second = Claims("run1", shared=True), Claims("run1", shared=True)
    assert first.take(out) and not second.take(out)  # one process of the run has it
    later = Claims("run2", shared=True)  # the next run: run1's claim is stale
    assert later.take(out) and Claims.path(out).read_text().startswith("run2 ")
    assert Claims("solo", shared=False).take(out)  # alone: nothing to share, no files
    later.clear([out])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_batch_over_two_processes_renders_each_job_once_and_a_rerun_skips_them(tmp_path):
    """tm render FACE a b c -o DIR --num-processes 2: two processes joined by gloo (as under
    accelerate launch) share the jobs; each video is the one a single render makes."""
    for name in "abc":
        shutil.copy(SPEECH, tmp_path / f"{name}.wav")
    cmd = [
        sys.executable,
        "-m",
        "tmcli",
        "render",
        str(PORTRAIT),
        *(str(tmp_path / f"{n}.wav") for n in "abc"),
        "-o",
        str(tmp_path / "out"),
        "--generator",
        "phonetic",
        "--size",
        "192",
        "--crop",
    ]
    proc = subprocess.run([*cmd, "--num-processes", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 rendered, 0 skipped, 0 failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.mp4",
        "b.mp4",
        "c.mp4",
    ]  # no claims left
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmcli",
            "render",
            str(PORTRAIT),
            str(SPEECH),
            "-o",
            str(tmp_path / "single.mp4"),
            "--generator",
            "phonetic",
            "--size",
            "192",
            "--crop",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    from tmcli.core.media import read_video_frames

    reference = list(read_video_frames(tmp_path / "single.mp4"))[1:]
    for name in "abc":
        frames = list(read_video_frames(tmp_path / "out" / f"{name}.mp4"))[1:]
        assert len(frames) == len(reference) == 100
        assert all(np.array_equal(a, b) for a, b in zip(frames, reference))
    (tmp_path / "out" / "b.mp4").unlink()  # as if the process rendering it had died
    again = subprocess.run(
        [*cmd, "--num-processes", "2", "--skip-existing"], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 rendered, 2 skipped, 0 failed" in again.stderr


@pytest.mark.slow
def test_a_failed_job_is_reported_and_the_others_still_rendered(tmp_path):
    (tmp_path / "jobs.csv").write_text(f"audio,output\n{SPEECH},ok.mp4\nmissing.wav,bad.mp4\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmcli",
            "render",
            str(PORTRAIT),
            "--manifest",
            str(tmp_path / "jobs.csv"),
            "--generator",
            "phonetic",
            "--size",
            "192",
            "--crop",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "missing.wav" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "ok.mp4").is_file() and not (tmp_path / "bad.mp4").exists()
