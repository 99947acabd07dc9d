"""One rich console for the whole program (on stderr: stdout may carry video), and a way to
silence the native libraries that print straight to the process's stdout and stderr."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def quiet_native_output():
    """mediapipe/TFLite print from C++ to file descriptors 1 and 2 (a stray line on stdout would
    corrupt a video written there); send both to /dev/null for the duration."""
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            streams.append(stream.fileno())
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    saved = [os.dup(fd) for fd in streams]
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in streams:
        os.dup2(devnull, fd)
    try:
        yield
    finally:
        for fd, copy in zip(streams, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
