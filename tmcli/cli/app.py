"""Root of the `tm` command. Only here do exceptions become messages and exit codes."""

from __future__ import annotations

import atexit
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading

import typer

from tmcli import __version__
from tmcli.cli import bench, data, distill, evaluate, export, faces, render, train
from tmcli.core.console import console
from tmcli.core.errors import Interrupted, TmError

app = typer.Typer(
    name="tm",
    help="tm turns a portrait and a speech recording into a lip-synced talking-head video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("render", no_args_is_help=True)(render.render)
app.command("eval", no_args_is_help=True)(evaluate.evaluate)
app.command("train", no_args_is_help=True)(train.train)
app.command("distill", no_args_is_help=True)(distill.distill)
app.command("bench")(bench.bench)
app.command("export", no_args_is_help=True)(export.export)
app.command("faces", no_args_is_help=True)(faces.faces)
app.add_typer(data.app, name="data")


def _version(value: bool) -> None:
    if value:
        print(f"tm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """tm turns a portrait and a speech recording into a lip-synced talking-head video."""


def main() -> None:
    """Console entry point: one clear line and a non-zero exit for every failure.

    Typer reports usage errors itself (exit 2); tm's own errors carry their exit code and a
    hint. Set TM_DEBUG=1 to see the traceback of an unexpected error. SIGINT and SIGTERM stop
    the work, remove what is unfinished and exit 130 / 143."""
    main_thread = threading.current_thread() is threading.main_thread()  # (signals can be set only there)
    handler = functools.partial(_interrupt, os.getpid())
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    # start-up imports torch, diffusers, mediapipe and librosa: millions of objects that live as
    # long as the process. With the default thresholds the collector walked them 8 times (1 s of a
    # render's start), and once more at exit (0.5 s); the frozen ones are left to the OS.
    gc.set_threshold(100_000, 50, 100)
    atexit.register(gc.freeze)
    try:
        app(prog_name="tm")
    except Interrupted as exc:
        console.print(f"[bold red]stopped[/] by {exc.name}: unfinished outputs removed", soft_wrap=True)
        # Leave without the interpreter's teardown: native threads stopped mid-work (mediapipe's,
        # torch's) abort it ("terminate called without an active exception", exit -6). The
        # outputs are closed and removed by now, the workers terminated.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_code)
    except TmError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            console.print(f"  hint: {exc.hint}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("TM_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc}", soft_wrap=True)
        console.print("  hint: run again with TM_DEBUG=1 for the traceback, and please report it")
        sys.exit(70)
    finally:  # as they were (main() may run inside another program, or a test)
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _interrupt(owner: int, signum: int, frame) -> None:
    """Stop: worker processes now (one may be busy for minutes), the rest as Interrupted unwinds
    the main thread. Further signals are ignored while that cleans up. A forked worker inherits
    this handler; there the signal does what it would have done (a pool terminating its workers
    must not make each print a traceback)."""
    if os.getpid() != owner:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    for again in (signal.SIGINT, signal.SIGTERM):
        signal.signal(again, signal.SIG_IGN)
    for child in multiprocessing.active_children():
        child.terminate()
    raise Interrupted(signum)
