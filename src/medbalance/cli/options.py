"""Pieces the ``medbalance`` commands share: argument and option types, error exit, data loading.

Nothing here imports torch, matplotlib or scikit-learn; the library modules are imported inside
the functions so that ``medbalance --help`` answers at once.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import click
import typer

P = ParamSpec("P")
R = TypeVar("R")
INTERNAL_ERROR = 3  # exit code of a bug (0 ok, 1 data with errors, 2 bad input)
_PACKAGE = Path(__file__).resolve().parents[1]  # src/medbalance

__all__ = [
    "CALIBRATION_HELP",
    "INTERNAL_ERROR",
    "POLICIES_HELP",
    "AllowOutside",
    "ClassOrder",
    "DataArg",
    "GroupColumn",
    "GroupPattern",
    "Ordinal",
    "Panel",
    "ResplitVal",
    "SkipUnreadable",
    "TrackTo",
    "TrackUri",
    "decision_option",
    "fail",
    "guarantee_option",
    "guarded",
    "parse_class_order",
    "parse_options",
    "report_bug",
]


# the forms of --threshold, short enough for 80 columns (every form: README, evaluation.thresholds)
POLICIES_HELP = (
    "youden, f1, 'sensitivity>=0.95', 'specificity>=0.9', 'cost:FN=5,FP=1', a number; "
    "multi-class: offsets:balanced, argmax, prior, 'cost:0,1;5,0'; grades: expected-grade"
)


class Panel:
    """The help panels of the commands with many options (``rich_help_panel``)."""

    DATA = "Data"
    MODEL = "Model and images"
    REMEDY = "Imbalance remedy"
    SCHEDULE = "Schedule"
    DECISION = "Selection and decision"
    OUTPUT = "Output"
    HARDWARE = "Hardware"


def decision_option(chosen: str) -> Any:
    """``--threshold`` / ``--decision POLICY``, with ``chosen`` saying on which cases and by
    default what (every command that chooses an operating point names it this one way)."""
    return typer.Option(
        "--threshold", "--decision", metavar="POLICY", help=f"{chosen}: {POLICIES_HELP}."
    )


def guarantee_option(on: str) -> Any:
    """``--guarantee LEVEL``: the confidence of a ``sensitivity>=X`` / ``specificity>=X`` bound
    on the cases ``on`` names (one wording for every command that chooses a threshold)."""
    return typer.Option(
        metavar="LEVEL",
        help="With a 'sensitivity>=X' or 'specificity>=X' operating point: choose the threshold "
        f"so that the rate's lower confidence bound (Clopper-Pearson) at LEVEL, e.g. 0.95, on {on} "
        "is at least X.",
    )


CALIBRATION_HELP = (
    "How the probabilities are calibrated on the tuning cases, beside the decision: temperature "
    "(one number; default), vector (a scale and a bias per class), bcts (a temperature and a "
    "bias per class, which moves the base rate: another site's) or isotonic (per class; needs "
    "more cases)."
)

DataArg = Annotated[
    str,
    typer.Argument(
        metavar="DATA",
        help="A class-folder tree, a CSV manifest, a MedMNIST .npz file or a MedMNIST name "
        "(e.g. pneumoniamnist, looked up in $MEDBALANCE_DATA).",
        show_default=False,
    ),
]
GroupPattern = Annotated[
    str | None,
    typer.Option(
        "--group-pattern",
        metavar="REGEX",
        rich_help_panel=Panel.DATA,
        help="Regular expression that finds the patient id in a file name (first group).",
    ),
]
GroupColumn = Annotated[
    str | None,
    typer.Option(
        "--group-column",
        metavar="NAME",
        rich_help_panel=Panel.DATA,
        help="CSV column holding the patient id.",
    ),
]
AllowOutside = Annotated[
    bool, typer.Option("--allow-outside", help="Let CSV paths leave the CSV's folder.")
]


def _fraction(value: float | None) -> float | None:
    """--resplit-val's range, said in the help instead of a ``[0.01<=x<=0.9]`` column."""
    if value is not None and not 0.01 <= value <= 0.9:
        raise typer.BadParameter(f"{value} is not a fraction between 0.01 and 0.9")
    return value


ResplitVal = Annotated[
    float | None,
    typer.Option(
        "--resplit-val",
        metavar="FRACTION",
        callback=_fraction,
        rich_help_panel=Panel.DATA,
        help="Pool train+val and carve a stratified, patient-grouped val split of this fraction "
        "(0.01 to 0.9).",
    ),
]
SkipUnreadable = Annotated[
    bool,
    typer.Option(
        "--skip-unreadable", help="Exclude undecodable images everywhere (listed in outputs)."
    ),
]

# the ordinal options of train, cv and compare
Ordinal = Annotated[
    bool | None,
    typer.Option(
        "--ordinal/--no-ordinal",
        metavar="",
        rich_help_panel=Panel.DATA,
        help="The classes are ordered grades: CORN head, quadratic kappa, mean absolute error.",
    ),
]
ClassOrder = Annotated[
    str | None,
    typer.Option(
        "--class-order",
        metavar="A,B,C",
        rich_help_panel=Panel.DATA,
        help="The class order, lowest grade first, e.g. none,mild,severe (default: sorted; "
        "with --ordinal, number names in numeric order).",
    ),
]
TrackTo = Annotated[
    str | None,
    typer.Option(
        "--track",
        metavar="NAME",
        rich_help_panel=Panel.OUTPUT,
        help="Also log the run to an experiment tracker: none (default) or mlflow "
        "(pip install 'medbalance[mlflow]').",
    ),
]
TrackUri = Annotated[
    str | None,
    typer.Option(
        "--track-uri",
        metavar="URI",
        rich_help_panel=Panel.OUTPUT,
        help="The tracking store or server (default: MLFLOW_TRACKING_URI, else ./mlruns).",
    ),
]


def parse_class_order(text: str | None) -> tuple[str, ...] | None:
    """``a,b,c`` as ``("a", "b", "c")``; the config checks the names."""
    return None if text is None else tuple(name.strip() for name in text.split(","))


def fail(error: Exception) -> NoReturn:
    """Print ``error: ...`` in red on stderr, on one line, and exit with code 2.

    Only errors that medbalance itself raised about the input are bad input: an error of the
    expected type raised inside another library (a ``ValueError`` deep in NumPy, say) is a bug
    and is reported as one (:func:`report_bug`).
    """
    if not _raised_by_medbalance(error) or storage_problem(error) is not None:
        report_bug(error)  # a bug, or (said in one line, exit 2) a problem of the storage
    text = " ".join(str(error).split()) or type(error).__name__
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _raised_by_medbalance(error: BaseException) -> bool:
    tb = error.__traceback__
    if tb is None:
        return True  # made, not raised: by the command itself
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


def report_bug(error: BaseException) -> NoReturn:
    """One line and a log file with the traceback; exit code 3. A full disk, a quota, a
    read-only or forbidden folder is the user's to fix, not a bug: one line, exit code 2."""
    storage = storage_problem(error)
    if storage is not None:
        typer.secho(f"error: {storage}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    log = _crash_log(error)
    first = " ".join(str(error).split())[:200] or "(no message)"
    typer.secho(
        f"error: internal error ({type(error).__name__}: {first}); the traceback is in "
        f"{log}; please report it",
        fg=typer.colors.RED,
        err=True,
    )
    raise typer.Exit(code=INTERNAL_ERROR)


_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)
# torch's checkpoint writer turns a failed write into these RuntimeError messages
_TORCH_WRITE = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def storage_problem(error: BaseException) -> str | None:
    """The one-line message for an error of the storage (disk full, quota, read-only, no
    permission, the cache path a file), or None for anything else. Looks through the chain
    of causes, as libraries wrap the OSError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            message = _os_message(seen)
            if message is not None:
                return message
        text = str(seen)
        if isinstance(seen, RuntimeError) and any(t in text for t in _TORCH_WRITE):
            return _full("a checkpoint")
        if type(seen).__name__ == "OperationalError" and "disk is full" in text:
            return _full("the image cache index", cache=True)
        seen = seen.__cause__ or seen.__context__
    return None


def _os_message(error: OSError) -> str | None:
    path = str(error.filename) if error.filename else "a file"
    cache = _in_cache(path)
    if error.errno in _FULL:
        return _full(path, cache=cache)
    if error.errno in _DENIED:
        where = "set MEDBALANCE_CACHE to a writable folder" if cache else "give a writable --out"
        return f"cannot write {path} ({error.strerror}): {where}; nothing else was changed"
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and cache:
        return (
            f"MEDBALANCE_CACHE={os.environ.get('MEDBALANCE_CACHE')} is not a folder ({path}: "
            f"{error.strerror}): point MEDBALANCE_CACHE at a folder, or unset it"
        )
    return None


def _full(what: str, *, cache: bool = False) -> str:
    where = " (the image cache: free space, or set MEDBALANCE_CACHE elsewhere)" if cache else ""
    return (
        f"the disk is full (or the quota used up) while writing {what}{where}: free space and "
        "run the same command again; files written before are intact (a training run "
        "continues with --resume)"
    )


def _in_cache(path: str) -> bool:
    root = os.environ.get("MEDBALANCE_CACHE")
    if not root:
        return False
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_out_folder(out: Path) -> None:
    """Exit 2 before any work when ``--out`` should be a folder but is a file."""
    if out.exists() and not out.is_dir():
        fail(ValueError(f"--out {out} is a file; give a folder for the outputs"))


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """The one error boundary of every command: an error the command did not turn into its
    one-line message is a bug; it is reported in one line with the path of a log file that
    holds the traceback, and exit code 3. Nothing else is caught (exits, Ctrl-C)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except Exception as error:  # the boundary: anything unexpected, EOFError included
            report_bug(error)

    return run


def _crash_log(error: BaseException) -> Path:
    folder = Path(tempfile.gettempdir()) / "medbalance-logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    return path


def parse_options(pairs: list[str] | None) -> dict[str, object] | None:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, lists)."""
    import json

    if not pairs:
        return None
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: write KEY=VALUE, e.g. gamma=2")
        try:
            options[key.strip().replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = text
    return options
