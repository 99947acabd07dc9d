"""The command line: a root Typer app and one thin module per command."""
