"""Contact sheets that show each control of a learned generator at work.

    python benchmarks/control_sheets.py CHECKPOINT -o OUT_DIR [--portrait P] [--seed S]

One PNG per control (gaze, emotion, pose intensity, blink rate): a row per value, each row
six frames of the same speech plus the curve of the channels that control moves over the
whole clip, so what a single frame cannot show (how much the head moves, how often the eyes
blink) is still visible. Everything else - audio, seed - is the same in every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tmcli.core import audio as audio_mod  # noqa: E402
from tmcli.core.config import load_preset  # noqa: E402
from tmcli.face.rig import INDEX  # noqa: E402
from tmcli.motion.controls import Controls  # noqa: E402
from tmcli.motion.portrait import Portrait  # noqa: E402
from tmcli.speech.alignment import speech_phones  # noqa: E402
from tmcli.speech.features import generator_features  # noqa: E402
from tmcli.stream.generator import TeacherGenerator, load_motion_dit  # noqa: E402

VOICES = [
    "samples/extra/codec2_speech_orig_16k_female.wav",
    "samples/extra/librivox_sns_0870_male.wav",
    "samples/extra/allison_vm-nobox_female.wav",
]
SHEETS = {
    "gaze": (
        [
            ("gaze -0.8,0", {"gaze": (-0.8, 0.0)}),
            ("gaze 0,0", {"gaze": (0.0, 0.0)}),
            ("gaze 0.8,0", {"gaze": (0.8, 0.0)}),
            ("gaze 0,0.5", {"gaze": (0.0, 0.5)}),
        ],
        ["gazeX", "gazeY"],
    ),
    "emotion": (
        [
            ("neutral", {}),
            ("happy", {"emotion": (1.0, 0.0, 0.0)}),
            ("sad", {"emotion": (0.0, 1.0, 0.0)}),
            ("surprised", {"emotion": (0.0, 0.0, 1.0)}),
        ],
        ["mouthSmileLeft", "browInnerUp", "eyeWideLeft"],
    ),
    "pose_intensity": (
        [(f"pose intensity {v:g}", {"pose_intensity": v}) for v in (0.0, 1.0, 2.0)],
        ["headYaw", "headPitch", "headRoll"],
    ),
    "blink_rate": (
        [(f"blink rate {v:g}/min", {"blink_rate": v}) for v in (5.0, 15.0, 40.0)],
        ["eyeBlinkLeft"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--portrait", default=str(ROOT / "samples/portrait.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = load_preset().with_overrides(output={"crop": True, "size": 256})
    portrait = Portrait.load(args.portrait, preset)
    samples = np.concatenate([audio_mod.load_audio(ROOT / v) for v in VOICES])
    features = generator_features(
        audio_mod.extract_features(samples, preset.output.fps), speech_phones(samples)
    )
    generator = TeacherGenerator(load_motion_dit(args.checkpoint), preset.generator)
    fps = preset.output.fps
    picks = np.linspace(0.1, 0.9, 6) * len(features)
    for name, (rows, channels) in SHEETS.items():
        fig, axes = plt.subplots(
            len(rows), 7, figsize=(17, 2.6 * len(rows)), gridspec_kw={"width_ratios": [1] * 6 + [2.2]}
        )
        for r, (label, change) in enumerate(rows):
            controls = dataclasses.replace(Controls(), **change)
            motion = generator(features, controls, seed=args.seed)
            for c, frame in enumerate(picks.astype(int)):
                axes[r, c].imshow(portrait.render_frame(motion[frame]))
                axes[r, c].set_axis_off()
                if r == 0:
                    axes[r, c].set_title(f"{frame / fps:.1f} s", fontsize=9)
            axes[r, 0].text(
                -0.05,
                0.5,
                label,
                transform=axes[r, 0].transAxes,
                rotation=90,
                va="center",
                ha="right",
                fontsize=10,
            )
            t = np.arange(len(motion)) / fps
            for ch in channels:
                axes[r, 6].plot(t, motion[:, INDEX[ch]], lw=0.8, label=ch)
            if name == "blink_rate":
                blinks = int(
                    (
                        (motion[1:, INDEX["eyeBlinkLeft"]] > 0.5)
                        & (motion[:-1, INDEX["eyeBlinkLeft"]] <= 0.5)
                    ).sum()
                )
                axes[r, 6].set_title(
                    f"{blinks} blinks in {t[-1]:.0f} s = {blinks / t[-1] * 60:.0f}/min", fontsize=9
                )
            elif name == "pose_intensity":
                std = motion[:, [INDEX[ch] for ch in channels]].std(0).mean()
                axes[r, 6].set_title(f"mean std {std:.3f} rad", fontsize=9)
            else:
                means = ", ".join(f"{ch} {motion[:, INDEX[ch]].mean():+.2f}" for ch in channels)
                axes[r, 6].set_title(means, fontsize=8)
            axes[r, 6].legend(fontsize=7, loc="upper right")
            axes[r, 6].set_xlabel("s", fontsize=8)
        fig.suptitle(
            f"{name}: teacher {Path(args.checkpoint).name}, seed {args.seed}, same speech in every row"
        )
        fig.tight_layout()
        fig.savefig(out / f"control_{name}.png", dpi=70)
        plt.close(fig)
        print(out / f"control_{name}.png")


if __name__ == "__main__":
    main()
