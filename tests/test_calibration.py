"""Calibrated probabilities: the temperature, the prior correction, the metrics, and a run's
files (metrics.json, predict's CSV) carrying them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, log_loss

import medbalance as mb
from medbalance.evaluation.calibration import (
    Calibration,
    calibration_metrics,
    calibration_report,
    fit_calibration,
    read_calibration,
)
from medbalance.evaluation.metrics import expected_calibration_error


def _overconfident(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    logit = 3 * (y - 0.5) + rng.normal(0, 1.5, n)
    p1 = 1 / (1 + np.exp(-3 * logit))  # logits three times too large
    return y, np.c_[1 - p1, p1]


def test_temperature_is_the_log_loss_minimum_and_lowers_the_ece() -> None:
    y, probs = _overconfident()
    fitted = fit_calibration(y, probs)
    grid = np.linspace(0.5, 6.0, 2201)
    nll = [-np.log(softmax(np.log(probs) / t, axis=1)[np.arange(len(y)), y]).mean() for t in grid]
    assert fitted.temperature == pytest.approx(grid[int(np.argmin(nll))], abs=0.005)
    assert fitted.temperature > 2  # softens an overconfident model
    before = calibration_metrics(y, probs)
    after = calibration_metrics(y, fitted.apply(probs))
    assert after["ece"] < before["ece"] / 2 and after["log_loss"] < before["log_loss"]
    # the order of the images' positive probabilities, so any threshold's rates, stays
    order = np.argsort(probs[:, 1], kind="stable")
    assert (np.diff(fitted.apply(probs)[order, 1]) >= -1e-12).all()


def test_prior_correction_recovers_the_natural_posterior() -> None:
    rng = np.random.default_rng(1)
    n, natural = 4000, 0.1
    y = (rng.random(n) < natural).astype(int)
    x = rng.normal(1.5 * y, 1.0)
    ratio = np.exp(1.5 * x - 1.125)  # likelihood ratio of N(1.5, 1) to N(0, 1)
    balanced = ratio / (1 + ratio)  # the posterior of a model trained at a 50:50 prior
    truth = natural * ratio / (natural * ratio + 1 - natural)
    fitted = fit_calibration(
        y, np.c_[1 - balanced, balanced], train_counts=[900, 100], model_prior=[0.5, 0.5]
    )
    assert fitted.prior_weights == pytest.approx((1.8, 0.2))
    assert fitted.temperature == pytest.approx(1.0, abs=0.1)  # nothing left to fix
    calibrated = fitted.apply(np.c_[1 - balanced, balanced])[:, 1]
    assert np.abs(calibrated - truth).max() < 0.05
    assert fit_calibration(y, np.c_[1 - truth, truth], train_counts=[9, 1]).prior_weights is None


def test_metrics_agree_with_scikit_learn_and_each_other() -> None:
    rng = np.random.default_rng(2)
    y, probs = rng.integers(0, 3, 500), rng.dirichlet([1, 1, 1], 500)
    found = calibration_metrics(y, probs)
    assert found["brier"] == pytest.approx(brier_score_loss(y, probs))
    assert found["log_loss"] == pytest.approx(log_loss(y, probs))
    assert found["ece"] == pytest.approx(expected_calibration_error(y, probs))
    assert found["mce"] >= found["ece"]
    assert {k for k in found if k.startswith("ece/")} == {"ece/0", "ece/1", "ece/2"}


def test_report_has_cis_before_and_after_and_the_record_reads_back() -> None:
    y, probs = _overconfident(300)
    fitted = fit_calibration(y, probs)
    report = calibration_report(y, probs, fitted, ["normal", "disease"], n_bootstrap=50)
    assert report["temperature"] == fitted.temperature and report["chosen_on"] == "val"
    for state in ("before", "after"):
        lo, hi = report[state]["ece"]["ci"]
        assert lo <= report[state]["ece"]["value"] <= hi
        assert set(report[state]["ece_per_class"]) == {"normal", "disease"}
    json.dumps(report, allow_nan=False)  # strict JSON
    assert read_calibration({"calibration": fitted.to_record()}) == fitted
    assert read_calibration({}) is None  # a checkpoint from before calibration
    with pytest.raises(ValueError, match="not test"):
        Calibration(1.0, chosen_on="test")
    with pytest.raises(ValueError, match="positive number"):
        Calibration(0.0)


@pytest.mark.slow
def test_a_run_reports_calibration_and_predict_writes_calibrated_probabilities(
    tiny_npz: Path, tmp_path: Path
) -> None:
    run = mb.train(tiny_npz, out=tmp_path / "r", epochs=2, size=28, bootstrap=20, verbose=False)
    calibration = run.metrics["calibration"]
    assert calibration["method"] == "temperature" and calibration["chosen_on"] == "val"
    # oversampling taught the model a 50:50 prior; the data's is 80:20
    assert calibration["prior_weights"] == pytest.approx([0.8 / 0.5, 0.2 / 0.5], rel=0.02)
    assert {"brier", "log_loss", "ece", "mce"} <= set(calibration["after"])
    out = tmp_path / "p.csv"
    from medbalance.evaluation.predict import predict

    predict(run.checkpoint, [str(tiny_npz)], out)
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {"calibrated_0", "calibrated_1"} <= set(rows[0])
    sums = [float(r["calibrated_0"]) + float(r["calibrated_1"]) for r in rows]
    assert sums == pytest.approx([1.0] * len(rows), abs=1e-5)
    mean = {k: np.mean([float(r[k]) for r in rows]) for k in ("prob_1", "calibrated_1")}
    assert mean["calibrated_1"] < mean["prob_1"]  # towards the rarer natural prior of class 1


def test_bias_corrected_form_makes_em_return_the_tuning_prior() -> None:
    from medbalance.evaluation.prevalence import estimate_prior

    rng = np.random.default_rng(4)
    y = (rng.random(600) < 0.7).astype(int)
    logit = 2.0 * (y - 0.5) + rng.normal(0, 1.2, 600) - 1.0  # biased towards class 0
    p1 = 1 / (1 + np.exp(-logit))
    probs = np.c_[1 - p1, p1]
    fitted = fit_calibration(y, probs, train_counts=[180, 420])
    assert fitted.bias is None and fitted.for_prevalence is not None
    corrected = fitted.for_prevalence
    assert corrected.bias is not None and corrected.bias[0] == 0.0
    # at the fitted biases the mean calibrated probability is the class share
    assert corrected.apply(probs).mean(axis=0) == pytest.approx([1 - y.mean(), y.mean()], abs=1e-3)
    assert corrected.tuning_prior == pytest.approx((1 - y.mean(), y.mean()))
    start = corrected.tuning_prior
    plain = estimate_prior(fitted.apply(probs), start, n_bootstrap=0)["prior"][1]
    fixed = estimate_prior(corrected.apply(probs), start, n_bootstrap=0)["prior"][1]
    assert abs(fixed - y.mean()) < 0.01 < abs(plain - y.mean())
    assert read_calibration({"calibration": fitted.to_record()}) == fitted  # nested form too


def _three_classes(n: int = 1200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, each miscalibrated its own way (one scale cannot fix them all)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    logits = rng.normal(0, 1, (n, 3)) + 2.0 * np.eye(3)[y]
    return y, softmax(logits * np.array([3.0, 1.0, 0.5]), axis=1)


@pytest.mark.parametrize("method", ["vector", "isotonic"])
def test_vector_and_isotonic_fit_on_tuning_cases_and_hold_on_new_ones(method: str) -> None:
    y, probs = _three_classes()
    tune, new = slice(0, 800), slice(800, None)
    temperature = fit_calibration(y[tune], probs[tune])
    other = fit_calibration(y[tune], probs[tune], method=method)
    assert other.method == method and other.to_record()["method"] == method
    calibrated = other.apply(probs[new])
    assert np.allclose(calibrated.sum(axis=1), 1.0) and (calibrated >= 0).all()
    before = calibration_metrics(y[new], probs[new])
    after = calibration_metrics(y[new], calibrated)
    assert after["ece"] < before["ece"]
    # per-class miscalibration: the per-class fit beats one temperature on the worst class
    worst = max(
        range(3),
        key=lambda k: calibration_metrics(y[new], temperature.apply(probs[new]))[f"ece/{k}"],
    )
    assert (
        after[f"ece/{worst}"]
        < calibration_metrics(y[new], temperature.apply(probs[new]))[f"ece/{worst}"]
    )
    # the record reads back to the same function, nested prevalence form included
    again = read_calibration({"calibration": json.loads(json.dumps(other.to_record()))})
    assert again is not None and again.for_prevalence is not None
    np.testing.assert_allclose(again.apply(probs[new]), calibrated)


def test_binary_isotonic_and_vector_keep_the_order_of_the_images() -> None:
    y, probs = _overconfident()
    order = np.argsort(probs[:, 1], kind="stable")
    for method in ("vector", "isotonic"):
        fitted = fit_calibration(y, probs, method=method)
        assert (np.diff(fitted.apply(probs)[order, 1]) >= -1e-12).all(), method
    with pytest.raises(ValueError, match="one of temperature, vector, isotonic"):
        fit_calibration(y, probs, method="platt")


def test_the_method_is_chosen_at_training_and_kept_when_the_decision_is_rechosen(
    tiny_npz: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medbalance.cli import app

    out = tmp_path / "iso"
    said = CliRunner().invoke(
        app, ["train", str(tiny_npz), "--out", str(out), "--epochs", "1", "--size", "28",
              "--bootstrap", "0", "--calibration", "isotonic", "--device", "cpu"],
    )  # fmt: skip
    assert said.exit_code == 0, said.output
    record = json.loads((out / "metrics.json").read_text())["calibration"]
    assert record["method"] == "isotonic" and len(record["knots"]) == 1
    assert json.loads((out / "config.json").read_text())["calibration"] == "isotonic"
    page = (out / "report.html").read_text()
    assert "Isotonic regression" in page
    again = mb.evaluate(out, threshold="sensitivity>=0.9", bootstrap=0, report=False)
    assert again["calibration"]["method"] == "isotonic"  # re-fitted by the run's method
    bad = CliRunner().invoke(app, ["train", str(tiny_npz), "--calibration", "platt"])
    assert bad.exit_code == 2 and "calibration" in bad.output and "isotonic" in bad.output
