import subprocess
import sys

from conftest import PORTRAIT, SPEECH


def test_render_from_a_script_on_stdin(tmp_path):
    """The speech worker cannot start when __main__ is stdin; the render still succeeds."""
    out = tmp_path / "o.mp4"
    script = ("from tmcli.pipeline import render\nfrom tmcli.config import load_preset\n"
              f"r = render({str(PORTRAIT)!r}, {str(SPEECH)!r}, {str(out)!r}, load_preset())\n"
              "print(r.frames)\n")
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "100" and out.stat().st_size > 10_000


def test_crop_size_follows_the_faces_own_resolution(portrait_image):
    from tmcli.config import load_preset
    from tmcli.portrait import MIN_RENDER_SIZE, Portrait

    preset = load_preset()
    pasted = Portrait.load(PORTRAIT, preset)  # the astronaut's crop covers ~170 pixels of her photo
    assert pasted.alignment.size == MIN_RENDER_SIZE and pasted.frame_size == (512, 512)
    cropped = Portrait.load(PORTRAIT, preset.with_overrides(output={"crop": True}))
    assert cropped.alignment.size == 512 and cropped.frame_size == (512, 512)
