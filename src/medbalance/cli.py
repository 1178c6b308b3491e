"""The ``medbalance`` command line: thin typer commands that build a config and call the library.

Heavy modules (torch, matplotlib, scikit-learn) are imported inside the commands so that
``medbalance --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
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
    rich_markup_mode="markdown",
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
    console = Console()
    result.render(console)
    written = write_inspection(result, catalog, out)
    console.print("wrote " + ", ".join(str(p) for p in written))
    if any(f.level == "error" for f in result.findings):
        raise typer.Exit(code=1)


@app.command("presize")
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
    import math
    import time

    from medbalance.cache import PresizeCache, PresizeSettings
    from medbalance.catalog import load_catalog

    try:
        catalog = load_catalog(data, group_column=group_column, allow_outside=allow_outside)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    if catalog.paths is None:
        typer.echo(f"{data}: an array data set is presized in memory; nothing to cache")
        return
    side = presize or math.ceil(size * 1.25)
    cache = PresizeCache(PresizeSettings(size=side))
    started = time.perf_counter()
    try:
        _, failures = cache.ensure(catalog, workers=workers, skip_unreadable=skip_unreadable)
    except ValueError as error:
        _fail(error)
    finally:
        cache.close()
    typer.echo(
        f"{len(catalog) - len(failures)} images presized to {side} px in "
        f"{time.perf_counter() - started:.1f} s ({cache.decoded} decoded now, the rest were "
        f"cached); cache: {cache.root}"
    )
    for path, reason in failures:
        typer.echo(f"skipped unreadable {path}: {reason}", err=True)


def _parse_options(pairs: list[str] | None) -> dict[str, object] | None:
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


@app.command()
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
        int | None, typer.Option(help="Presize cache size (auto: 1.25 x size).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 10).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (one-cycle).")] = None,
    sampler: Annotated[
        str | None,
        typer.Option(help="none | oversample | oversample:ALPHA | undersample | balanced-batches"),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            help="ce | weighted-ce | cb-ce | cb-focal | cost-ce | focal | ldam | "
            "balanced-softmax | logit-adjusted | soft-f1"
        ),
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
        typer.Option(help="auroc | balanced_accuracy | macro_f1 | sensitivity | loss"),
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience.")] = None,
    positive_class: Annotated[
        str | None, typer.Option("--positive-class", help="Positive class of a binary task.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | bf16 | fp16")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue RUN_DIR/last.pt.")] = False,
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
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc", min=1, help="Processes on this machine (DDP via torchrun); one per GPU."
        ),
    ] = None,
) -> None:
    """Train a classifier with an imbalance remedy; writes the run folder.

    RUN_DIR holds config.json, history.csv, best.safetensors (the checkpoint chosen on
    validation data), last.pt (for --resume) and metrics.json (val and test).
    """
    from medbalance.config import ConfigError, load_config

    overrides = dict(
        data=data,
        out=out,
        model=model,
        size=size,
        presize=presize,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        sampler=sampler,
        loss=loss,
        loss_options=_parse_options(loss_option),
        drw_epoch=drw_epoch,
        crt_epochs=crt,
        augment=augment,
        hflip=hflip,
        pretrained=pretrained,
        weights=weights,
        freeze_epochs=freeze_epochs,
        select=select,
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
    )
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(code=_relaunch_with_torchrun(nproc))
    try:
        config = load_config(config_file, overrides)
        if drw and config.drw_epoch is None:
            config = load_config(
                config_file, {**overrides, "drw_epoch": max(1, config.epochs * 2 // 3)}
            )
        _check_names(config.sampler, config.loss)
        from medbalance.engine import fit

        result = fit(config, resume=resume)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        _fail(error)
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


def _check_names(sampler: str, loss: str) -> None:
    from medbalance.losses import LOSSES, create_loss
    from medbalance.samplers import parse_sampler_spec

    parse_sampler_spec(sampler)
    if loss not in LOSSES:
        create_loss(loss, [1, 1])  # raises with "did you mean"


def _print_result(result: object) -> None:
    from medbalance.engine import RunResult

    if not isinstance(result, RunResult) or os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    typer.echo(
        f"best epoch {result.best_epoch} by val {result.config.select} = {result.best_value:.4f}"
    )
    if result.evaluation:
        _print_metrics(result.evaluation)
    typer.echo(f"run folder: {result.run_dir} (report.html, metrics.json, predictions.csv)")


@app.command("lr-find")
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
) -> None:
    """Sweep the learning rate (exponentially, one batch each), plot the loss, suggest an lr."""
    from medbalance.config import ConfigError, load_config

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
            ),
        )
        from medbalance.lrfind import lr_find

        result = lr_find(config, out, steps=steps)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(f"suggested lr: {result.suggestion:.2e} (plot: {result.plot})")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A training run folder.")],
    data: Annotated[
        str | None, typer.Argument(help="Other data to evaluate on (default: the run's).")
    ] = None,
    split: Annotated[str, typer.Option(help="Split to report: test or val.")] = "test",
    threshold: Annotated[
        str | None,
        typer.Option(
            help="Re-choose the operating point on val: youden | f1 | 'sensitivity>=0.95' | "
            "'specificity>=0.9' | 'cost:FN=5,FP=1' | a number; multi-class: argmax | prior | "
            "logit-adjust:TAU. Default: the one stored at training."
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs.")] = 1000,
    device: Annotated[str, typer.Option(help="cpu | cuda | mps")] = "cpu",
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
) -> None:
    """Evaluate a run's best checkpoint: metrics.json, predictions.csv and report.html."""
    from medbalance.evaluation import evaluate_run

    if split not in ("test", "val"):
        _fail(ValueError(f"--split must be test or val, got {split!r}"))
    try:
        result = evaluate_run(
            run_dir,
            data=data,
            split=split,
            policy=threshold,
            n_bootstrap=bootstrap,
            device=device,
            report=not no_report,
        )
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    _print_metrics(result)


def _print_metrics(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    point = result["threshold"]
    assert isinstance(point, dict)
    value = point["value"]
    title = (
        f"{result['split']} split (n={result['n']}), operating point: {point['policy']}"
        + (f" = {value:.3f}" if isinstance(value, float) else "")
        + f", chosen on {point['chosen_on']}"
    )
    table = Table(title=title)
    for column in ("metric", "value", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    for name, entry in metrics.items():
        lo, hi = entry["ci"]
        table.add_row(name, f"{entry['value']:.4f}", f"{lo:.4f} – {hi:.4f}")
    Console().print(table)


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="best.safetensors of a run.")],
    inputs: Annotated[list[str], typer.Argument(help="Images, folders, CSV manifests, .npz.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path(
        "predictions.csv"
    ),
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    device: Annotated[str, typer.Option(help="cpu | cuda | mps")] = "cpu",
) -> None:
    """Score new images; one row per image with probabilities and the decision.

    Exits 1 if any input could not be read (its row names the reason).
    """
    from medbalance.predict import predict as run_predict

    try:
        summary = run_predict(checkpoint, inputs, out, batch_size=batch_size, device=device)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(f"scored {summary.n_scored} image(s) -> {summary.out}")
    for item, reason in summary.failures:
        typer.secho(f"unreadable: {item}: {reason}", fg=typer.colors.YELLOW, err=True)
    if summary.failures:
        raise typer.Exit(code=1)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder with metrics.json.")],
) -> None:
    """Re-draw RUN_DIR/report.html from the run's files (no galleries)."""
    from medbalance.report import report_from_run

    try:
        path = report_from_run(run_dir)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(f"report: {path}")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="best.safetensors of a run.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file.")] = None,
) -> None:
    """Export a checkpoint to ONNX or TorchScript with a JSON sidecar (classes, threshold)."""
    from medbalance.export import export_model

    try:
        model_path, sidecar = export_model(checkpoint, fmt, out)  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError, ImportError) as error:
        _fail(error)
    typer.echo(f"wrote {model_path} and {sidecar}")


@app.command()
def compare(
    data: Annotated[
        str | None, typer.Argument(help="Data (as for train); or data = in --config.")
    ] = None,
    remedies: Annotated[
        str | None,
        typer.Option(
            "--remedies",
            "-r",
            help="Comma-separated presets: baseline, oversample, undersample, balanced-batches, "
            "weighted-ce, cb-focal, cost-ce, ldam-drw, logit-adjusted, crt; or 'all'; or "
            "TOML/YAML files whose keys override baseline.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Comparison folder.")] = Path(
        "comparison"
    ),
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per remedy (0..N-1).")] = 3,
    epochs: Annotated[int | None, typer.Option(help="Epochs of every run (default 10).")] = None,
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            "--budget-minutes", help="Start no run that would end after this (same epochs kept)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Runs trained at a time (processes).")] = 1,
    metric: Annotated[
        str,
        typer.Option(
            help="Metric of the verdict: auroc | balanced_accuracy | sensitivity | "
            "specificity | ppv | f1 | macro_f1 | ece"
        ),
    ] = "auroc",
    collect_dir: Annotated[
        Path | None,
        typer.Option("--collect", help="Only summarise the finished runs in DIR/runs/ (no DATA)."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML/YAML with the settings every run shares."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="timm model name or smallcnn (auto).")] = None,
    size: Annotated[int | None, typer.Option(help="Training image size in pixels (auto).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (one-cycle).")] = None,
    bootstrap: Annotated[
        int | None, typer.Option(help="Bootstrap resamples for CIs and paired tests.")
    ] = None,
    positive_class: Annotated[
        str | None, typer.Option("--positive-class", help="Positive class of a binary task.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    resplit_val: ResplitVal = None,
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
) -> None:
    """Train every remedy with the same data, splits, model, epochs and seeds, and compare.

    Each run is a train run folder OUT/runs/REMEDY/seedK (finished runs are kept, interrupted
    ones resume). Writes comparison.csv, comparison.md, comparison.html and comparison.json
    with a paired comparison against baseline and a verdict.
    """
    from medbalance.compare import collect as collect_runs
    from medbalance.compare import compare as compare_runs
    from medbalance.config import ConfigError, load_config

    try:
        if collect_dir is not None:
            if data is not None:
                raise ValueError("--collect DIR reads finished runs; give no DATA with it")
            names = remedies.split(",") if remedies else None
            result = collect_runs(collect_dir, metric=metric, remedies=names)
        else:
            if not remedies:
                raise ValueError("give --remedies, e.g. --remedies baseline,oversample (or all)")
            overrides = dict(
                data=data,
                epochs=epochs,
                model=model,
                size=size,
                batch_size=batch_size,
                lr=lr,
                bootstrap=bootstrap,
                positive_class=positive_class,
                device=device,
                resplit_val=resplit_val,
                group_pattern=group_pattern,
                group_column=group_column,
            )
            base = load_config(config_file, overrides)
            result = compare_runs(
                base,
                remedies,
                out,
                seeds=seeds,
                jobs=jobs,
                budget_minutes=budget_minutes,
                metric=metric,
            )
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        _fail(error)
    _print_comparison(result)


def _print_comparison(result: object, note: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from medbalance.comparison_report import Comparison

    assert isinstance(result, Comparison)
    console = Console()
    if not console.is_terminal:  # a log file or pipe: no 80-column squeeze
        console = Console(width=150)
    head, rows = result.summary_table(compact=True)
    title = "test metrics at each run's operating point, mean ± sd over seeds"
    table = Table(title=f"{note}: {title}" if note else title)
    table.add_column(head[0], no_wrap=True)
    for column in head[1:]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in result.notes:
        console.print(f"note: {line}", style="yellow", markup=False, highlight=False)
    console.print(result.verdict, style="bold", markup=False, highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in result.files), markup=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo folder.")] = Path("demo-out"),
    minutes: Annotated[
        float, typer.Option(min=0.5, help="Time to aim for on a 2-core CPU (sets epochs).")
    ] = 2.0,
    epochs: Annotated[int | None, typer.Option(min=2, help="Epochs per run (overrides).")] = None,
) -> None:
    """Offline demo on SYNTHETIC data: make X-ray-like images, inspect, compare three remedies.

    Writes OUT/synthetic_xrays (labelled SYNTHETIC), OUT/inspect and OUT/compare, and prints
    where the reports are. No network and no real data needed.
    """
    from medbalance.demo import SYNTHETIC_NOTE, run_demo

    typer.secho(f"medbalance demo -- {SYNTHETIC_NOTE}", bold=True)
    try:
        result = run_demo(out, minutes=minutes, epochs=epochs)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        _fail(error)
    _print_comparison(result.comparison, note=f"SYNTHETIC data: {result.data}")
    lines = [
        f"SYNTHETIC data set (not medical images): {result.data}",
        f"inspection of the synthetic data: {result.inspect}/ (summary.json, class_counts.png, "
        "samples.png)",
        *(f"run report (synthetic data): {path}" for path in result.reports),
        f"comparison (synthetic data): {result.comparison.out / 'comparison.html'}",
        f"demo took {result.seconds:.0f} s",
    ]
    for line in lines:
        typer.echo(line)


def main() -> None:
    """Entry point of the ``medbalance`` console script."""
    app()


if __name__ == "__main__":
    main()
