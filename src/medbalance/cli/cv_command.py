"""``medbalance cv`` (K-fold cross-validation, out-of-fold operating point, fold ensemble) and
``medbalance ensemble`` (an ensemble of finished runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medbalance.cli.options import (
    CALIBRATION_HELP,
    ClassOrder,
    DataArg,
    GroupColumn,
    GroupPattern,
    Ordinal,
    SkipUnreadable,
    TrackTo,
    TrackUri,
    decision_option,
    fail,
    guarantee_option,
    parse_class_order,
    parse_options,
)
from medbalance.training.names import Device, LossName, SamplerName, choices

__all__ = ["cv", "ensemble"]


def cv(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The CV folder.")] = Path("cv"),
    folds: Annotated[int, typer.Option(min=2, help="K: folds over train+val.")] = 5,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML/YAML config shared by every fold.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs per fold (default: planned from the data, as in train)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="timm model name or smallcnn (auto).")] = None,
    size: Annotated[int | None, typer.Option(help="Training image size (auto).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per batch (64).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    sampler: Annotated[
        str | None, typer.Option(help=f"{choices(SamplerName)} | oversample:ALPHA")
    ] = None,
    loss: Annotated[str | None, typer.Option(help=choices(LossName))] = None,
    loss_option: Annotated[
        list[str] | None, typer.Option("--loss-option", help="KEY=VALUE for the loss.")
    ] = None,
    threshold: Annotated[
        str | None,
        decision_option("The operating point, chosen on the out-of-fold predictions"),
    ] = None,
    guarantee: Annotated[
        float | None,
        guarantee_option("the out-of-fold cases"),
    ] = None,
    calibration: Annotated[
        str | None, typer.Option(metavar="METHOD", help=CALIBRATION_HELP)
    ] = None,
    bootstrap: Annotated[
        int | None, typer.Option(min=0, help="Bootstrap resamples (1000).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (folds and training).")] = None,
    device: Annotated[str | None, typer.Option(help=choices(Device))] = None,
    positive_class: Annotated[
        str | None,
        typer.Option("--positive-class", help="The positive class of a binary task (the rarer)."),
    ] = None,
    ema: Annotated[
        float | None, typer.Option(help="Moving average of the weights (decay).")
    ] = None,
    tta: Annotated[
        int, typer.Option(min=1, max=9, help="Test-time views for OOF and test probabilities.")
    ] = 1,
    combine: Annotated[
        str,
        typer.Option(
            help="mean | stack: the mean of the fold models' probabilities, or that mean through "
            "a logistic regression fit on the out-of-fold ones (decision on its cross-validated "
            "outputs)."
        ),
    ] = "mean",
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    skip_unreadable: SkipUnreadable = False,
    ordinal: Ordinal = None,
    class_order: ClassOrder = None,
    track: TrackTo = None,
    track_uri: TrackUri = None,
) -> None:
    """Cross-validate: K fold models, operating point on out-of-fold predictions, and their
    ensemble evaluated once on test.

    Writes metrics.json and predictions.csv (the ensemble on test), oof_metrics.json and
    oof_predictions.csv, folds.csv, ensemble.json (for predict OUT) and report.html.
    """
    from medbalance.training.config import ConfigError, load_config
    from medbalance.workflows.cv import cross_validate

    overrides = dict(
        data=data,
        epochs=epochs,
        model=model,
        size=size,
        batch_size=batch_size,
        lr=lr,
        sampler=sampler,
        loss=loss,
        loss_options=parse_options(loss_option),
        threshold=threshold,
        guarantee=guarantee,
        calibration=calibration,
        bootstrap=bootstrap,
        seed=seed,
        device=device,
        positive_class=positive_class,
        ema=ema,
        group_pattern=group_pattern,
        group_column=group_column,
        skip_unreadable=skip_unreadable or None,
        ordinal=ordinal,
        class_order=parse_class_order(class_order),
        track=track,
        track_uri=track_uri,
    )
    try:
        config = load_config(config_file, overrides)
        result = cross_validate(config, folds=folds, out=out, tta=tta, combine=combine)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        fail(error)
    oof = result.oof["metrics"]
    typer.echo(
        f"out-of-fold (n={result.oof['n']}): AUROC {_fmt(oof.get('auroc'))}, balanced accuracy "
        f"{_fmt(oof.get('balanced_accuracy'))}; operating point {result.decision.policy} "
        f"chosen on oof"
    )
    if result.metrics:
        test = result.metrics["metrics"]
        typer.echo(
            f"ensemble of {folds} ({combine}) on test (n={result.metrics['n']}): AUROC "
            f"{_fmt(test.get('auroc'))}, balanced accuracy {_fmt(test.get('balanced_accuracy'))}"
        )
    typer.echo(f"cv folder: {out} (report.html, metrics.json, oof_predictions.csv, ensemble.json)")


def ensemble(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN", help="Two or more finished run folders on the same data."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble folder.")] = Path(
        "ensemble"
    ),
    threshold: Annotated[
        str | None,
        decision_option(
            "The operating point, chosen on the mean val probabilities (default: the first run's)"
        ),
    ] = None,
    tta: Annotated[int, typer.Option(min=1, max=9, help="Test-time views per member.")] = 1,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples (1000).")] = 1000,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | mps (auto: the GPU if any).")
    ] = "auto",
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
) -> None:
    """Combine finished runs (seeds, models or remedies on the same data and splits) into one
    ensemble: the mean of their probabilities, its decision chosen on val, evaluated once on test.

    Writes metrics.json and predictions.csv (test), metrics_val.json and predictions_val.csv
    (val), ensemble.json and report.html; evaluate, predict, report and export take OUT.
    """
    from medbalance.workflows.ensembles import ensemble_runs

    try:
        result = ensemble_runs(
            runs, out, policy=threshold, tta=tta, n_bootstrap=bootstrap, device=device,
            report=not no_report,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    test = result["metrics"]
    typer.echo(
        f"ensemble of {len(runs)} on test (n={result['n']}): AUROC {_fmt(test.get('auroc'))}, "
        f"balanced accuracy {_fmt(test.get('balanced_accuracy'))}; operating point "
        f"{result['threshold']['policy']} chosen on val"
    )
    typer.echo(f"ensemble folder: {out} (report.html, metrics.json, ensemble.json)")


def _fmt(entry: object) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), float):
        return "n/a"
    lo, hi = entry["ci"]
    ci = f" ({lo:.3f}-{hi:.3f})" if isinstance(lo, float) and isinstance(hi, float) else ""
    return f"{entry['value']:.3f}{ci}"
