"""The ``medbalance`` command line (typer): thin commands that build a config and call the
workflows. Heavy modules are imported inside the commands so ``--help`` answers at once."""

from medbalance.cli.app import app, main

__all__ = ["app", "main"]
