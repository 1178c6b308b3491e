"""The ``medbalance`` commands that read data: inspect, presize and lr-find (train has its own
module, :mod:`medbalance.cli.train_command`).

Plain functions; :mod:`medbalance.cli.app` registers them on the typer app. Heavy modules (torch,
matplotlib, scikit-learn) are imported inside the commands so that ``medbalance --help`` answers
at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from medbalance.cli.options import (
    AllowOutside,
    DataArg,
    GroupColumn,
    GroupPattern,
    ResplitVal,
    SkipUnreadable,
    check_out_folder,
    fail,
)

__all__ = ["inspect", "lr_find_command", "presize_command"]

log = logging.getLogger("medbalance")


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

    from medbalance.data.inspection import inspect_catalog, write_inspection
    from medbalance.data.splits import load_split_catalog

    check_out_folder(out)

    try:
        catalog = load_split_catalog(
            data,
            group_pattern=group_pattern,
            group_column=group_column,
            allow_outside=allow_outside,
            val_fraction=resplit_val,
            seed=seed,
        )
        result = inspect_catalog(catalog, skip_unreadable=skip_unreadable)
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    console = Console()
    result.render(console)
    written = write_inspection(result, catalog, out)
    console.print("wrote " + ", ".join(str(p) for p in written))
    if any(f.level == "error" for f in result.findings):
        raise typer.Exit(code=1)


def presize_command(
    data: DataArg,
    size: Annotated[
        int,
        typer.Option(
            min=8,
            max=4096,
            help="The --size you will train at (train's automatic size: 128 on CPU, 224 on GPU).",
        ),
    ],
    presize: Annotated[
        int | None, typer.Option(min=8, help="Cache side in pixels (default: as train picks).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decoding processes (default: one per core).")
    ] = None,
    group_column: GroupColumn = None,
    allow_outside: AllowOutside = False,
    skip_unreadable: SkipUnreadable = False,
) -> None:
    """Fill the presize cache before training, e.g. once before a multi-node job.

    Decodes and resizes every image not cached yet into $MEDBALANCE_CACHE/presize (put it on
    shared storage for several machines); a later train run with the same --size reads it.
    """
    import time

    from medbalance.data.cache import PresizeCache, PresizeSettings, default_presize
    from medbalance.data.catalog import load_catalog

    try:
        catalog = load_catalog(data, group_column=group_column, allow_outside=allow_outside)
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    if catalog.paths is None:
        typer.echo(f"{data}: an array data set is presized in memory; nothing to cache")
        return
    side = presize or default_presize(size)
    try:
        cache = PresizeCache(PresizeSettings(size=side))
    except ValueError as error:
        fail(error)
    started = time.perf_counter()
    try:
        _, failures = cache.ensure(catalog, workers=workers, skip_unreadable=skip_unreadable)
    except ValueError as error:
        fail(error)
    finally:
        cache.close()
    typer.echo(
        f"{len(catalog) - len(failures)} images presized to {side} px in "
        f"{time.perf_counter() - started:.1f} s ({cache.decoded} decoded now, the rest were "
        f"cached); cache: {cache.root}"
    )
    for path, reason in failures:
        typer.echo(f"skipped unreadable {path}: {reason}", err=True)


def lr_find_command(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for lr_find.png.")] = Path("."),
    model: Annotated[str | None, typer.Option(help="timm model name or smallcnn (auto).")] = None,
    size: Annotated[int | None, typer.Option(help="Training image size (auto).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    sampler: Annotated[str, typer.Option(help="The sampler of the run to plan.")] = "oversample",
    loss: Annotated[str, typer.Option(help="The loss of the run to plan.")] = "ce",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    steps: Annotated[int, typer.Option(min=5, help="Batches in the sweep.")] = 100,
    resplit_val: ResplitVal = None,
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    skip_unreadable: SkipUnreadable = False,
) -> None:
    """Sweep the learning rate (exponentially, one batch each), plot the loss, suggest an lr."""
    from medbalance.training.config import ConfigError, load_config

    try:
        config = load_config(
            None,
            dict(
                data=data,
                model=model,
                size=size,
                batch_size=batch_size,
                sampler=sampler,
                loss=loss,
                seed=seed,
                device=device,
                resplit_val=resplit_val,
                group_pattern=group_pattern,
                group_column=group_column,
                skip_unreadable=skip_unreadable,
            ),
        )
        from medbalance.training.lrfind import lr_find

        result = lr_find(config, out, steps=steps)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        fail(error)
    typer.echo(f"suggested lr: {result.suggestion:.2e} (plot: {result.plot})")
