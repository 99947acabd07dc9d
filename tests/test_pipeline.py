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
