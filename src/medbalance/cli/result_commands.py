"""The ``medbalance`` commands on runs: evaluate, predict, report, export, compare and demo.

Plain functions; :mod:`medbalance.cli.app` registers them on the typer app. Heavy modules (torch,
matplotlib, scikit-learn) are imported inside the commands so that ``medbalance --help`` answers
at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medbalance.cli.options import (
    ClassOrder,
    GroupColumn,
    GroupPattern,
    Ordinal,
    ResplitVal,
    TrackTo,
    TrackUri,
    decision_option,
    fail,
    guarantee_option,
    parse_class_order,
)

__all__ = [
    "compare", "demo", "evaluate", "export", "predict", "print_conformal", "print_metrics",
    "print_site_prior",
    "report",
]  # fmt: skip


def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A training run folder.")],
    data: Annotated[
        str | None,
        typer.Argument(metavar="DATA", help="Other data to evaluate on (default: the run's)."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split to report: test or val.")] = "test",
    threshold: Annotated[
        str | None,
        decision_option(
            "Re-choose the operating point on val (default: the one stored at training)"
        ),
    ] = None,
    guarantee: Annotated[
        float | None,
        guarantee_option("val (re-chooses --threshold or the stored policy)"),
    ] = None,
    prevalence: Annotated[
        float | None,
        typer.Option(
            metavar="P",
            help="The positive class's prevalence where the model will be used: PPV and NPV "
            "at it, with CIs (metrics.json 'site').",
        ),
    ] = None,
    class_prior: Annotated[
        str | None,
        typer.Option(
            "--class-prior",
            metavar="A=P,B=Q",
            help="The class prior where the model will be used (every class, summing to 1): "
            "each class's PPV at it.",
        ),
    ] = None,
    estimate_prevalence: Annotated[
        bool,
        typer.Option(
            "--estimate-prevalence",
            help="Estimate the evaluated images' class prior from their calibrated "
            "probabilities (EM, bootstrap CI), beside the true and the training prior.",
        ),
    ] = False,
    conformal: Annotated[
        float | None,
        typer.Option(
            metavar="LEVEL",
            help="Conformal prediction sets at LEVEL, e.g. 0.9, calibrated per class on the "
            "tuning cases: each class's coverage and mean set size and the refer rate, with "
            "CIs (metrics.json 'conformal').",
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs.")] = 1000,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | mps (auto: the GPU if any).")
    ] = "auto",
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
    tta: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=9,
            help="Average over N fixed views (shifts, rotations, zooms; never flips); the "
            "operating point is re-chosen on val with them and stored for predict.",
        ),
    ] = None,
) -> None:
    """Evaluate a run's best checkpoint (or a cv folder's ensemble): metrics.json,
    predictions.csv and report.html."""
    from medbalance.workflows.training import evaluate_run

    if split not in ("test", "val"):
        fail(ValueError(f"--split must be test or val, got {split!r}"))
    if prevalence is not None and class_prior is not None:
        fail(ValueError("give --prevalence (two classes) or --class-prior, not both"))
    try:
        result = evaluate_run(
            run_dir,
            data=data,
            split=split,
            policy=threshold,
            n_bootstrap=bootstrap,
            device=device,
            report=not no_report,
            tta=tta,
            guarantee=guarantee,
            prior=prevalence if prevalence is not None else class_prior,
            estimate_prior=estimate_prevalence,
            conformal=conformal,
        )
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    print_metrics(result)
    print_site(result.get("site"))
    print_conformal(result.get("conformal"))


def print_metrics(result: dict[str, object]) -> None:
    """Print an evaluation (metrics with 95% CIs at its operating point) as a table."""
    from rich.console import Console
    from rich.table import Table

    from medbalance.reporting.format import guarantee_text

    point = result["threshold"]
    assert isinstance(point, dict)
    value = point["value"]
    title = (
        f"{result['split']} split (n={result['n']}), operating point: {point['policy']}"
        + (f" = {value:.3f}" if isinstance(value, float) else "")
        + f", chosen on {point['chosen_on']}"
    )
    bound = guarantee_text(point)
    title += f"; {bound}" if bound else ""
    table = Table(title=title)
    for column in ("metric", "value", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    for name, entry in metrics.items():
        table.add_row(name, _number(entry["value"]), " – ".join(map(_number, entry["ci"])))
    Console().print(table)


def _number(value: object) -> str:
    """A metric for the terminal: 4 decimals, or n/a where it is undefined (null)."""
    return f"{value:.4f}" if isinstance(value, float) and value == value else "n/a"


def print_site(site: object) -> None:
    """Print ``metrics.json``'s ``site``: the PPV (and NPV) at the prior given, and the prior
    estimated from the images, each with its 95% CI."""
    if not isinstance(site, dict):
        return

    def said(entry: dict[str, Any]) -> str:
        lo, hi = entry["ci"]
        return f"{entry['value']:.3f} ({lo:.3f}-{hi:.3f})"

    if "at_prior" in site:
        at = site["at_prior"]
        prior = ", ".join(f"{k} {v:g}" for k, v in at["prior"].items())
        ppv = ", ".join(f"{k} {said(v)}" for k, v in at["ppv"].items())
        npv = f"; NPV {said(at['npv'])}" if "npv" in at else ""
        typer.echo(f"at the prior {prior}: PPV {ppv}{npv}")
    if "estimated_prior" in site:
        found = ", ".join(f"{k} {said(v)}" for k, v in site["estimated_prior"].items())
        known = ", ".join(f"{k} {v:.3f}" for k, v in site["evaluated_prior"].items())
        train = ", ".join(f"{k} {v:.3f}" for k, v in site["training_prior"].items())
        typer.echo(f"estimated prior: {found}; true {known}; training {train}")


def print_site_prior(site: object) -> None:
    """Print ``predict --estimate-prevalence``'s estimate beside the tuning and training prior."""
    if not isinstance(site, dict):
        return
    found = ", ".join(
        f"{k} {v['value']:.3f} ({v['ci'][0]:.3f}-{v['ci'][1]:.3f})"
        for k, v in site["estimated_prior"].items()
    )
    tuned = ", ".join(f"{k} {v:.3f}" for k, v in site["tuning_prior"].items())
    train = ", ".join(f"{k} {v:.3f}" for k, v in site["training_prior"].items())
    typer.echo(f"estimated class prior of the {site['n']} scored image(s): {found}")
    typer.echo(f"  the model was tuned at {tuned}; trained at {train}")


def print_conformal(block: object) -> None:
    """Print ``metrics.json``'s ``conformal``: per class coverage and mean set size, and the
    refer rate, each with its 95% CI."""
    if not isinstance(block, dict):
        return

    def said(entry: dict[str, Any]) -> str:
        if entry["value"] is None or entry["value"] != entry["value"]:
            return "n/a"
        lo, hi = entry["ci"]
        return f"{entry['value']:.3f} ({lo:.3f}-{hi:.3f})"

    typer.echo(f"conformal sets at {block['level']:g} (calibrated on {block['chosen_on']}):")
    for name, entry in block["per_class"].items():
        typer.echo(
            f"  {name}: coverage {said(entry['coverage'])}, mean set size "
            f"{said(entry['mean_set_size'])} (n={entry['n']}, tuning {entry['tuning_cases']})"
        )
    typer.echo(f"  refer rate {said(block['refer_rate'])}")


def predict(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="best.safetensors of a run, a run folder, or a cv folder (ensemble).",
        ),
    ],
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT", help="Images, folders, CSV manifests, .npz.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path(
        "predictions.csv"
    ),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images scored at a time.")] = 64,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | mps (auto: the GPU if any).")
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file.")
    ] = False,
    conformal: Annotated[
        float | None,
        typer.Option(
            metavar="LEVEL",
            help="Add each image's conformal set at LEVEL, e.g. 0.9 (column 'set': class names "
            "joined by '|') and 'refer' (1 when the set is not exactly one class).",
        ),
    ] = None,
    estimate_prevalence: Annotated[
        bool,
        typer.Option(
            "--estimate-prevalence",
            help="Estimate the scored images' class prior from their calibrated "
            "probabilities (EM, 95% bootstrap CI), beside the prior the model was tuned and "
            "trained at; no labels needed.",
        ),
    ] = False,
) -> None:
    """Score new images; one row per image with probabilities and the decision.

    --out must be a new file (or --overwrite), never a file of a run folder. Exits 1 if any
    input could not be read (its row names the reason).
    """
    from medbalance.evaluation.predict import predict as run_predict

    try:
        summary = run_predict(
            checkpoint, inputs, out, batch_size=batch_size, device=device, overwrite=overwrite,
            conformal=conformal, estimate_prevalence=estimate_prevalence,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    typer.echo(f"scored {summary.n_scored} image(s) -> {summary.out}")
    print_site_prior(summary.site_prior)
    if summary.n_referred is not None:
        typer.echo(f"conformal sets at {conformal:g}: {summary.n_referred} image(s) to refer")
    for item, reason in summary.failures:
        typer.secho(f"unreadable: {item}: {reason}", fg=typer.colors.YELLOW, err=True)
    if summary.failures:
        raise typer.Exit(code=1)


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run folder with metrics.json.")],
) -> None:
    """Re-draw RUN_DIR/report.html from the run's files (no galleries)."""
    from medbalance.reporting.report import report_from_run

    try:
        path = report_from_run(run_dir)
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    typer.echo(f"report: {path}")


def export(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL", help="best.safetensors of a run, a run folder, or a cv folder."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output file.")
    ] = False,
) -> None:
    """Export a checkpoint to ONNX or TorchScript with a JSON sidecar (classes, threshold).

    The output must be a new file (or --overwrite), never a file of a run folder.
    """
    from medbalance.evaluation.export import export_model

    try:
        model_path, sidecar = export_model(
            checkpoint,
            fmt,  # type: ignore[arg-type]  # checked by export_model
            out,
            overwrite=overwrite,
        )
    except (ValueError, FileNotFoundError, ImportError) as error:
        fail(error)
    typer.echo(f"wrote {model_path} and {sidecar}")


def compare(
    data: Annotated[
        str | None,
        typer.Argument(metavar="DATA", help="Data (as for train); or data = in --config."),
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
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of every run (default: planned once from the data).")
    ] = None,
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            "--budget-minutes", help="Start no run that would end after this (same epochs kept)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Runs trained at a time (processes).")] = 1,
    folds: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Run every remedy and seed as a K-fold cv (fold ensemble on test, operating "
            "point on out-of-fold cases) and also pair the remedies on the out-of-fold cases.",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Metric of the verdict: auroc | balanced_accuracy | sensitivity | "
            "specificity | ppv | f1 | macro_f1 | ece | quadratic_kappa | mean_abs_error | "
            "within_one_accuracy (default: quadratic_kappa for --ordinal runs, else auroc; "
            "macro AUROC for multi-class).",
            show_default=False,
        ),
    ] = None,
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
    threshold: Annotated[
        str | None,
        decision_option(
            "Operating point of every run, chosen on val (a remedy file may set its own)"
        ),
    ] = None,
    resplit_val: ResplitVal = None,
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    ordinal: Ordinal = None,
    class_order: ClassOrder = None,
    track: TrackTo = None,
    track_uri: TrackUri = None,
) -> None:
    """Train every remedy with the same data, splits, model, epochs and seeds, and compare.

    Each run is a train run folder OUT/runs/REMEDY/seedK (finished runs are kept, interrupted
    ones resume). Writes comparison.csv, comparison.md, comparison.html and comparison.json
    with a paired comparison against baseline and a verdict.
    """
    from medbalance.training.config import ConfigError, load_config
    from medbalance.workflows.compare import collect as collect_runs
    from medbalance.workflows.compare import compare as compare_runs

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
                threshold=threshold,
                resplit_val=resplit_val,
                group_pattern=group_pattern,
                group_column=group_column,
                ordinal=ordinal,
                class_order=parse_class_order(class_order),
                track=track,
                track_uri=track_uri,
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
                folds=folds,
            )
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        fail(error)
    _print_comparison(result)


def _print_comparison(result: object, note: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from medbalance.comparison.report import Comparison

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
    from medbalance.workflows.demo import SYNTHETIC_NOTE, run_demo

    typer.secho(f"medbalance demo -- {SYNTHETIC_NOTE}", bold=True)
    try:
        result = run_demo(out, minutes=minutes, epochs=epochs)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        fail(error)
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
