"""compare on multi-class and ordinal runs: macro AUROC, balanced accuracy, quadratic kappa."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medbalance.cli.app import app
from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci
from medbalance.evaluation.metrics import multiclass_metrics
from medbalance.training.config import ConfigError
from medbalance.workflows.compare import collect, paired_runs

GRADES = ["0", "1", "2", "3"]
PER_GRADE = 30


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _fake_graded_run(
    root: Path, remedy: str, seed: int, miss: int, *, ordinal: bool = True, wrong: float = 0.4
) -> Path:
    """A finished 4-grade run written by hand: a share ``wrong`` of the cases is predicted
    ``miss`` grades off (up, else down, else the farthest grade); the probabilities follow the
    calls."""
    rng = np.random.default_rng(seed)
    top = len(GRADES) - 1
    labels = np.repeat(np.arange(len(GRADES)), PER_GRADE)
    off = rng.random(len(labels)) < wrong
    farthest = np.where(labels > top / 2, 0, top)
    moved = np.where(labels + miss <= top, labels + miss, labels - miss)
    preds = np.where(off, np.where(moved >= 0, moved, farthest), labels)
    probs = rng.dirichlet(np.ones(len(GRADES)), len(labels)) * 0.3
    probs[np.arange(len(labels)), preds] += 0.7
    run = root / "runs" / remedy / f"seed{seed}"
    run.mkdir(parents=True)
    metric = functools.partial(multiclass_metrics, ordinal=ordinal)
    cis = bootstrap_ci(metric, labels, probs, preds, n_resamples=20)
    result = {
        "split": "test",
        "n": len(labels),
        "class_names": GRADES,
        "positive_class": None,
        "threshold": {"policy": "expected-grade", "value": None, "chosen_on": "val"},
        "ordinal": ordinal,
        "metrics": with_ci(metric(labels, probs, preds), cis),
    }
    (run / "metrics.json").write_text(json.dumps(result))
    config = {"data": "grades", "model": "smallcnn", "epochs": 3, "seed": seed, "bootstrap": 200}
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.csv").write_text("epoch,seconds\n0,1.0\n")
    with (run / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "true_label", *(f"prob_{g}" for g in GRADES),
                         "predicted_label"])  # fmt: skip
        for i, (y, p, c) in enumerate(zip(labels, probs, preds, strict=True)):
            writer.writerow([f"case{i}", "", GRADES[y], *p, GRADES[c]])
    return run


def test_paired_quadratic_kappa_sees_the_remedy_that_misses_by_one_grade(tmp_path: Path) -> None:
    far = _fake_graded_run(tmp_path, "baseline", 0, miss=3)
    near = _fake_graded_run(tmp_path, "oversample", 0, miss=1)
    better = paired_runs(far, near, "quadratic_kappa", n_resamples=300)
    assert better["remedy_value"] > better["reference_value"]
    assert better["difference"] > 0.3 and better["ci_low"] > 0 and better["outside_noise"]
    worse = paired_runs(near, far, "quadratic_kappa", n_resamples=300)
    assert worse["difference"] == pytest.approx(-better["difference"])
    assert worse["ci_high"] < 0 and worse["outside_noise"]
    # both miss the same share of cases: balanced accuracy cannot tell them apart
    same = paired_runs(far, near, "balanced_accuracy", n_resamples=300)
    assert same["difference"] == pytest.approx(0.0, abs=0.05)


def test_collect_of_ordinal_runs_pairs_and_judges_on_quadratic_kappa(tmp_path: Path) -> None:
    for seed in (0, 1):
        _fake_graded_run(tmp_path, "baseline", seed, miss=3)
        _fake_graded_run(tmp_path, "oversample", seed, miss=1)
    result = collect(tmp_path)  # no metric: quadratic kappa, as every run is ordinal
    assert (result.metric, result.task) == ("quadratic_kappa", "ordinal")
    assert {e["metric"] for e in result.paired} == {"auroc", "balanced_accuracy", "quadratic_kappa"}
    assert result.verdict.startswith("Verdict (test Quadratic kappa, mean over 2 seeds)")
    assert "best is oversample" in result.verdict and "outside the noise" in result.verdict
    row = result.rows[1]
    assert (
        row["quadratic_kappa_diff_vs_reference"] > 0 and row["quadratic_kappa_diff_outside_noise"]
    )
    assert row["mean_abs_error_mean"] < result.rows[0]["mean_abs_error_mean"]
    head, _ = result.summary_table()
    assert {"Macro AUROC", "Quadratic kappa", "Mean abs. error (grades)"} <= set(head)
    assert "QWK" in result.summary_table(compact=True)[0]
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| oversample | 0 | Quadratic kappa |" in markdown
    assert "Ordinal grades: AUROC is the macro one-vs-rest AUROC" in markdown
    assert "Quadratic kappa" in (tmp_path / "comparison.html").read_text()
    stored = _strict((tmp_path / "comparison.json").read_text())
    assert isinstance(stored, dict) and stored["task"] == "ordinal"
    auroc = collect(tmp_path, metric="auroc")
    assert auroc.verdict.startswith("Verdict (test Macro AUROC")


def test_collect_of_multiclass_runs_pairs_macro_auroc_and_balanced_accuracy(
    tmp_path: Path,
) -> None:
    _fake_graded_run(tmp_path, "baseline", 0, miss=1, ordinal=False, wrong=0.6)
    _fake_graded_run(tmp_path, "oversample", 0, miss=1, ordinal=False, wrong=0.2)
    result = collect(tmp_path)
    assert (result.metric, result.task) == ("auroc", "multiclass")
    assert {e["metric"] for e in result.paired} == {"auroc", "balanced_accuracy"}
    balanced = next(e for e in result.paired if e["metric"] == "balanced_accuracy")
    assert balanced["difference"] == pytest.approx(0.4, abs=0.1) and balanced["ci_low"] > 0
    assert result.verdict.startswith("Verdict (test Macro AUROC, mean over 1 seed)")
    assert "quadratic_kappa_mean" not in result.rows[0]
    assert "Multi-class: AUROC is the macro mean" in (tmp_path / "comparison.md").read_text()
    with pytest.raises(ConfigError, match="quadratic_kappa needs ordinal runs"):
        collect(tmp_path, metric="quadratic_kappa")


def test_cli_compare_collect_of_ordinal_runs_prints_the_kappa_verdict(tmp_path: Path) -> None:
    _fake_graded_run(tmp_path, "baseline", 0, miss=3)
    _fake_graded_run(tmp_path, "oversample", 0, miss=1)
    result = CliRunner().invoke(app, ["compare", "--collect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "QWK" in result.output
    assert "Verdict (test Quadratic kappa" in result.output.replace("\n", " ")


def test_cli_compare_hands_ordinal_class_order_and_decision_to_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medbalance.cli.result_commands as command
    import medbalance.workflows.compare as workflow
    from medbalance.training.config import TrainConfig

    seen: dict[str, TrainConfig] = {}

    def record(base: TrainConfig, *args: object, **kwargs: object) -> None:
        seen["base"] = base  # and train nothing

    monkeypatch.setattr(workflow, "compare", record)
    monkeypatch.setattr(command, "_print_comparison", lambda result: None)
    args = ["compare", str(tmp_path), "-r", "baseline", "--ordinal", "--class-order", "0,2,1"]
    result = CliRunner().invoke(app, [*args, "--decision", "median-grade"])
    assert result.exit_code == 0, result.output
    base = seen["base"]
    assert base.ordinal is True
    assert base.class_order == ("0", "2", "1")
    assert base.threshold == "median-grade"
    assert base.sampler == "none"  # auto: no sampler for grades


def test_bar_chart_shows_a_negative_kappa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medbalance.comparison.report as report

    limits: list[tuple[float, float]] = []

    def capture(figure: object, alt: str, dpi: int = 150) -> str:
        if alt.startswith("bar chart"):
            limits.append(figure.axes[0].get_ylim())  # type: ignore[attr-defined]
        return ""

    monkeypatch.setattr(report, "figure_img", capture)
    _fake_graded_run(tmp_path, "baseline", 0, miss=3, wrong=0.9)  # worse than chance
    _fake_graded_run(tmp_path, "oversample", 0, miss=1)
    result = collect(tmp_path)
    assert result.rows[0]["quadratic_kappa_mean"] < -0.2
    ((low, high),) = limits
    assert low < result.rows[0]["quadratic_kappa_mean"] and high >= 1.0
