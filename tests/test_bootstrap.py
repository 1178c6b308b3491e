"""Tests for medbalance.evaluation.bootstrap: seeded intervals, stratification, NaN rules, the
paired bootstrap, and the vectorised path against scikit-learn on every resample."""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np
import pytest

from conftest import multiclass_data, scored
from medbalance.evaluation.bootstrap import bootstrap_ci, paired_bootstrap, with_ci
from medbalance.evaluation.metrics import (
    BINARY_KEYS,
    MULTICLASS_KEYS,
    ORDINAL_KEYS,
    binary_metrics,
    multiclass_metrics,
    per_class_table,
)

# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_is_seeded() -> None:
    y, score = scored(80, 20, seed=6)
    fn = partial(binary_metrics, threshold=0.5)
    first = bootstrap_ci(fn, y, score, n_resamples=200, seed=3)
    assert first == bootstrap_ci(fn, y, score, n_resamples=200, seed=3)
    assert first != bootstrap_ci(fn, y, score, n_resamples=200, seed=4)


def test_bootstrap_ci_contains_the_point_estimate() -> None:
    y, score = scored(300, 100, seed=7)
    point = binary_metrics(y, score, 0.5)
    cis = bootstrap_ci(partial(binary_metrics, threshold=0.5), y, score, n_resamples=500)
    assert set(cis) == set(BINARY_KEYS)
    for key, (lo, hi) in cis.items():
        assert lo <= point[key] <= hi, key
        assert lo < hi, key


def test_stratified_resamples_keep_the_class_counts() -> None:
    y, score = scored(90, 10, seed=8)

    def counts(labels: np.ndarray, _score: np.ndarray) -> dict[str, float]:
        return {"positives": float(labels.sum()), "items": float(len(labels))}

    assert bootstrap_ci(counts, y, score, n_resamples=100) == {
        "positives": (10.0, 10.0),
        "items": (100.0, 100.0),
    }
    lo, hi = bootstrap_ci(counts, y, score, n_resamples=100, stratified=False)["positives"]
    assert lo < 10 < hi


def test_bootstrap_width_shrinks_with_n() -> None:
    fn = partial(binary_metrics, threshold=0.5)
    widths = []
    for n in (100, 1600):
        y, score = scored(n, n // 4, seed=9)
        lo, hi = bootstrap_ci(fn, y, score, n_resamples=300)["auroc"]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # about 1/sqrt(16) = 1/4 in theory


@pytest.mark.parametrize(
    ("n_neg", "n_pos", "stratified"), [(60, 15, True), (60, 15, False), (10, 2, False)]
)
def test_vectorised_path_equals_per_resample_sklearn(
    n_neg: int, n_pos: int, stratified: bool
) -> None:
    # one resample per seed, so the "interval" is that resample's value; (10, 2) unstratified
    # draws resamples without positives, where the NaN rules must agree too
    y, score = scored(n_neg, n_pos, seed=10)
    fast_fn = partial(binary_metrics, threshold=0.4, n_bins=10)

    def slow_fn(labels: np.ndarray, s: np.ndarray) -> dict[str, float]:
        return binary_metrics(labels, s, 0.4, n_bins=10)

    for seed in range(25):
        fast = bootstrap_ci(fast_fn, y, score, n_resamples=1, seed=seed, stratified=stratified)
        slow = bootstrap_ci(slow_fn, y, score, n_resamples=1, seed=seed, stratified=stratified)
        assert fast.keys() == slow.keys()
        for key in fast:
            np.testing.assert_allclose(fast[key], slow[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize(("ordinal", "n"), [(False, 60), (True, 60), (True, 12)])
def test_vectorised_multiclass_path_equals_per_resample_sklearn(ordinal: bool, n: int) -> None:
    # 12 items, unstratified: some resamples lack a class (the AUROCs' NaN rules must agree)
    labels, probs = multiclass_data(n, 3, seed=11)
    stratified = n > 12
    preds = probs.argmax(axis=1)
    fast_fn = partial(multiclass_metrics, ordinal=ordinal)

    def slow_fn(*arrays: np.ndarray) -> dict[str, float]:
        return multiclass_metrics(*arrays, ordinal=ordinal)

    for seed in range(15):
        kwargs = dict(n_resamples=1, seed=seed, stratified=stratified)
        fast = bootstrap_ci(fast_fn, labels, probs, preds, **kwargs)
        slow = bootstrap_ci(slow_fn, labels, probs, preds, **kwargs)
        assert fast.keys() == slow.keys() == set(MULTICLASS_KEYS + ORDINAL_KEYS * ordinal)
        for key in fast:
            np.testing.assert_allclose(fast[key], slow[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize(("n_classes", "n"), [(2, 40), (3, 60), (3, 9)])
def test_vectorised_per_class_path_equals_per_resample_sklearn(n_classes: int, n: int) -> None:
    # 9 items, unstratified: resamples without a class or without a call (the NaN rules agree)
    labels, probs = multiclass_data(n, n_classes, seed=13)
    preds = np.where(np.arange(n) % 4 == 0, (probs.argmax(axis=1) + 1) % n_classes, 0)
    from medbalance.evaluation import bootstrap

    assert per_class_table in bootstrap._BATCHED  # so fast_fn below takes the vectorised path
    fast_fn = partial(per_class_table, n_classes=n_classes)

    def slow_fn(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return per_class_table(y, p, n_classes)

    for seed in range(15):
        kwargs = dict(n_resamples=1, seed=seed, stratified=n > 9)
        fast = bootstrap_ci(fast_fn, labels, preds, **kwargs)
        slow = bootstrap_ci(slow_fn, labels, preds, **kwargs)
        assert fast.keys() == slow.keys() and len(fast) == 6 * n_classes
        for key in fast:
            np.testing.assert_allclose(fast[key], slow[key], rtol=0, atol=1e-12, err_msg=key)
    with pytest.raises(ValueError, match=r"preds must lie in 0\.\.1"):
        bootstrap_ci(partial(per_class_table, n_classes=2), [0, 1, 0], [0, 5, 0], n_resamples=5)


def test_bootstrap_is_fast_on_a_test_split_sized_set() -> None:
    y, score = scored(234, 390, seed=12)  # 624 items, the size of the pneumonia test split
    start = time.perf_counter()
    bootstrap_ci(partial(binary_metrics, threshold=0.5), y, score, n_resamples=1000)
    assert time.perf_counter() - start < 5.0  # about 0.2 s; per-resample sklearn takes ~15 s


def test_bootstrap_nan_handling() -> None:
    # one positive in 30: about e^-1 of unstratified resamples lack it -> AUROC NaN there,
    # ignored by nanpercentile; a metric NaN in more than half the resamples gets (nan, nan)
    y = np.r_[np.zeros(29, int), 1]
    score = np.linspace(0.01, 0.99, 30)
    cis = bootstrap_ci(
        partial(binary_metrics, threshold=0.5), y, score, n_resamples=300, stratified=False
    )
    assert not math.isnan(cis["auroc"][0])

    def mostly_nan(labels: np.ndarray, s: np.ndarray) -> dict[str, float]:
        return {"x": float(s[0]) if labels[0] == 1 else math.nan}

    assert all(math.isnan(v) for v in bootstrap_ci(mostly_nan, y, score, n_resamples=50)["x"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_resamples": -1}, "n_resamples=-1"), ({"alpha": 1.0}, "alpha=1.0")],
)
def test_bootstrap_rejects_bad_options(kwargs: dict[str, float], match: str) -> None:
    y, score = scored(10, 10, seed=13)
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(partial(binary_metrics, threshold=0.5), y, score, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first axis must be 20"):
        bootstrap_ci(partial(binary_metrics, threshold=0.5), y, score[:5])


def test_with_ci_builds_the_report_schema() -> None:
    out = with_ci({"auroc": 0.9, "ece": 0.05}, {"auroc": (0.85, 0.94), "ece": (0.03, 0.07)})
    assert out == {
        "auroc": {"value": 0.9, "ci": [0.85, 0.94]},
        "ece": {"value": 0.05, "ci": [0.03, 0.07]},
    }
    with pytest.raises(ValueError, match=r"no interval for \['ece'\]"):
        with_ci({"auroc": 0.9, "ece": 0.05}, {"auroc": (0.85, 0.94)})


# --- paired bootstrap ------------------------------------------------------------------------


def test_paired_bootstrap_of_identical_models_is_zero() -> None:
    y, score = scored(100, 30, seed=14)
    out = paired_bootstrap(
        partial(binary_metrics, threshold=0.5),
        y,
        score,
        score.copy(),
        metric="auroc",
        n_resamples=200,
    )
    assert out["difference"] == 0.0 and out["ci"] == (0.0, 0.0) and out["p_value"] == 1.0


def test_paired_bootstrap_sees_a_clearly_better_model() -> None:
    y, weak = scored(200, 60, seed=15, shift=0.5)
    rng = np.random.default_rng(15)
    strong = np.clip(weak + 0.3 * (2 * y - 1) + rng.normal(0, 0.02, len(y)), 0, 1)
    out = paired_bootstrap(
        partial(binary_metrics, threshold=0.5), y, weak, strong, metric="auroc", n_resamples=300
    )
    assert out["difference"] == pytest.approx(out["b"] - out["a"]) and out["difference"] > 0
    assert out["ci"][0] > 0
    assert out["p_value"] == pytest.approx(2 / 301)  # no resample reverses the sign


def test_paired_bootstrap_with_separate_thresholds_and_bad_metric() -> None:
    y, score = scored(100, 30, seed=16)
    out = paired_bootstrap(
        partial(binary_metrics, threshold=0.5), y, score, score, metric="sensitivity",
        metric_fn_b=partial(binary_metrics, threshold=0.3), n_resamples=100,
    )  # fmt: skip
    assert out["difference"] > 0  # a lower threshold for b: more sensitive on the same scores
    with pytest.raises(ValueError, match="did you mean 'auroc'"):
        paired_bootstrap(partial(binary_metrics, threshold=0.5), y, score, score, metric="aurc")


def test_paired_bootstrap_of_several_arrays_runs_vectorised_and_matches_the_slow_path() -> None:
    labels, probs = multiclass_data(80, 4, seed=17)
    argmax, shifted = probs.argmax(axis=1), np.clip(labels + 1, 0, 3)
    fast_fn = partial(multiclass_metrics, ordinal=True)

    def slow_fn(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> dict[str, float]:
        return multiclass_metrics(y, p, c, ordinal=True)  # not recognised: one call per resample

    runs = [
        paired_bootstrap(fn, labels, (probs, argmax), (probs, shifted), metric="quadratic_kappa",
                         n_resamples=30, seed=3)
        for fn in (fast_fn, slow_fn)
    ]  # fmt: skip
    assert runs[0]["difference"] == pytest.approx(runs[1]["difference"])
    assert runs[0]["ci"] == pytest.approx(runs[1]["ci"])
    assert runs[0]["a"] == pytest.approx(fast_fn(labels, probs, argmax)["quadratic_kappa"])


# --- the re-export in medbalance.evaluation.metrics (goes when compare's imports move)


def test_zero_resamples_name_every_metric_without_an_interval() -> None:
    import functools
    import math

    from medbalance.evaluation.bootstrap import bootstrap_ci
    from medbalance.evaluation.metrics import binary_metrics

    y = np.array([0, 0, 1, 1, 1])
    cis = bootstrap_ci(functools.partial(binary_metrics, threshold=0.5), y, y * 0.8, n_resamples=0)
    assert "auroc" in cis and all(math.isnan(lo) and math.isnan(hi) for lo, hi in cis.values())
