"""Root of the `tm` command. Only here do exceptions become messages and exit codes."""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
from ..console import console
from ..errors import TmError
from . import bench, data, distill, evaluate, export, faces, render, train

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
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """tm turns a portrait and a speech recording into a lip-synced talking-head video."""


def main() -> None:
    """Console entry point: one clear line and a non-zero exit for every failure.

    Typer reports usage errors itself (exit 2); tm's own errors carry their exit code and a
    hint. Set TM_DEBUG=1 to see the traceback of an unexpected error."""
    try:
        app(prog_name="tm")
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
