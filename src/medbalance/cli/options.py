"""Pieces the ``medbalance`` commands share: argument and option types, error exit, data loading.

Nothing here imports torch, matplotlib or scikit-learn; the library modules are imported inside
the functions so that ``medbalance --help`` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from medbalance.data.catalog import Catalog

__all__ = [
    "AllowOutside",
    "DataArg",
    "GroupColumn",
    "GroupPattern",
    "ResplitVal",
    "SkipUnreadable",
    "fail",
    "load_split_catalog",
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


def load_split_catalog(
    data: str,
    *,
    group_pattern: str | None,
    group_column: str | None,
    allow_outside: bool,
    resplit_val: float | None,
    seed: int,
) -> Catalog:
    """Load DATA for a command, assign its splits and, if asked, carve a new val split."""
    from medbalance.data.catalog import load_catalog
    from medbalance.data.splits import assign_splits
    from medbalance.data.splits import resplit_val as carve_val

    catalog = load_catalog(
        data,
        group_pattern=group_pattern,
        group_column=group_column,
        allow_outside=allow_outside,
    )
    catalog = assign_splits(catalog, seed=seed)
    if resplit_val is not None:
        catalog = carve_val(catalog, resplit_val, seed=seed)
    return catalog


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
