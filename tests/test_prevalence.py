"""Another site's prevalence: the prior estimated from unlabelled images (EM), and PPV/NPV
re-targeted to a given prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_score

from medbalance.evaluation.prevalence import (
    at_prior,
    estimate_prior,
    parse_prior,
    shift_probabilities,
)


def _posteriors(y: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """Exact posteriors at class prior ``prior`` for scores N(1.5 y, 1)."""
    x = rng.normal(1.5 * y, 1.0)
    ratio = np.exp(1.5 * x - 1.125)
    p1 = prior * ratio / (prior * ratio + 1 - prior)
    return np.c_[1 - p1, p1]


@pytest.mark.parametrize("truth", [0.1, 0.25, 0.5])
def test_em_finds_the_prior_of_unlabelled_images(truth: float) -> None:
    rng = np.random.default_rng(int(truth * 100))
    y = (rng.random(3000) < truth).astype(int)
    found = estimate_prior(_posteriors(y, rng, 0.3), [0.7, 0.3], n_bootstrap=100)
    assert found["prior"][1] == pytest.approx(y.mean(), abs=0.03)
    lo, hi = found["ci"][1]
    assert lo <= y.mean() <= hi
    assert found["source_prior"] == pytest.approx([0.7, 0.3])


def test_ppv_and_npv_at_another_prevalence_follow_bayes() -> None:
    # 100 positives (90 called), 100 negatives (80 called negative): sens 0.9, spec 0.8
    y = np.r_[np.ones(100, int), np.zeros(100, int)]
    calls = np.r_[np.ones(90, int), np.zeros(10, int), np.zeros(80, int), np.ones(20, int)]
    out = at_prior(y, calls, parse_prior(0.05, ["normal", "disease"], 1), ["normal", "disease"],
                   positive=1, n_bootstrap=200)  # fmt: skip
    ppv = 0.9 * 0.05 / (0.9 * 0.05 + 0.2 * 0.95)
    npv = 0.8 * 0.95 / (0.8 * 0.95 + 0.1 * 0.05)
    assert out["ppv"]["disease"]["value"] == pytest.approx(ppv)
    assert out["npv"]["value"] == pytest.approx(npv)
    lo, hi = out["ppv"]["disease"]["ci"]
    assert lo < ppv < hi
    assert out["prior"] == {"normal": 0.95, "disease": 0.05}


def test_at_the_sample_prior_ppv_is_the_precision() -> None:
    rng = np.random.default_rng(3)
    y, calls = rng.integers(0, 3, 600), rng.integers(0, 3, 600)
    prior = np.bincount(y) / len(y)
    out = at_prior(y, calls, prior, ["a", "b", "c"], n_bootstrap=0)
    for k, name in enumerate("abc"):
        expected = precision_score(y == k, calls == k)
        assert out["ppv"][name]["value"] == pytest.approx(expected)
    assert "npv" not in out


def test_shift_and_parse() -> None:
    probs = np.array([[0.5, 0.5]])
    assert shift_probabilities(probs, [0.5, 0.5], [0.9, 0.1])[0] == pytest.approx([0.9, 0.1])
    assert parse_prior("a=0.7,b=0.2,c=0.1", ["a", "b", "c"], None).tolist() == [0.7, 0.2, 0.1]
    assert parse_prior("0.2", ["pos", "neg"], 0).tolist() == [0.2, 0.8]
    with pytest.raises(ValueError, match="needs two classes"):
        parse_prior(0.1, ["a", "b", "c"], None)
    with pytest.raises(ValueError, match="summing to 1"):
        parse_prior("a=0.7,b=0.2", ["a", "b", "c"], None)
    with pytest.raises(ValueError, match="'d' is not a class"):
        parse_prior("d=1", ["a", "b"], None)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        parse_prior("1.5", ["a", "b"], 1)


@pytest.mark.slow
def test_evaluate_at_another_sites_prevalence(tiny_npz: Path, tmp_path: Path) -> None:
    import medbalance as mb

    run = mb.train(tiny_npz, out=tmp_path / "r", epochs=2, size=28, bootstrap=0, verbose=False)
    result = mb.evaluate(
        run, prevalence=0.05, estimate_prevalence=True, bootstrap=50, report=False, verbose=False
    )
    site = result["site"]
    assert site["training_prior"] == pytest.approx({"0": 0.8, "1": 0.2})
    assert site["evaluated_prior"] == pytest.approx({"0": 0.5, "1": 0.5})
    assert site["at_prior"]["prior"] == {"0": 0.95, "1": 0.05}
    # Bayes' rule on the evaluated split's sensitivity and specificity
    sens, spec = (result["metrics"][k]["value"] for k in ("sensitivity", "specificity"))
    ppv = sens * 0.05 / (sens * 0.05 + (1 - spec) * 0.95)
    assert site["at_prior"]["ppv"]["1"]["value"] == pytest.approx(ppv)
    estimated = site["estimated_prior"]["1"]
    assert 0.0 < estimated["value"] < 1.0 and estimated["ci"][0] <= estimated["value"]
    assert json.loads((run.path / "metrics.json").read_text())["site"] == site
    with pytest.raises(mb.ConfigError, match="not both"):
        mb.evaluate(run, prevalence=0.1, class_prior="0=0.9,1=0.1")
    from typer.testing import CliRunner

    from medbalance.cli import app

    said = CliRunner().invoke(
        app, ["evaluate", str(run.path), "--prevalence", "0.05", "--estimate-prevalence",
              "--bootstrap", "20", "--no-report"],
    )  # fmt: skip
    assert said.exit_code == 0, said.output
    assert "at the prior 0 0.95, 1 0.05: PPV 0 " in said.output
    assert "estimated prior: 0 " in said.output and "training 0 0.800, 1 0.200" in said.output
    bad = CliRunner().invoke(app, ["evaluate", str(run.path), "--prevalence", "1.5"])
    assert bad.exit_code == 2 and "strictly between 0 and 1" in bad.output


def test_predict_estimates_the_prior_of_unlabelled_images(tiny_npz: Path, tmp_path: Path) -> None:
    """predict --estimate-prevalence reads no label and finds what evaluate finds on the same
    images (same probabilities, calibration and bootstrap)."""
    import medbalance as mb
    from medbalance.evaluation.predict import predict

    run = mb.train(tiny_npz, out=tmp_path / "r", epochs=2, size=28, bootstrap=0, verbose=False)
    with np.load(tiny_npz) as arrays:
        images, labels = arrays["test_images"], arrays["test_labels"]
    labelled = tmp_path / "site.npz"
    np.savez(labelled, test_images=images, test_labels=labels)
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, images=images)
    summary = predict(
        run.path, [str(unlabelled)], tmp_path / "p.csv", estimate_prevalence=True, n_bootstrap=50
    )
    assert summary.site_prior is not None and summary.site_prior["n"] == len(images)
    result = mb.evaluate(
        run, labelled, estimate_prevalence=True, bootstrap=50, report=False, verbose=False
    )
    for name, entry in result["site"]["estimated_prior"].items():
        found = summary.site_prior["estimated_prior"][name]
        assert found["value"] == pytest.approx(entry["value"], abs=1e-6)
        assert found["ci"] == pytest.approx(entry["ci"], abs=1e-6)
    assert summary.site_prior["training_prior"] == pytest.approx({"0": 0.8, "1": 0.2})
    assert mb.estimate_prevalence(run, unlabelled, bootstrap=50) == summary.site_prior
    from typer.testing import CliRunner

    from medbalance.cli import app

    said = CliRunner().invoke(
        app, ["predict", str(run.path), str(unlabelled), "--out", str(tmp_path / "q.csv"),
              "--estimate-prevalence"],
    )  # fmt: skip
    assert said.exit_code == 0, said.output
    assert f"estimated class prior of the {len(images)} scored image(s): 0 " in said.output
    assert "trained at 0 0.800, 1 0.200" in said.output
