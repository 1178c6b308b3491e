"""``medbalance recalibrate``: a model's calibration, operating point and conformal sets re-fitted
on a labelled sample from the site where it will be used (the weights are shared)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medbalance.cli.options import CALIBRATION_HELP, decision_option, fail, guarantee_option

__all__ = ["recalibrate"]


def recalibrate(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN", help="A run folder, or a cv or ensemble folder.")
    ],
    data: Annotated[
        str,
        typer.Argument(
            metavar="LOCAL_DATA",
            help="A labelled sample from the new site, in the run's classes (a folder, CSV or "
            "npz; without splits medbalance keeps a stratified 15% to check).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new folder (new or empty).")] = Path(
        "recalibrated"
    ),
    threshold: Annotated[
        str | None,
        decision_option("The operating point, chosen on the site's cases (default: the run's)"),
    ] = None,
    guarantee: Annotated[
        float | None,
        guarantee_option("the site's cases (default: the run's)"),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option(metavar="METHOD", help=f"{CALIBRATION_HELP} Default: the run's."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples (1000).")] = 1000,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | mps (auto: the GPU if any).")
    ] = "auto",
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
) -> None:
    """Re-fit a model for another site on a small labelled sample from it: the calibration,
    the operating point and the conformal scores; the weights are shared, not copied.

    Cases outside the sample's test split tune; its test split checks the new operating point
    once (metrics.json, with CIs). OUT holds ensemble.json (pointing at RUN's weights),
    metrics.json, predictions.csv, metrics_val.json and predictions_val.csv (the tuning cases)
    and report.html, which says which site each part comes from; evaluate, predict, report and
    export take OUT.
    """
    from medbalance.cli.result_commands import print_metrics
    from medbalance.workflows.recalibrate import recalibrate_run

    try:
        result = recalibrate_run(
            run_dir, data, out, policy=threshold, guarantee=guarantee, calibration=calibration,
            n_bootstrap=bootstrap, device=device, report=not no_report,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    site = result["recalibration"]
    before, after = site["decision_before"], site["decision_after"]
    typer.echo(
        f"tuned on {sum(site['tuning_cases'].values())} site case(s), checked on {result['n']}: "
        f"operating point {before['policy']} {_value(before)} -> {after['policy']} "
        f"{_value(after)}"
    )
    print_metrics(result)
    typer.echo(f"recalibrated model: {out} (report.html, metrics.json, ensemble.json)")


def _value(point: dict[str, object]) -> str:
    value = point.get("value")
    return f"at {value:.3f}" if isinstance(value, float) else "(a rule)"
