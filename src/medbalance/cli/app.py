"""The ``medbalance`` command line: thin typer commands that build a config and call the library.

This module holds the typer app, its root options (``--version``, ``--verbose``, ``--quiet``)
and the registration of every command, in the order ``medbalance --help`` lists them. The
commands live in :mod:`medbalance.cli.data_commands` (inspect, presize, lr-find),
:mod:`medbalance.cli.train_command` (train) and
:mod:`medbalance.cli.result_commands` (evaluate, predict, report, export, compare, demo), the shared
option types and helpers in :mod:`medbalance.cli.options`. Heavy modules (torch, matplotlib,
scikit-learn) are imported inside the commands so that ``medbalance --help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from medbalance import __version__
from medbalance.cli.cv_command import cv, ensemble
from medbalance.cli.data_commands import inspect, lr_find_command, presize_command
from medbalance.cli.options import guarded
from medbalance.cli.recalibrate_command import recalibrate
from medbalance.cli.result_commands import compare, demo, evaluate, export, predict, report
from medbalance.cli.train_command import train
from medbalance.core.feedback import set_bars

__all__ = ["app", "main"]

app = typer.Typer(
    name="medbalance",
    help="Train and report medical image classifiers on class-imbalanced data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medbalance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log more (debug lines, other libraries).")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Warnings and errors only: no header, epoch lines or bars."
        ),
    ] = False,
) -> None:
    # medbalance's own messages at INFO (DEBUG with -v); other libraries' only from WARNING
    # (e.g. the ONNX exporter's pass manager chatter), unless -v
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger("medbalance").setLevel(level)
    set_bars(not quiet)
    _quiet_pydicom(verbose)


def _quiet_pydicom(verbose: bool) -> None:
    """pydicom logs a full traceback for each decoder it tries on a broken file; medbalance
    already lists that file as unreadable with the reason, so pydicom's records go to a log
    file instead of the terminal (to both with -v)."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / "medbalance-logs"
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.propagate = verbose
    if not any(isinstance(h, logging.FileHandler) for h in pydicom_log.handlers):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(folder / "pydicom.log", delay=True)
        except OSError:
            handler = logging.NullHandler()
        pydicom_log.addHandler(handler)


app.command()(guarded(inspect))
app.command("presize")(guarded(presize_command))
app.command()(guarded(train))
app.command("lr-find")(guarded(lr_find_command))
app.command()(guarded(evaluate))
app.command()(guarded(predict))
app.command()(guarded(report))
app.command()(guarded(export))
app.command()(guarded(compare))
app.command()(guarded(cv))
app.command()(guarded(ensemble))
app.command()(guarded(recalibrate))
app.command()(guarded(demo))


def main() -> None:
    """Entry point of the ``medbalance`` console script."""
    app()


if __name__ == "__main__":
    main()
