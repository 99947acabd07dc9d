import subprocess
import sys

import numpy as np
import pytest

from conftest import PORTRAIT, SPEECH


@pytest.mark.slow
def test_render_from_a_script_on_stdin(tmp_path):
    """The speech worker cannot start when __main__ is stdin; the render still succeeds."""
    out = tmp_path / "o.mp4"
    script = (
        "from tmcli.stream.pipeline import render\nfrom tmcli.core.config import load_preset\n"
        f"r = render({str(PORTRAIT)!r}, {str(SPEECH)!r}, {str(out)!r}, load_preset())\n"
        "print(r.frames)\n"
    )
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "100" and out.stat().st_size > 10_000


def test_crop_size_follows_the_faces_own_resolution(portrait_image):
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import MIN_RENDER_SIZE, Portrait

    preset = load_preset()
    pasted = Portrait.load(PORTRAIT, preset)  # the astronaut's crop covers ~170 pixels of her photo
    assert pasted.alignment.size == MIN_RENDER_SIZE and pasted.frame_size == (512, 512)
    cropped = Portrait.load(PORTRAIT, preset.with_overrides(output={"crop": True}))
    assert cropped.alignment.size == 512 and cropped.frame_size == (512, 512)


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["phonetic", "teacher", "student"])
def test_the_still_preset_stills_every_generator(tmp_path, generator):
    """`--preset still`: head pose nil on every frame, lips still moving; the default moves the head."""
    from tmcli.core.config import load_preset
    from tmcli.face.rig import INDEX, POSE_CHANNELS
    from tmcli.stream.pipeline import render

    def motion(preset_name: str) -> np.ndarray:
        blocks = []
        render(
            PORTRAIT,
            SPEECH,
            None,
            load_preset(preset_name),
            generator=generator,
            on_motion=blocks.append,
            motion_out=tmp_path / f"{preset_name}.json",
        )
        return np.concatenate(blocks)

    still, moving = motion("still"), motion("default")
    assert np.all(still[:, POSE_CHANNELS] == 0.0)
    assert np.abs(moving[:, POSE_CHANNELS]).max() > 1e-3
    assert still[:, INDEX["jawOpen"]].max() > 0.2  # the mouth still speaks
