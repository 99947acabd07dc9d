"""Does a video teacher listen? Its flow-matching error with the right audio, another window's, and silence.

    python benchmarks/video_audio_probe.py TEACHER_DIR DATA_DIR [--windows 48] [--json out.json]

On `--windows` training windows of the data set (the teacher's own kind: three chunks, the first
frame as the portrait), each at the same noise and sigma, the teacher's squared velocity error
over the whole latent and over the cells of the data's mouth box, three ways: with the window's
own audio features, with another window's (the windows' audio rolled by one), and with silence.
A teacher that draws the mouth from the audio has a clearly lower mouth error with its own
audio; one that draws a mouth that suits any audio has about the same three. Training loss alone
cannot tell these apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tmcli.speech.features import silence_features  # noqa: E402
from tmcli.train.vae import mouth_weights
from tmcli.train.video import ClipWindows, window_frames  # noqa: E402
from tmcli.video.vae import encode, load_vae  # noqa: E402
from tmcli.video.wan_audio import WanAudioTransformer  # noqa: E402

SIGMAS = (0.3, 0.5, 0.7, 0.9)


@torch.no_grad()
def probe(
    teacher: WanAudioTransformer,
    latents: torch.Tensor,
    audio: torch.Tensor,
    mouth: torch.Tensor,
    sigma: float,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """{audio kind: (error over all cells, error over the mouth cells)} at one sigma, the same noise
    for all."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    noisy = (1 - sigma) * latents + sigma * noise
    target = noise - latents
    b = len(latents)
    cond = teacher.condition_latents(latents[:, :, :1], 0, latents.shape[2])
    t = torch.full((b,), sigma * 1000)
    kinds = {
        "own": audio,
        "another's": audio.roll(1, dims=0),
        "silence": torch.as_tensor(silence_features(audio.shape[1])).expand_as(audio),
    }
    out = {}
    for name, heard in kinds.items():
        error = (teacher(noisy, t, cond, heard, teacher.cross_kv(b)) - target)[
            :, :, 1:
        ] ** 2  # past the portrait
        out[name] = (float(error.mean()), float((error * mouth).sum() / (mouth.expand_as(error).sum())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("teacher")
    parser.add_argument("data")
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    teacher = WanAudioTransformer.from_pretrained(args.teacher).eval()
    vae = load_vae(json.loads((Path(args.teacher) / "train.json").read_text())["vae"]).eval()
    r = teacher.config.audio_context
    frames = window_frames(teacher.config.chunk_latent_frames)
    windows = ClipWindows(args.data, frames, r, r, stride=frames)
    index = torch.linspace(0, len(windows) - 1, min(args.windows, len(windows))).round().long().unique()
    latents = torch.cat([encode(vae, windows.pixels(index[i : i + 8])) for i in range(0, len(index), 8)])
    audio = windows.features(index)
    boxes = windows.mouth_boxes(index)
    mouth = (mouth_weights(boxes, *latents.shape[-2:], 2.0) > 1).float()  # 1 in the box, 0 elsewhere

    figures = {str(s): probe(teacher, latents, audio, mouth, s) for s in SIGMAS}
    table = Table(
        title=f"{args.teacher}: squared velocity error on {len(index)} windows (all cells / mouth box)"
    )
    for column in ("sigma", "own audio", "another window's", "silence", "mouth: own vs another's / silence"):
        table.add_column(column, justify="right")
    for s, f in figures.items():
        own, other, silent = (f[k] for k in ("own", "another's", "silence"))
        table.add_row(
            s,
            *(f"{a:.4f} / {m:.4f}" for a, m in (own, other, silent)),
            f"{own[1] / other[1] - 1:+.1%} / {own[1] / silent[1] - 1:+.1%}",
        )
    Console().print(table)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"teacher": str(args.teacher), "windows": len(index), "figures": figures}, indent=1)
        )


if __name__ == "__main__":
    main()
