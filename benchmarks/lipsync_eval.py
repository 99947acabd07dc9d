"""Lip-sync figures of each generator on real voices (benchmarks/eval_cases.toml).

    python benchmarks/lipsync_eval.py --generator phonetic --generator teacher:CKPT [--json out.json]

Renders every case with every generator (face crop, 256 px: the figures read the mouth, not
the pixels), runs `tm eval` on it with the true transcript, and prints one table per measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.config import load_preset  # noqa: E402
from tmcli.evaluate import evaluate_video  # noqa: E402
from tmcli.pipeline import render  # noqa: E402

MEASURES = [("offset", "offset_frames", "{:+d}"), ("corr", "correlation", "{:.2f}"),
            ("closed", "bilabial_closed", "{:.0%}"), ("open", "open_vowel_open", "{:.0%}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True,
                        help="phonetic, teacher[:CHECKPOINT_DIR] or student[:CHECKPOINT_DIR] (repeat to compare)")
    parser.add_argument("--cases", default=str(ROOT / "benchmarks/eval_cases.toml"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--cfg-scale", type=float, help="audio guidance of learned generators (preset's otherwise)")
    parser.add_argument("--tuning-only", action="store_true", help="skip the held-out cases (for tuning)")
    args = parser.parse_args()
    cases = tomllib.loads(Path(args.cases).read_text())["case"]
    cases = [c for c in cases if not (args.tuning_only and c.get("held_out"))]
    preset = load_preset(args.preset).with_overrides(output={"crop": True, "size": 256},
                                                     generator={"cfg_audio": args.cfg_scale})
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.generator:
            kind, _, checkpoint = spec.partition(":")
            results[spec] = {}
            for i, case in enumerate(cases):
                out = Path(tmp) / f"{i}.mp4"
                render(ROOT / case["portrait"], ROOT / case["audio"], out, preset, seed=args.seed, generator=kind,
                       checkpoint=checkpoint or None)
                report = evaluate_video(out, ROOT / case["audio"], transcript=case["transcript"])
                results[spec][case["name"]] = report.as_dict()
                print(f"{spec:>12} | {case['name']}: corr {report.correlation:.2f}", file=sys.stderr)
    console = Console(width=160)
    table = Table(title="tm eval on real voices (offset frames / correlation / /p b m/ closed / open vowels open)")
    table.add_column("case")
    for spec in args.generator:
        table.add_column(spec, justify="right")
    for case in cases:
        row = [case["name"]]
        for spec in args.generator:
            r = results[spec][case["name"]]
            row.append(" / ".join(fmt.format(r[key]) if r[key] is not None else "n/a" for _, key, fmt in MEASURES))
        table.add_row(*row)
    for label, subset in (("mean", cases), ("mean, held out", [c for c in cases if c.get("held_out")])):
        if subset:
            table.add_row(*_mean_row(label, subset, args.generator, results))
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _mean_row(label: str, cases: list[dict], specs: list[str], results: dict) -> list[str]:
    row = [label]
    for spec in specs:
        values = [results[spec][c["name"]] for c in cases]
        parts = []
        for _, key, fmt in MEASURES:
            xs = [abs(v[key]) if key == "offset_frames" else v[key] for v in values if v[key] is not None]
            mean = sum(xs) / max(len(xs), 1)
            parts.append(f"|{mean:.1f}|" if key == "offset_frames" else fmt.format(mean))
        row.append(" / ".join(parts))
    return row


if __name__ == "__main__":
    main()
