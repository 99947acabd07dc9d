"""Many renders: jobs from the command line or a manifest, shared by processes and nodes.

Processes are started by `accelerate launch -m tmcli render ...` or by `tm render
--num-processes N`; accelerate's PartialState says which process this is and which device is
its own. Work is shared dynamically, not by a fixed split: each process walks the job list and
claims the next unclaimed job with a claim file beside its output (created exclusively), so
long and short jobs balance out and a process that dies loses only the job it held. Outputs
appear only when complete (VideoWriter renames a finished file), so a rerun with
`--skip-existing` does exactly what is left.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tmcli.core.errors import ConfigError, InputError, TmError
from tmcli.motion.controls import parse_gaze

# manifest columns besides portrait, audio and output: the per-job options of tm render
OPTION_COLUMNS = {
    "seed": int,
    "transcript": str,
    "generator": str,
    "checkpoint": str,
    "emotion": str,
    "gaze": str,
    "pose_intensity": float,
    "blink_rate": float,
    "cfg_scale": float,
    "steps": int,
    "loop": str,
    "fps": float,
    "size": int,
    "crop": lambda v: str(v).strip().lower() in ("1", "true", "yes"),
}


@dataclasses.dataclass
class RenderJob:
    portrait: Path
    audio: Path
    output: Path
    options: dict = dataclasses.field(default_factory=dict)  # OPTION_COLUMNS names -> values


def jobs_from_arguments(portrait: Path, audios: list[Path], output: Path | None) -> list[RenderJob]:
    """One portrait, several audio files -> one video each in the folder `output`."""
    folder = Path(output) if output is not None else Path(".")
    if (folder.exists() and not folder.is_dir()) or folder.suffix.lower() in (
        ".mp4",
        ".mov",
        ".mkv",
        ".webm",
    ):
        raise ConfigError(f"with several audio files, -o must be a folder; {folder} is a file")
    names = [a.stem for a in audios]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise ConfigError(
            f"two audio files would make the same output {twins[0]}.mp4",
            hint="rename one, or use --manifest with an output column",
        )
    return [RenderJob(portrait, a, folder / f"{a.stem}.mp4") for a in audios]


def read_jobs(path: Path, portrait: Path | None = None, output_dir: Path | None = None) -> list[RenderJob]:
    """Jobs from a .csv (header row) or .jsonl (an object a line) manifest.

    Columns: portrait (or PORTRAIT on the command line), audio, output (default: OUTPUT_DIR or
    the manifest's folder / AUDIO's name .mp4) and any of OPTION_COLUMNS. Relative paths are
    relative to the manifest's folder. A bad row is an error before any rendering."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no manifest at {path}")
    base, rows = path.parent, _manifest_rows(path)
    jobs = []
    for line, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path.name}, row {line}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected an object with portrait, audio, output")
        unknown = set(row) - {"portrait", "audio", "output"} - set(OPTION_COLUMNS)
        if unknown:
            raise InputError(
                f"{where}: unknown column {sorted(unknown)[0]!r}",
                hint=f"columns: portrait, audio, output, {', '.join(OPTION_COLUMNS)}",
            )
        if "audio" not in row:
            raise InputError(f"{where}: no audio")
        face = row.get("portrait", portrait)
        if face is None:
            raise InputError(
                f"{where}: no portrait (give a portrait column, or PORTRAIT on the command line)"
            )
        audio = base / row["audio"]
        output = (
            base / row["output"]
            if "output" in row
            else (output_dir or base) / f"{Path(row['audio']).stem}.mp4"
        )
        try:
            options = {k: OPTION_COLUMNS[k](v) for k, v in row.items() if k in OPTION_COLUMNS}
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        jobs.append(RenderJob(base / face if "portrait" in row else Path(face), audio, output, options))
    outputs = [str(j.output.resolve()) for j in jobs]
    twins = sorted({o for o in outputs if outputs.count(o) > 1})
    if twins:
        raise InputError(f"{path.name}: two rows write {twins[0]}")
    if not jobs:
        raise InputError(f"the manifest {path} lists no jobs")
    return jobs


def _manifest_rows(path: Path) -> list:
    """A .csv's rows (empty cells left out) or a .jsonl's objects."""
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                return [
                    {k.strip(): v for k, v in row.items() if k and v not in (None, "")}
                    for row in csv.DictReader(f)
                ]
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the manifest {path}: {exc}") from None
    raise ConfigError(f"{path}: a manifest is .csv or .jsonl")


class Claims:
    """Which process renders which job: a claim file beside each output, made exclusively.

    A claim names its run; one left by an earlier run (a process that died) is stale and taken
    over. With one process there is nobody to share with and no files are made."""

    def __init__(self, run_id: str, shared: bool):
        self.run_id, self.shared = run_id, shared
        self.mine: list[Path] = []

    @staticmethod
    def path(output: Path) -> Path:
        return output.with_name(f".{output.name}.claim")

    def take(self, output: Path) -> bool:
        if not self.shared:
            return True
        claim = self.path(output)
        claim.parent.mkdir(parents=True, exist_ok=True)
        # written whole first, then linked into place: a claim is never seen empty (an empty one
        # read as stale let two processes take the same job)
        note = claim.with_name(f"{claim.name}.{uuid.uuid4().hex[:8]}.new")
        note.write_text(f"{self.run_id} {socket.gethostname()} {os.getpid()}\n")
        try:
            for _ in range(2):
                try:
                    os.link(note, claim)  # atomic, and fails if the claim exists
                except FileExistsError:
                    try:
                        owner = claim.read_text().split()[0]
                    except (OSError, IndexError):
                        owner = ""
                    if owner == self.run_id:
                        return False  # another process of this run has it
                    try:  # stale: only one process of this run moves it away
                        os.rename(claim, claim.with_name(claim.name + f".stale-{uuid.uuid4().hex[:8]}"))
                    except FileNotFoundError:
                        pass
                    continue
                self.mine.append(claim)
                return True
            return False
        finally:
            note.unlink(missing_ok=True)

    def clear(self, outputs: list[Path]) -> None:
        """After the run: its claims and the stale ones it replaced."""
        for output in outputs:
            for stale in output.parent.glob(f".{output.name}.claim*") if output.parent.is_dir() else []:
                stale.unlink(missing_ok=True)


@dataclasses.dataclass
class JobResult:
    output: str
    status: str  # rendered | skipped | failed
    message: str = ""
    seconds: float = 0.0
    process: int = 0


def run_jobs(
    jobs: list[RenderJob],
    render_one: Callable[[RenderJob], float],
    skip_existing: bool,
    process_index: int,
    claims: Claims,
) -> Iterator[JobResult]:
    """Render this process's share of `jobs`; a failed job is reported and the next one taken."""
    for job in jobs:
        if skip_existing and job.output.exists():
            if process_index == 0:
                yield JobResult(str(job.output), "skipped", "exists", process=process_index)
            continue
        if not claims.take(job.output):
            continue
        try:
            seconds = render_one(job)
        except TmError as exc:
            yield JobResult(str(job.output), "failed", exc.message, process=process_index)
            continue
        yield JobResult(str(job.output), "rendered", seconds=seconds, process=process_index)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def preset_for(base, options: dict):
    """The preset with one job's options (the names of tm render's flags) applied."""
    gaze_x, gaze_y = parse_gaze(options["gaze"]) if options.get("gaze") else (None, None)
    return base.with_overrides(
        output={"fps": options.get("fps"), "size": options.get("size"), "crop": options.get("crop")},
        generator={"cfg_audio": options.get("cfg_scale"), "steps": options.get("steps")},
        controls={
            "gaze_x": gaze_x,
            "gaze_y": gaze_y,
            "emotion": options.get("emotion"),
            "pose_intensity": options.get("pose_intensity"),
            "blink_rate": options.get("blink_rate"),
        },
    )


@dataclasses.dataclass
class RenderBatch:
    """Everything the processes of a batch need (picklable: it is handed to spawned workers)."""

    jobs: list[RenderJob]
    preset: object  # config.Preset with the command line's flags applied
    options: dict  # the command line's per-job options; a manifest row's own win
    skip_existing: bool = False
    device: str | None = None
    devices: str | None = None
    dtype: str = "fp32"
    disaggregate: bool = False


def render_batch(batch: RenderBatch, on_result: Callable[[JobResult], None]) -> list[JobResult]:
    """This process's part of the batch; on the main process, every process's results.

    Alone, or inside `accelerate launch` / `--num-processes`: PartialState reads the launch
    from the environment (gloo on CPUs, nccl on GPUs)."""
    import time

    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    from tmcli.core.runtime import StageDevices
    from tmcli.stream.pipeline import render

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and batch.disaggregate:
        raise ConfigError(
            "--disaggregate runs one render over two processes; it does not mix with a multi-process batch"
        )
    state = PartialState(cpu=not (batch.device or batch.devices or "").startswith("cuda") and distributed)
    if batch.device or batch.devices or state.device.type != "cuda":
        devices = StageDevices.parse(batch.device, batch.devices, batch.dtype, batch.disaggregate)
    else:  # each process its own GPU, as accelerate assigned it
        devices = StageDevices.parse(str(state.device), None, batch.dtype)
    run_id = [new_run_id()]
    if distributed:
        broadcast_object_list(run_id)
    claims = Claims(run_id[0], shared=distributed)

    def render_one(job: RenderJob) -> float:
        options = {**batch.options, **job.options}
        start = time.perf_counter()  # render makes the output's folder, or fails with an OutputError
        render(
            job.portrait,
            job.audio,
            job.output,
            preset_for(batch.preset, options),
            seed=options.get("seed", 0),
            transcript=options.get("transcript"),
            face_index=options.get("face_index", 0),
            generator=options.get("generator", "student"),
            checkpoint=options.get("checkpoint"),
            devices=devices,
            loop=options.get("loop") or "pingpong",
        )
        return time.perf_counter() - start

    results = []
    for result in run_jobs(batch.jobs, render_one, batch.skip_existing, state.process_index, claims):
        results.append(result)
        on_result(result)
    main = state.is_main_process
    if distributed:
        state.wait_for_everyone()
        results = gather_object(results)
        if main:
            claims.clear([j.output for j in batch.jobs])
        # before exit: a process group left alive aborts the process as its threads are torn down
        state.destroy_process_group()
    return results if main else []


def _worker(index: int, batch: RenderBatch, world: int, port: int, on_result, results_path: str) -> None:
    os.environ.update(
        RANK=str(index),
        LOCAL_RANK=str(index),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    results = render_batch(batch, on_result)
    if index == 0:
        Path(results_path).write_text(json.dumps([dataclasses.asdict(r) for r in results]))
    # Leave without the interpreter's teardown: native threads still alive there (mediapipe's
    # graph, gloo's, torch's pools) now and then abort a finished worker ("terminate called
    # without an active exception", seen 1 run in 5 under load). Every output is closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(batch: RenderBatch, processes: int, on_result: Callable[[JobResult], None]) -> list[JobResult]:
    """Run the batch in `processes` processes on this machine (spawned, joined by gloo or nccl
    as `accelerate launch` would); every process's results."""
    import tempfile

    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException, start_processes

    with socket.socket() as s:  # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="tm-batch-") as tmp:
        results_path = str(Path(tmp) / "results.json")
        try:
            start_processes(
                _worker,
                args=(batch, processes, port, on_result, results_path),
                nprocs=processes,
                start_method="spawn",
            )
        except (ProcessExitedException, ProcessRaisedException) as exc:
            last = str(exc).strip().splitlines()[-1]
            raise TmError(
                f"a render process failed: {last}", hint="rerun with --skip-existing to do what is left"
            ) from None
        return [JobResult(**r) for r in json.loads(Path(results_path).read_text())]
