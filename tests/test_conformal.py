"""Class-conditional conformal sets: the quantile, the coverage it promises per class, the
warning for too few tuning cases, and a run's files (checkpoint, metrics.json, predict's CSV)
carrying them."""

from __future__ import annotations

import csv
import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from typer.testing import CliRunner, Result

import medbalance as mb
from conftest import write_tree
from medbalance.cli import app
from medbalance.core.checkpoint import load_checkpoint, read_metadata, save_weights
from medbalance.evaluation.conformal import (
    ConformalScores,
    check_level,
    conformal_metrics,
    conformal_report,
    fit_conformal,
    needed_cases,
    read_conformal,
)

runner = CliRunner()
NAMES = ["common", "middle", "rare"]
SIGNAL = np.array([2.0, 1.5, 0.5])  # the rare class is also the hardest to see


def _simulate(rng: np.random.Generator, counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (``counts`` per class, in order) and softmax probabilities of noisy logits."""
    y = np.repeat(np.arange(len(counts)), counts)
    logits = rng.normal(0, 1, (len(y), len(counts)))
    logits[np.arange(len(y)), y] += SIGNAL[y]
    return y, softmax(logits, axis=1)


# --- the quantile -----------------------------------------------------------------------------


def _brute_force_sets(
    labels: np.ndarray, probs: np.ndarray, test: np.ndarray, level: float
) -> np.ndarray:
    """The conformal p-value rule, class by class: class k is in the set when
    ``(1 + #{tuning scores of k >= s}) / (n_k + 1) > 1 - level``, in exact fractions."""
    alpha = 1 - Fraction(str(level))
    out = np.zeros(test.shape, dtype=bool)
    for k in range(test.shape[1]):
        tuning = [1 - p for p in probs[labels == k, k]]
        for i, p in enumerate(test[:, k]):
            s = 1 - p
            p_value = Fraction(1 + sum(t >= s for t in tuning), len(tuning) + 1)
            out[i, k] = p_value > alpha
    return out


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_sets_equal_the_brute_force_p_value_rule(level: float) -> None:
    rng = np.random.default_rng(int(level * 100))
    for counts in [(0, 1, 5), (8, 9, 10), (19, 20, 3), (40, 7, 60)]:
        y = np.repeat(np.arange(3), counts)
        # rounded to 1/20: many ties, between tuning scores and with the new images' scores
        probs = np.round(rng.dirichlet([1, 1, 1], len(y)) * 20) / 20
        test = np.round(rng.dirichlet([1, 1, 1], 200) * 20) / 20
        fitted = fit_conformal(y, probs, NAMES)
        assert fitted.counts == dict(zip(NAMES, counts, strict=True))
        np.testing.assert_array_equal(
            fitted.sets(test, level), _brute_force_sets(y, probs, test, level)
        )


@pytest.mark.parametrize(
    ("level", "needed"), [(0.5, 1), (0.8, 4), (0.9, 9), (0.95, 19), (0.99, 99), (0.7, 3)]
)
def test_needed_cases_is_the_least_n_with_a_finite_quantile(level: float, needed: int) -> None:
    exact = Fraction(str(level))
    finite = [n for n in range(400) if math.ceil((n + 1) * exact) <= n]
    assert finite == list(range(needed, 400))  # every n from it on, none before it
    assert needed_cases(level) == needed
    fitted = fit_conformal(
        np.repeat([0, 1], [needed, needed - 1]), np.full((2 * needed - 1, 2), 0.5), ["a", "b"]
    )
    assert np.isfinite(fitted.thresholds(level)[0]) and np.isinf(fitted.thresholds(level)[1])


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "x", True, None])
def test_a_level_outside_0_1_names_the_value_and_the_rule(bad: object) -> None:
    with pytest.raises(ValueError, match=r"conformal level .* e\.g\. 0\.9"):
        check_level(bad)


def test_the_record_round_trips_and_never_comes_from_test() -> None:
    y, probs = _simulate(np.random.default_rng(0), (30, 12, 9))
    fitted = fit_conformal(y, probs, NAMES, chosen_on="oof")
    assert read_conformal({"conformal": json.loads(json.dumps(fitted.to_record()))}) == fitted
    assert read_conformal({}) is None
    with pytest.raises(ValueError, match="not test"):
        fit_conformal(y, probs, NAMES, chosen_on="test")
    with pytest.raises(ValueError, match="'rare' are not finite and ascending"):
        ConformalScores(("common", "rare"), ((0.1,), (0.5, 0.2)))


# --- coverage ---------------------------------------------------------------------------------


def test_each_class_is_covered_at_the_level_the_rare_one_included() -> None:
    """Over 600 draws the mean coverage of each class is ``ceil((n+1) L) / (n+1)`` (the exact
    expectation for untied scores), 0.900 for the rare class's 19 tuning cases; a marginal
    quantile leaves the rare class far below the level."""
    rng = np.random.default_rng(7)
    tuning, level = (300, 100, 19), 0.9
    covered, marginal = [], []
    for _ in range(600):
        y, probs = _simulate(rng, tuning)
        y_new, new = _simulate(rng, (200, 200, 200))
        sets = fit_conformal(y, probs, NAMES).sets(new, level)
        covered.append([sets[y_new == k, k].mean() for k in range(3)])
        scores = np.sort(1 - probs[np.arange(len(y)), y])
        q = scores[math.ceil((len(y) + 1) * level) - 1]
        marginal.append([((1 - new[y_new == k, k]) <= q).mean() for k in range(3)])
    expected = [math.ceil((n + 1) * level) / (n + 1) for n in tuning]
    np.testing.assert_allclose(np.mean(covered, axis=0), expected, atol=0.012)
    assert np.mean(marginal, axis=0)[2] < 0.7  # why the sets are class-conditional


def test_metrics_count_coverage_size_and_referrals() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    sets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    found = conformal_metrics(labels, sets)
    assert found["coverage/0"] == 0.5 and found["coverage/1"] == 1.0
    assert found["coverage/2"] == 0.0
    assert found["size/0"] == 1.0 and found["size/1"] == 1.5 and found["size/2"] == 0.0
    assert found["refer_rate"] == pytest.approx(2 / 5)  # the pair and the empty set
    assert found["coverage"] == pytest.approx(3 / 5) and found["mean_set_size"] == 1.0


def test_too_few_tuning_cases_are_named_with_the_count_needed() -> None:
    y, probs = _simulate(np.random.default_rng(3), (30, 20, 8))
    fitted = fit_conformal(y, probs, NAMES)
    assert fitted.too_few(0.8) == []
    (warning,) = fitted.too_few(0.9)
    assert "'rare' has 8 val case(s)" in warning and "needs at least 9" in warning
    assert fitted.sets(probs, 0.9)[:, 2].all()  # in every set
    y_new, new = _simulate(np.random.default_rng(4), (50, 50, 50))
    report = conformal_report(y_new, new, fitted, 0.9, split="test", n_bootstrap=50)
    assert report["warnings"] == [warning]
    assert report["per_class"]["rare"]["tuning_cases"] == 8
    assert report["per_class"]["rare"]["coverage"]["value"] == 1.0
    lo, hi = report["per_class"]["common"]["coverage"]["ci"]
    assert lo <= report["per_class"]["common"]["coverage"]["value"] <= hi and lo < hi


# --- a run's files ----------------------------------------------------------------------------


COUNTS = {
    "train": {"normal": 40, "pneumonia": 10},
    "val": {"normal": 12, "pneumonia": 12},
    "test": {"normal": 10, "pneumonia": 10},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data tree, run folder): one epoch of smallcnn at 32 px."""
    root = tmp_path_factory.mktemp("conformal")
    data = write_tree(root / "data", COUNTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBALANCE_CACHE", str(root / "cache"))
        mb.train(
            data, out=root / "run", model="smallcnn", size=32, epochs=1, batch_size=16,
            bootstrap=20, device="cpu", verbose=False,
        )  # fmt: skip
    return data, root / "run"


@pytest.fixture
def run(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[1], tmp_path / "run"))


def _invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_stores_each_classs_val_scores(run: Path) -> None:
    stored = read_conformal(read_metadata(run / "best.safetensors"))
    assert stored is not None and stored.chosen_on == "val"
    assert stored.counts == {"normal": 12, "pneumonia": 12}


def test_predict_adds_the_set_and_the_refer_flag(
    run: Path, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    images = trained[0] / "test"
    plain, sets = tmp_path / "plain.csv", tmp_path / "sets.csv"
    assert _invoke("predict", run, images, "--out", plain, "--device", "cpu").exit_code == 0
    result = _invoke("predict", run, images, "--out", sets, "--conformal", 0.9, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "image(s) to refer" in result.output
    header = ["id", "prob_normal", "prob_pneumonia", "calibrated_normal", "calibrated_pneumonia",
              "predicted_label", "threshold", "error", "set", "refer"]  # fmt: skip
    assert list(_rows(plain)[0]) == header and list(_rows(sets)[0]) == header
    assert all(r["set"] == "" and r["refer"] == "" for r in _rows(plain))
    stored = read_conformal(read_metadata(run / "best.safetensors"))
    assert stored is not None
    q = stored.thresholds(0.9)
    for row in _rows(sets):
        members = [n for n in row["set"].split("|") if n]
        assert set(members) <= {"normal", "pneumonia"}
        assert row["refer"] == ("0" if len(members) == 1 else "1")
        for k, name in enumerate(["normal", "pneumonia"]):
            score = 1 - float(row[f"prob_{name}"])
            if abs(score - q[k]) > 1e-5:  # the CSV rounds to 6 decimals
                assert (name in members) == (score <= q[k])
    api = mb.predict(run, images, device="cpu", conformal=0.9)
    assert [list(p.set or ()) for p in api] == [
        [n for n in r["set"].split("|") if n] for r in _rows(sets)
    ]
    assert [p.refer for p in api] == [r["refer"] == "1" for r in _rows(sets)]


def test_evaluate_reports_coverage_per_class_and_warns_when_val_is_too_small(run: Path) -> None:
    result = _invoke("evaluate", run, "--conformal", 0.9, "--bootstrap", 30, "--no-report",
                     "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "conformal sets at 0.9" in result.output and "refer rate" in result.output
    block = json.loads((run / "metrics.json").read_text())["conformal"]
    assert block["level"] == 0.9 and block["chosen_on"] == "val" and block["needed_cases"] == 9
    assert set(block["per_class"]) == {"normal", "pneumonia"}
    for entry in block["per_class"].values():
        assert entry["n"] == 10 and entry["tuning_cases"] == 12
        assert 0 <= entry["coverage"]["value"] <= 1 and len(entry["coverage"]["ci"]) == 2
        assert entry["mean_set_size"]["value"] >= 0
    assert 0 <= block["refer_rate"]["value"] <= 1 and block["warnings"] == []
    # predictions.csv carries each case's set and refer flag, and they add up to the metrics
    with (run / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and {r["refer"] for r in rows} <= {"0", "1"}
    covered = [r["true_label"] in r["set"].split("|") for r in rows if r["true_label"] == "normal"]
    assert np.mean(covered) == pytest.approx(block["per_class"]["normal"]["coverage"]["value"])
    refer = np.mean([r["refer"] == "1" for r in rows])
    assert refer == pytest.approx(block["refer_rate"]["value"])
    # 12 val cases per class are too few for 0.95 (19 needed): said in warnings
    strict = mb.evaluate(run, conformal=0.95, bootstrap=0, report=False, device="cpu")
    assert any("needs at least 19" in w for w in strict["warnings"])
    assert strict["conformal"]["per_class"]["normal"]["coverage"]["value"] == 1.0


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "x"])
def test_a_bad_level_exits_2_before_anything_is_written(
    run: Path, trained: tuple[Path, Path], tmp_path: Path, bad: str
) -> None:
    out = tmp_path / "p.csv"
    before = (run / "metrics.json").read_bytes()
    for args in (
        ("predict", run, trained[0] / "test", "--out", out, "--conformal", bad),
        ("evaluate", run, "--conformal", bad, "--no-report"),
    ):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        said = "conformal level" if bad != "x" else "Invalid value for '--conformal'"
        assert said in result.output
    assert not out.exists() and (run / "metrics.json").read_bytes() == before


def test_an_older_checkpoint_names_the_fix_and_evaluate_uses_its_val(
    run: Path, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint = run / "best.safetensors"
    weights, meta = load_checkpoint(checkpoint)
    del meta["conformal"]
    save_weights(checkpoint, weights, meta)
    out = tmp_path / "p.csv"
    result = _invoke("predict", run, trained[0] / "test", "--out", out, "--conformal", 0.9)
    assert result.exit_code == 2 and not out.exists()
    assert "without conformal scores" in result.stderr and "--threshold" in result.stderr
    # on its own data: from its own val split, for this evaluation only
    found = mb.evaluate(run, conformal=0.9, bootstrap=0, report=False, device="cpu")
    assert found["conformal"]["per_class"]["normal"]["tuning_cases"] == 12
    assert "conformal" not in read_metadata(checkpoint)
    # on other data it is refused, naming the fix; re-choosing stores the scores
    with pytest.raises(ValueError, match="--threshold POLICY"):
        mb.evaluate(run, trained[0], conformal=0.9, bootstrap=0, report=False, device="cpu")
    mb.evaluate(run, threshold="youden", bootstrap=0, report=False, device="cpu")
    assert read_conformal(read_metadata(checkpoint)) is not None


def test_cv_stores_out_of_fold_scores_and_an_older_folder_uses_its_oof_rows(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cv"
    mb.cv(
        trained[0], folds=2, out=out, model="smallcnn", size=32, epochs=1, batch_size=16,
        bootstrap=0, device="cpu", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "ensemble.json").read_text())
    stored = read_conformal(record)
    assert stored is not None and stored.chosen_on == "oof"
    assert stored.counts == {"normal": 52, "pneumonia": 22}  # every train+val case, once
    found = mb.evaluate(out, conformal=0.9, bootstrap=0, report=False, device="cpu")
    assert found["conformal"]["chosen_on"] == "oof" and found["conformal"]["warnings"] == []
    assert all(p.set is not None for p in mb.predict(out, trained[0] / "test", conformal=0.9))
    del record["conformal"]  # a folder made before the scores were stored
    (out / "ensemble.json").write_text(json.dumps(record))
    again = mb.evaluate(out, conformal=0.9, bootstrap=0, report=False, device="cpu")
    assert again["conformal"] == found["conformal"]  # the same scores, from oof_predictions.csv
    with pytest.raises(ValueError, match="without conformal scores"):
        mb.predict(out, trained[0] / "test", conformal=0.9)
