"""The ``medbalance`` commands that read data and train: inspect, presize, train and lr-find.

Plain functions; :mod:`medbalance.cli.app` registers them on the typer app. Heavy modules (torch,
matplotlib, scikit-learn) are imported inside the commands so that ``medbalance --help`` answers
at once.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medbalance.cli.options import (
    AllowOutside,
    ClassOrder,
    DataArg,
    GroupColumn,
    GroupPattern,
    Ordinal,
    ResplitVal,
    SkipUnreadable,
    check_out_folder,
    fail,
    parse_class_order,
    parse_options,
)
from medbalance.cli.result_commands import print_metrics
from medbalance.evaluation.thresholds import POLICY_FORMS, RULE_FORMS
from medbalance.training.names import (
    Device,
    LossName,
    Normalization,
    Precision,
    SamplerName,
    Schedule,
    SelectMetric,
    SelectRule,
    choices,
)

__all__ = ["inspect", "lr_find_command", "presize_command", "train"]

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


def train(
    data: Annotated[
        str | None, typer.Argument(help="Data (as for inspect); or data = in --config.")
    ] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Run folder.")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML/YAML config; options below override it.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="timm model name or smallcnn (auto).")] = None,
    size: Annotated[int | None, typer.Option(help="Training image size in pixels (auto).")] = None,
    presize: Annotated[
        int | None,
        typer.Option(
            help="Presize cache size (auto: 1.25 x size; arrays: at most their native size)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default: planned from the data; see --steps).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Optimizer steps to plan the epochs for (instead of --epochs)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (one-cycle).")] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            help=f"{choices(SamplerName)} | oversample:ALPHA | auto (default: oversample; "
            "none with --ordinal)"
        ),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(help=choices(LossName)),
    ] = None,
    loss_option: Annotated[
        list[str] | None,
        typer.Option("--loss-option", help="KEY=VALUE for the loss, e.g. gamma=2 or tau=1."),
    ] = None,
    drw_epoch: Annotated[
        int | None, typer.Option("--drw-epoch", help="Deferred re-weighting from this epoch.")
    ] = None,
    drw: Annotated[bool, typer.Option("--drw", help="DRW at 2/3 of the epochs.")] = False,
    crt: Annotated[
        int | None, typer.Option("--crt", help="Classifier re-training epochs after the run.")
    ] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment")] = None,
    hflip: Annotated[bool | None, typer.Option("--hflip/--no-hflip")] = None,
    pretrained: Annotated[bool | None, typer.Option("--pretrained/--no-pretrained")] = None,
    weights: Annotated[
        str | None, typer.Option(help="Local pretrained weights (.safetensors or .pth).")
    ] = None,
    freeze_epochs: Annotated[
        int | None, typer.Option("--freeze-epochs", help="Head-only epochs first.")
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(help=choices(SelectMetric)),
    ] = None,
    select_rule: Annotated[
        str | None,
        typer.Option(
            "--select-rule",
            help=f"{choices(SelectRule)} (default last: the final epoch); best: the best val "
            "value; within-noise: the latest epoch within one standard error of the best.",
        ),
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience.")] = None,
    positive_class: Annotated[
        str | None, typer.Option("--positive-class", help="Positive class of a binary task.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    device: Annotated[str | None, typer.Option(help=choices(Device))] = None,
    precision: Annotated[str | None, typer.Option(help=choices(Precision))] = None,
    threshold: Annotated[
        str | None,
        typer.Option(
            "--threshold",
            "--decision",
            help="Operating point, chosen on val at the end (default youden; multi-class "
            "offsets:balanced; ordinal expected-grade): "
            f"{' | '.join(POLICY_FORMS)}; multi-class: {' | '.join(RULE_FORMS)}.",
        ),
    ] = None,
    bootstrap: Annotated[
        int | None, typer.Option(min=0, help="Bootstrap resamples for the 95% CIs (1000).")
    ] = None,
    schedule: Annotated[str | None, typer.Option(help=choices(Schedule))] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay")] = None,
    epoch_samples: Annotated[
        int | None,
        typer.Option("--epoch-samples", min=1, help="Images drawn per epoch by the sampler."),
    ] = None,
    normalization: Annotated[
        str | None, typer.Option(help=f"{choices(Normalization)} (minmax: per image; X-rays)")
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="GPU memory layout.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue RUN_DIR/last.pt: the same run (only --device, --bootstrap, --compile "
            "and the data's path may change).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace the run that RUN_DIR holds (refused otherwise)."),
    ] = False,
    resplit_val: ResplitVal = None,
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    skip_unreadable: Annotated[bool | None, typer.Option("--skip-unreadable")] = None,
    sync_bn: Annotated[
        bool | None, typer.Option("--sync-bn/--no-sync-bn", help="SyncBatchNorm under DDP.")
    ] = None,
    compile_model: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.")
    ] = None,
    precise_bn: Annotated[
        int | None,
        typer.Option(
            "--precise-bn",
            min=0,
            help="Re-estimate BatchNorm statistics on this many training images before each "
            "validation (default 1024; 0 = off).",
        ),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help="Validate and keep a moving average of the weights with this decay "
            "(e.g. 0.999; timm's ModelEmaV3 with warm-up). Off by default."
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc", min=1, help="Processes on this machine (DDP via torchrun); one per GPU."
        ),
    ] = None,
    ordinal: Ordinal = None,
    class_order: ClassOrder = None,
) -> None:
    """Train a classifier with an imbalance remedy; writes the run folder.

    RUN_DIR holds config.json, history.csv, best.safetensors (the checkpoint chosen on
    validation data), last.pt (for --resume) and metrics.json (val and test).
    """
    from medbalance.training.config import ConfigError, load_config

    overrides = dict(
        data=data,
        out=out,
        model=model,
        size=size,
        presize=presize,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        sampler=sampler,
        loss=loss,
        loss_options=parse_options(loss_option),
        drw=drw or None,
        drw_epoch=drw_epoch,
        crt_epochs=crt,
        augment=augment,
        hflip=hflip,
        pretrained=pretrained,
        weights=weights,
        freeze_epochs=freeze_epochs,
        select=select,
        select_rule=select_rule,
        patience=patience,
        positive_class=positive_class,
        seed=seed,
        device=device,
        precision=precision,
        resplit_val=resplit_val,
        group_pattern=group_pattern,
        group_column=group_column,
        skip_unreadable=skip_unreadable,
        sync_bn=sync_bn,
        compile=compile_model,
        precise_bn=precise_bn,
        threshold=threshold,
        bootstrap=bootstrap,
        schedule=schedule,
        weight_decay=weight_decay,
        epoch_samples=epoch_samples,
        normalization=normalization,
        channels_last=channels_last,
        ema=ema,
        ordinal=ordinal,
        class_order=parse_class_order(class_order),
    )
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(code=_relaunch_with_torchrun(nproc))
    try:
        if resume and out is None and config_file is None:
            raise ConfigError("--resume needs --out RUN_DIR, the run folder to continue")
        config = load_config(config_file, overrides, new_out=True)
        from medbalance.workflows.training import train_and_evaluate

        result = train_and_evaluate(config, resume=resume, overwrite=overwrite)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        fail(error)
    _print_result(result)


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same ``train`` command under torchrun with ``nproc`` processes."""
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            args.append(arg)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "medbalance",
        *args,
    ]
    log.info("launching: %s", " ".join(command))
    return subprocess.call(command)


def _print_result(result: object) -> None:
    from medbalance.training.engine import RunResult

    if not isinstance(result, RunResult) or os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    typer.echo(
        f"best epoch {result.best_epoch} by val {result.config.select} = {result.best_value:.4f}"
    )
    if result.evaluation:
        print_metrics(result.evaluation)
    typer.echo(f"run folder: {result.run_dir} (report.html, metrics.json, predictions.csv)")


def lr_find_command(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for lr_find.png.")] = Path("."),
    model: Annotated[str | None, typer.Option(help="timm model name or smallcnn (auto).")] = None,
    size: Annotated[int | None, typer.Option(help="Training image size (auto).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    sampler: Annotated[str, typer.Option()] = "oversample",
    loss: Annotated[str, typer.Option()] = "ce",
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option()] = "auto",
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
