"""Lip-sync figures of each generator on real voices (benchmarks/eval_cases.toml).

    python benchmarks/lipsync_eval.py --generator phonetic --generator student[:CKPT] --seeds 0-9 \
        [--json out.json]

Renders every case with every generator and seed (face crop, 256 px: the figures read the
mouth, not the pixels), runs `tm eval` on it with the true transcript, and prints per case and
per group of cases (tuning, held out, extended, all): how many seeds found the offset within one
frame, the mean |offset| between frames in ms, the mean correlation, and /p b m/ closed and
open vowels open counted over the seeds (n/N), then jitter in silence. Counting over seeds is
what tells generators apart: a gap of one vowel in one clip is one count per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core.config import load_preset  # noqa: E402
from tmcli.stream.pipeline import render  # noqa: E402
from tmcli.tools.evaluate import evaluate_video  # noqa: E402

GROUPS = {
    "tuning": lambda c: not c.get("held_out"),
    "held out (first 3)": lambda c: c.get("held_out") and not c.get("extended"),
    "extended (held out)": lambda c: c.get("extended"),
    "first 7": lambda c: not c.get("extended"),
    "all": lambda c: True,
}


def parse_seeds(text: str) -> list[int]:
    """'0-9' or '0,3,5' -> seeds."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--generator",
        action="append",
        default=[],
        help="phonetic, teacher[:CHECKPOINT_DIR] or student[:CHECKPOINT_DIR] (repeat to compare)",
    )
    parser.add_argument(
        "--report", nargs="+", metavar="JSON", help="print the tables of earlier runs' --json files"
    )
    parser.add_argument("--cases", default=str(ROOT / "benchmarks/eval_cases.toml"))
    parser.add_argument("--preset", default="default")
    parser.add_argument(
        "--seeds", "--seed", default="0", help="seeds to render each case with: 0-9, 0,2,5 or one"
    )
    parser.add_argument("--json", help="write every report here (generator -> case -> seed -> figures)")
    parser.add_argument(
        "--cfg-scale", type=float, help="audio guidance of learned generators (preset's otherwise)"
    )
    parser.add_argument("--tuning-only", action="store_true", help="skip the held-out cases (for tuning)")
    args = parser.parse_args()
    cases = tomllib.loads(Path(args.cases).read_text())["case"]
    cases = [c for c in cases if not (args.tuning_only and c.get("held_out"))]
    if args.report:
        results = {
            spec: by_case for f in args.report for spec, by_case in json.loads(Path(f).read_text()).items()
        }
        print_tables(cases, results, ", ".join(args.report))
        return
    if not args.generator:
        parser.error("give --generator (or --report)")
    seeds = parse_seeds(args.seeds)
    preset = load_preset(args.preset).with_overrides(
        output={"crop": True, "size": 256}, generator={"cfg_audio": args.cfg_scale}
    )
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.generator:
            kind, _, checkpoint = spec.partition(":")
            results[spec] = {}
            for i, case in enumerate(cases):
                results[spec][case["name"]] = {}
                for seed in seeds:
                    out = Path(tmp) / f"{i}.mp4"
                    render(
                        ROOT / case["portrait"],
                        ROOT / case["audio"],
                        out,
                        preset,
                        seed=seed,
                        generator=kind,
                        checkpoint=checkpoint or None,
                    )
                    report = evaluate_video(out, ROOT / case["audio"], transcript=case["transcript"])
                    results[spec][case["name"]][str(seed)] = report.as_dict()
                    print(
                        f"{spec:>12} | {case['name']} | seed {seed}: corr {report.correlation:.2f}",
                        file=sys.stderr,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print_tables(cases, results, f"seeds {args.seeds}")


def print_tables(cases: list[dict], results: dict[str, dict[str, dict]], source: str) -> None:
    """One row per case and per group of cases, one column per generator (cases a generator
    was not run on are left out of its figures)."""
    table = Table(
        title=f"tm eval on real voices ({source}): offset within 1 frame (runs), mean |offset| between "
        "frames "
        "/ correlation / /p b m/ closed / open vowels open (counted over seeds) / jitter in silence, % IOD"
    )
    table.add_column("case")
    for spec in results:
        table.add_column(spec, justify="right")
    for case in cases:
        table.add_row(
            case["name"] + (" (held out)" if case.get("held_out") else ""),
            *(summary([results[spec].get(case["name"], {})]) for spec in results),
        )
    for label, member in GROUPS.items():
        group = [c for c in cases if member(c)]
        if label == "all" or 0 < len(group) < len(cases):  # a group equal to all would repeat it
            table.add_row(
                f"[bold]{label}[/bold] ({len(group)})",
                *(summary([results[spec].get(c["name"], {}) for c in group]) for spec in results),
            )
    Console(width=220).print(table)


def counts(runs: list[dict], share: str, n: str) -> tuple[int, int]:
    """(events that passed, events) summed over runs, from each report's share and count."""
    passed = sum(round(r[share] * r[n]) for r in runs if r[share] is not None)
    return passed, sum(r[n] for r in runs)


def summary(per_case: list[dict[str, dict]]) -> str:
    runs = [r for by_seed in per_case for r in by_seed.values()]
    if not runs:
        return "-"
    within = sum(abs(r["offset_frames"]) <= 1 for r in runs)
    offset_ms = [abs(r["offset_ms"]) for r in runs if r["offset_ms"] is not None]
    corr = [r["correlation"] for r in runs if r["correlation"] is not None]
    jitter = [r["silence_jitter"] for r in runs if r["silence_jitter"] is not None]
    closed, bilabials = counts(runs, "bilabial_closed", "bilabials")
    opened, vowels = counts(runs, "open_vowel_open", "open_vowels")

    def mean(xs: list[float], fmt: str) -> str:
        return fmt.format(sum(xs) / len(xs)) if xs else "n/a"

    return (
        f"{within}/{len(runs)}, {mean(offset_ms, '{:.0f}')} ms / {mean(corr, '{:.2f}')} / "
        f"{closed}/{bilabials} / {opened}/{vowels} / {mean(jitter, '{:.2f}')}"
    )


if __name__ == "__main__":
    main()
