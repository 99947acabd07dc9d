"""One rich console for the whole program (on stderr: stdout may carry video), and a way to
silence the native libraries that print straight to the process's stderr."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def quiet_native_stderr():
    """mediapipe/TFLite log from C++ to file descriptor 2; hide that, keep Python's stderr."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
