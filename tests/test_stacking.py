"""Tests for medbalance.evaluation.stacking: the logistic-regression stacker on synthetic arrays
(scikit-learn parity, recovered miscalibration, the stored form, cross-validated outputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from medbalance.evaluation.stacking import (
    Stacker,
    cross_validated_outputs,
    fit_stacker,
    stack_features,
)


def _binary(n: int, seed: int, slope: float = 2.0, shift: float = -1.0) -> tuple:
    """Probabilities ``p`` calibrated as P(y=1 | p) = sigmoid(slope * logit(p) + shift)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    p1 = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < 1 / (1 + np.exp(-(slope * z + shift)))).astype(int)
    return y, np.c_[1 - p1, p1]


def _three_class(n: int, seed: int) -> tuple:
    """True posteriors under a skewed prior (0.7/0.2/0.1), handed over divided by that prior
    (calibrated to a uniform one, as after full oversampling)."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.7, 0.2, 0.1])
    y = rng.choice(3, size=n, p=prior)
    likelihood = rng.normal(0, 1, (n, 3)) + 1.5 * np.eye(3)[y]
    posterior = np.exp(1.5 * likelihood) * prior  # Bayes: log-likelihood 1.5 * l_k + const
    posterior /= posterior.sum(axis=1, keepdims=True)
    uniform = posterior / prior
    return y, uniform / uniform.sum(axis=1, keepdims=True), prior


def test_binary_stacker_is_sklearns_regression_on_the_positive_logit() -> None:
    y, p = _binary(400, seed=0)
    stacker = fit_stacker(y, p, positive=1)
    feature = np.log(p[:, [1]]) - np.log(p[:, [0]])
    expected = LogisticRegression(max_iter=2000).fit(feature, y).predict_proba(feature)
    np.testing.assert_allclose(stacker.apply(p), expected, atol=1e-6)
    assert stacker.weights.shape == (2, 2) and stacker.bias[0] == 0.0
    # one feature: a monotone map of p, so the ranking (AUROC) is unchanged
    assert (
        np.argsort(stacker.apply(p)[:, 1], kind="stable") == np.argsort(p[:, 1], kind="stable")
    ).all()


def test_binary_stacker_recovers_a_known_miscalibration() -> None:
    y, p = _binary(20000, seed=1, slope=2.0, shift=-1.0)
    stacker = fit_stacker(y, p)
    # class 1's logit = w * (log p1 - log p0) + b, with w = 2 and b = -1 by construction
    np.testing.assert_allclose(stacker.weights[1], [-2.0, 2.0], atol=0.1)
    assert stacker.bias[1] == pytest.approx(-1.0, abs=0.1)
    np.testing.assert_array_equal(stacker.weights[0], [0.0, 0.0])


def test_positive_class_zero_uses_its_own_logit() -> None:
    y, p = _binary(400, seed=2)
    flipped_y, flipped_p = 1 - y, p[:, ::-1]  # class 0 is now the positive one
    stacker = fit_stacker(flipped_y, flipped_p, positive=0)
    np.testing.assert_allclose(stack_features(flipped_p, 0), stack_features(p, 1))
    feature = stack_features(flipped_p, 0)
    expected = LogisticRegression(max_iter=2000).fit(feature, flipped_y).predict_proba(feature)
    np.testing.assert_allclose(stacker.apply(flipped_p), expected, atol=1e-6)


def test_multiclass_stacker_is_multinomial_and_undoes_a_prior_shift() -> None:
    y, p, prior = _three_class(6000, seed=3)
    stacker = fit_stacker(y, p)
    logp = np.log(p)
    expected = LogisticRegression(max_iter=2000).fit(logp, y).predict_proba(logp)
    np.testing.assert_allclose(stacker.apply(p), expected, atol=1e-6)
    # the inputs lack the prior; the stacker puts it back: its outputs are the Bayes posteriors
    true = p * prior / (p * prior).sum(axis=1, keepdims=True)
    assert np.abs(p - true).mean() > 0.1
    assert np.abs(stacker.apply(p) - true).mean() < 0.02
    raw_accuracy = (p.argmax(1) == y).mean()
    stacked_accuracy = (stacker.apply(p).argmax(1) == y).mean()
    assert stacked_accuracy > raw_accuracy + 0.02


def test_the_record_is_plain_numbers_and_reads_back() -> None:
    y, p, _ = _three_class(300, seed=4)
    stacker = fit_stacker(y, p)
    record = json.loads(json.dumps(stacker.to_record(), allow_nan=False))
    again = Stacker.from_record(record)
    np.testing.assert_array_equal(again.apply(p), stacker.apply(p))
    assert record["n_fit"] == 300 and record["fit_on"] == "oof"
    with pytest.raises(ValueError, match=r"weights \(C, C\) and bias \(C,\).*\(3, 2\)"):
        Stacker.from_record({"weights": np.zeros((3, 2)).tolist(), "bias": [0, 0, 0]})
    with pytest.raises(ValueError, match="not a readable stacker record"):
        Stacker.from_record({"bias": [0, 0]})
    with pytest.raises(ValueError, match=r"3-class stacker needs \[N, 3\].*\(2, 2\)"):
        stacker.apply(np.full((2, 2), 0.5))


def test_cross_validated_outputs_come_from_stackers_fit_without_the_case() -> None:
    y, p = _binary(120, seed=5)
    held = np.arange(120) % 3
    splits = [(np.flatnonzero(held != k), np.flatnonzero(held == k)) for k in range(3)]
    honest = cross_validated_outputs(y, p, splits)
    for fit_idx, test_idx in splits:
        alone = fit_stacker(y[fit_idx], p[fit_idx]).apply(p[test_idx])
        np.testing.assert_allclose(honest[test_idx], alone, atol=1e-6)
    in_sample = fit_stacker(y, p).apply(p)
    assert np.abs(honest - in_sample).max() > 1e-4  # not the stacker that saw every case


def test_a_class_without_cases_is_refused() -> None:
    p = np.full((6, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"class index\(es\) \[2\] have none; use --combine mean"):
        fit_stacker(np.array([0, 1, 0, 1, 0, 1]), p)
