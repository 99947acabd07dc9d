"""How often the recognised phones are wrong on real voices, against the simulated errors.

    python benchmarks/phone_errors.py [--all]

At render time the learned generators hear pocketsphinx's phones; in training they hear the
true phones passed through `misrecognize`. The two must err about equally often: errors that
are too rare teach the model to trust wrong phones, errors too common teach it to hedge (a
jaw that opens too little). The measure is the share of speech frames whose phone class
(features.PHONE_CLASSES) agrees with the forced alignment of the true transcript. Only the
tuning cases of eval_cases.toml are used unless --all is given.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.core import audio as audio_mod  # noqa: E402
from tmcli.speech.alignment import speech_phones  # noqa: E402
from tmcli.speech.features import phone_classes  # noqa: E402
from tmcli.train.synth import RECOGNITION_ERRORS, misrecognize  # noqa: E402

FPS = 25.0


def agreement(phones, truth, frames: int) -> float:
    """Share of the speech frames of `truth` whose phone class `phones` gets right."""
    got, want = (phone_classes(p, frames, FPS).argmax(axis=1) for p in (phones, truth))
    speech = want != 0
    return float((got == want)[speech].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=str(ROOT / "benchmarks/eval_cases.toml"))
    parser.add_argument("--all", action="store_true", help="include the held-out cases")
    parser.add_argument("--draws", type=int, default=20, help="simulated recognitions per case")
    args = parser.parse_args()
    cases = [
        c for c in tomllib.loads(Path(args.cases).read_text())["case"] if args.all or not c.get("held_out")
    ]

    table = Table(
        title=f"phone-class agreement with the forced alignment, simulated with {RECOGNITION_ERRORS}"
    )
    for column in ("case", "pocketsphinx", "simulated"):
        table.add_column(column, justify="left" if column == "case" else "right")
    rng = np.random.default_rng(0)
    real, simulated = [], []
    for case in cases:
        samples = audio_mod.load_audio(ROOT / case["audio"])
        frames = audio_mod.num_video_frames(len(samples), FPS)
        truth = speech_phones(samples, case["transcript"])
        real.append(agreement(speech_phones(samples), truth, frames))
        simulated.append(
            np.mean([agreement(misrecognize(truth, rng), truth, frames) for _ in range(args.draws)])
        )
        table.add_row(case["name"], f"{real[-1]:.1%}", f"{simulated[-1]:.1%}")
    table.add_row("mean", f"{np.mean(real):.1%}", f"{np.mean(simulated):.1%}", style="bold")
    Console().print(table)


if __name__ == "__main__":
    main()
