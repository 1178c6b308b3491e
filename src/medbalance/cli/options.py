"""Pieces the ``medbalance`` commands share: argument and option types, error exit, data loading.

Nothing here imports torch, matplotlib or scikit-learn; the library modules are imported inside
the functions so that ``medbalance --help`` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    pass

__all__ = [
    "AllowOutside",
    "DataArg",
    "GroupColumn",
    "GroupPattern",
    "ResplitVal",
    "SkipUnreadable",
    "fail",
    "parse_options",
]

DataArg = Annotated[
    str,
    typer.Argument(
        help="A class-folder tree, a CSV manifest, a MedMNIST .npz file or a MedMNIST name "
        "(e.g. pneumoniamnist, looked up in $MEDBALANCE_DATA).",
        show_default=False,
    ),
]
GroupPattern = Annotated[
    str | None,
    typer.Option(
        "--group-pattern",
        help="Regular expression that finds the patient id in a file name (first group).",
    ),
]
GroupColumn = Annotated[
    str | None, typer.Option("--group-column", help="CSV column holding the patient id.")
]
AllowOutside = Annotated[
    bool, typer.Option("--allow-outside", help="Let CSV paths leave the CSV's folder.")
]
ResplitVal = Annotated[
    float | None,
    typer.Option(
        "--resplit-val",
        min=0.01,
        max=0.9,
        help="Pool train+val and carve a stratified, patient-grouped val split of this fraction.",
    ),
]
SkipUnreadable = Annotated[
    bool,
    typer.Option(
        "--skip-unreadable", help="Exclude undecodable images everywhere (listed in outputs)."
    ),
]


def fail(error: Exception) -> NoReturn:
    """Print ``error: ...`` in red on stderr and exit with code 2."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


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
