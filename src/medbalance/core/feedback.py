"""How medbalance tells the person running it what it is doing: one place for the rule.

Messages are records of the ``medbalance`` logger (``logging``, never ``print``): a header
before the first epoch, one line per epoch, the paths written. The command line sets that logger
up itself (stderr; ``--quiet`` keeps warnings only). In Python nobody has, so the records would
vanish (Python shows only warnings from an unconfigured logger): :func:`speaking` shows them for
the length of one API call, on the ``sys.stdout`` of the moment (a notebook cell's output), unless
the program already shows INFO records itself (``logging.basicConfig(level=logging.INFO)``).

Progress bars are drawn on a terminal and in Jupyter (rich; in Jupyter it needs ipywidgets), never
into a file or a pipe, where the epoch lines are the progress; :func:`bars_wanted` is that rule.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["bars_wanted", "in_jupyter", "set_bars", "speaking"]

LOGGER = "medbalance"
_BARS: ContextVar[bool] = ContextVar("medbalance_bars", default=True)


class _CurrentStdout(logging.Handler):
    """Writes each record to ``sys.stdout`` as it is when the record comes (Jupyter gives each
    cell its own stream, and pytest's ``capsys`` swaps it too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # a closed stream must not stop a run: logging's own convention
            self.handleError(record)


def _shown_already() -> bool:
    """Whether the program's own logging set-up already shows medbalance's INFO records."""
    logger = logging.getLogger(LOGGER)
    if any(not isinstance(h, _CurrentStdout) for h in logger.handlers):
        return True
    root = logging.getLogger()
    return bool(root.handlers) and logger.isEnabledFor(logging.INFO)


@contextmanager
def speaking(verbose: bool = True) -> Iterator[None]:
    """Within: medbalance's messages reach the user of a Python call (``verbose``), or only
    its warnings (``verbose=False``, which also turns progress bars off)."""
    logger = logging.getLogger(LOGGER)
    level = logger.level
    token = _BARS.set(_BARS.get() and verbose)
    handler: logging.Handler | None = None
    try:
        if not verbose:
            logger.setLevel(logging.WARNING)
        elif not _shown_already():
            handler = _CurrentStdout()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            if not logger.isEnabledFor(logging.INFO):
                logger.setLevel(logging.INFO)
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)
        _BARS.reset(token)


def set_bars(on: bool) -> None:
    """Progress bars on or off from here on (the command line's ``--quiet`` turns them off)."""
    _BARS.set(on)


def in_jupyter() -> bool:
    """Whether this runs in a Jupyter kernel (rich's own test)."""
    from rich.console import Console

    return Console().is_jupyter


def bars_wanted() -> bool:
    """Whether to draw a progress bar: on a terminal, or in Jupyter with ipywidgets; not when
    turned off (``--quiet``, ``verbose=False``), not into a file or a pipe."""
    if not _BARS.get():
        return False
    if sys.stderr.isatty():
        return True
    if not in_jupyter():
        return False
    try:
        import ipywidgets  # noqa: F401  # rich draws its live bar in Jupyter with it
    except ImportError:
        return False
    return True
