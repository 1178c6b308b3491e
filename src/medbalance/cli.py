"""The ``medbalance`` command line: thin typer commands that build a config and call the library.

Heavy modules (torch, matplotlib, scikit-learn) are imported inside the commands so that
``medbalance --help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from medbalance import __version__

if TYPE_CHECKING:
    from medbalance.catalog import Catalog

__all__ = ["app", "main"]

app = typer.Typer(
    name="medbalance",
    help="Train and report medical image classifiers on class-imbalanced data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("medbalance")

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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )


def _fail(error: Exception) -> NoReturn:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _load(
    data: str,
    *,
    group_pattern: str | None,
    group_column: str | None,
    allow_outside: bool,
    resplit_val: float | None,
    seed: int,
) -> Catalog:
    from medbalance.catalog import load_catalog
    from medbalance.splits import assign_splits
    from medbalance.splits import resplit_val as carve_val

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


@app.command()
def inspect(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")] = Path(
        "inspect"
    ),
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    allow_outside: AllowOutside = False,
    resplit_val: ResplitVal = None,
    skip_unreadable: SkipUnreadable = False,
    seed: Annotated[int, typer.Option(help="Seed for splits made here.")] = 0,
) -> None:
    """Look at a data set first: counts, imbalance, image sizes, duplicates, leaks, shortcuts.

    Writes summary.json, class_counts.png and samples.png to --out. Exits 0 with warnings and 1
    when the data has errors (such as unreadable images).
    """
    from rich.console import Console

    from medbalance.inspection import inspect_catalog, write_inspection

    try:
        catalog = _load(
            data,
            group_pattern=group_pattern,
            group_column=group_column,
            allow_outside=allow_outside,
            resplit_val=resplit_val,
            seed=seed,
        )
        result = inspect_catalog(catalog, skip_unreadable=skip_unreadable)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    console = Console(soft_wrap=True)
    result.render(console)
    written = write_inspection(result, catalog, out)
    console.print("wrote " + ", ".join(str(p) for p in written))
    if any(f.level == "error" for f in result.findings):
        raise typer.Exit(code=1)


def main() -> None:
    """Entry point of the ``medbalance`` console script."""
    app()


if __name__ == "__main__":
    main()
