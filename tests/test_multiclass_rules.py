"""Multi-class decision rules: tuned offsets, cost matrices, ordinal grades, and the Decision."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from medbalance.evaluation.decision import choose_decision, read_decision
from medbalance.evaluation.multiclass_rules import (
    decide,
    parse_multiclass_rule,
    quadratic_kappa_from_confusion,
    tune_rule,
)


def _imbalanced(seed: int = 0, n: int = 400, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels 70/20/10 and probabilities of a model biased toward class 0."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 1.5
    logits[:, 0] += shift
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_parse_canonical_forms_round_trip() -> None:
    for text in ("offsets:balanced", "offsets:macro-f1,accuracy>=0.8", "cost:0,1;5,0"):
        assert str(parse_multiclass_rule(text)) == text
    assert str(parse_multiclass_rule(" Offsets ")) == "offsets:balanced"
    assert str(parse_multiclass_rule("COST: 0,1,2; 3,0,1; 1,1,0")) == "cost:0,1,2;3,0,1;1,1,0"
    assert parse_multiclass_rule("expected-grade").tuned
    assert parse_multiclass_rule("median-grade").ordinal
    assert not parse_multiclass_rule("median-grade").tuned


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("offsets:balancd", "did you mean 'balanced'"),
        ("offsets:balanced,accuracy>=1.5", "accuracy is a rate"),
        ("offsets:balanced,sensitivity>=0.5", "cannot read"),
        ("cost:0,1;5", "square"),
        ("cost:0,-1;1,0", "nonnegative"),
        ("cost:0,0;0,0", "not all 0"),
        ("cost:0,a;1,0", "is not a number"),
        ("expected-grad", "did you mean 'expected-grade'"),
    ],
)
def test_parse_errors_name_the_rule_and_the_fix(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_multiclass_rule(text)


def test_cost_matrix_hand_worked() -> None:
    # missing class 2 costs 10, other errors 1: for p = (0.6, 0.3, 0.1) calling 0 costs
    # 0.3 * 1 + 0.1 * 10 = 1.3, calling 1 costs 0.6 + 1.0 = 1.6, calling 2 costs 0.9
    costs = "cost:0,1,1;1,0,1;10,10,0"
    assert decide([[0.6, 0.3, 0.1]], costs).tolist() == [2]
    # with equal error costs the rule is argmax
    assert decide([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], "cost:0,1,1;1,0,1;1,1,0").tolist() == [0, 1]
    # a model trained on a uniform prior is moved back to the natural one (prior 8:1:1) first
    moved = decide([[0.4, 0.5, 0.1]], "cost:0,1,1;1,0,1;1,1,0", prior=[8, 1, 1],
                   model_prior=[1, 1, 1])  # fmt: skip
    assert moved.tolist() == [0]
    with pytest.raises(ValueError, match="2x2 but the model has 3 classes"):
        decide([[0.6, 0.3, 0.1]], "cost:0,1;1,0")


def test_median_grade_hand_worked() -> None:
    # cumulative (0.3, 0.6, 1.0): the median grade is 1; (0.5, ...): exactly half is grade 0
    assert decide([[0.3, 0.3, 0.4], [0.5, 0.1, 0.4], [0.1, 0.1, 0.8]], "median-grade").tolist() == [
        1,
        0,
        2,
    ]


def test_expected_grade_untuned_cut_points_round_the_expected_grade() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.4, 0.4, 0.2]])  # expected 0.5, 1.6, 0.8
    assert decide(p, "expected-grade", tuned=[0.5, 1.5]).tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="tune_rule"):
        decide(p, "expected-grade")
    with pytest.raises(ValueError, match="2 finite numbers"):
        decide(p, "expected-grade", tuned=[0.5])


def test_tuned_cut_points_do_not_lose_kappa_and_stay_ordered() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(5, 500, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    logits = -0.6 * (np.arange(5)[None, :] - (y + rng.normal(0, 1.0, 500))[:, None]) ** 2
    logits[:, 0] += 1.0  # biased toward grade 0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cuts = tune_rule("expected-grade", y, p)
    assert cuts is not None and len(cuts) == 4 and np.all(np.diff(cuts) > 0)
    tuned = cohen_kappa_score(y, decide(p, "expected-grade", tuned=cuts), weights="quadratic")
    start = cohen_kappa_score(
        y, decide(p, "expected-grade", tuned=[0.5, 1.5, 2.5, 3.5]), weights="quadratic"
    )
    assert tuned >= start
    assert tuned > cohen_kappa_score(y, p.argmax(axis=1), weights="quadratic")


def test_quadratic_kappa_from_confusion_equals_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    for _ in range(5):
        y, pred = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
        expected = cohen_kappa_score(y, pred, weights="quadratic", labels=[0, 1, 2, 3])
        got = quadratic_kappa_from_confusion(confusion_matrix(y, pred, labels=[0, 1, 2, 3]))
        assert got == pytest.approx(expected)


def test_tuned_offsets_beat_argmax_on_their_objective() -> None:
    y, p = _imbalanced()
    prior = np.bincount(y)
    argmax_bal = balanced_accuracy_score(y, p.argmax(axis=1))
    offsets = tune_rule("offsets:balanced", y, p, prior=prior)
    assert offsets is not None and len(offsets) == 3 and offsets[0] == 0.0
    called = decide(p, "offsets:balanced", tuned=offsets)
    assert balanced_accuracy_score(y, called) > argmax_bal + 0.05
    balanced_rule = decide(p, "balanced", prior=prior)
    assert balanced_accuracy_score(y, called) >= balanced_accuracy_score(y, balanced_rule)
    f1_offsets = tune_rule("offsets:macro-f1", y, p, prior=prior)
    f1_called = decide(p, "offsets:macro-f1", tuned=f1_offsets)
    assert f1_score(y, f1_called, average="macro") >= f1_score(y, p.argmax(axis=1), average="macro")


def test_offsets_keep_the_accuracy_floor() -> None:
    y, p = _imbalanced(seed=3)
    free = decide(p, "offsets:balanced", tuned=tune_rule("offsets:balanced", y, p))
    floor = float(np.mean(free == y)) + 0.02  # reachable: offsets reach 0.875 on these data
    rule = f"offsets:balanced,accuracy>={floor:.3f}"
    floored = decide(p, rule, tuned=tune_rule(rule, y, p, prior=np.bincount(y)))
    assert np.mean(floored == y) >= round(floor, 3) - 1e-12
    assert balanced_accuracy_score(y, floored) > balanced_accuracy_score(y, p.argmax(axis=1))
    assert balanced_accuracy_score(y, floored) <= balanced_accuracy_score(y, free) + 1e-12


def test_offsets_separate_a_separable_set_perfectly() -> None:
    y = np.array([0] * 8 + [1] * 2 + [2] * 2)
    p = np.full((12, 3), 0.1)
    p[:8, 0] = 0.8
    p[8:10] = [0.6, 0.3, 0.1]  # class 1 never the most probable: argmax misses it
    p[10:] = [0.6, 0.1, 0.3]
    offsets = tune_rule("offsets:balanced", y, p)
    assert balanced_accuracy_score(y, decide(p, "offsets:balanced", tuned=offsets)) == 1.0


@pytest.mark.parametrize(
    ("rule", "ordinal"),
    [("offsets:macro-f1", False), ("expected-grade", True), ("cost:0,1,1;4,0,1;4,1,0", False)],
)
def test_decision_records_and_reads_back_tuned_rules(rule: str, ordinal: bool) -> None:
    y, p = _imbalanced(seed=4, n=200)
    names = ["a", "b", "c"]
    decision = choose_decision(
        rule,
        y,
        p,
        class_names=names,
        positive=None,
        train_counts=[140, 40, 20],
        model_prior=[1 / 3, 1 / 3, 1 / 3],
        ordinal=ordinal,
    )
    record = decision.to_record()
    back = read_decision({"class_names": names, "threshold": record})
    assert back == decision
    assert back.decide(p).tolist() == decision.decide(p).tolist()
    assert ("ordinal" in record) is ordinal
    key = {"offsets:macro-f1": "offsets", "expected-grade": "cut_points"}.get(rule)
    assert (key in record) if key else not ({"offsets", "cut_points"} & set(record))
    assert decision.describe() != "argmax of probabilities"


def test_binary_policy_on_ordinal_data_falls_back_to_expected_grade() -> None:
    y, p = _imbalanced(seed=5, n=120)
    kwargs = {"class_names": ["0", "1", "2"], "positive": None, "train_counts": [80, 30, 10]}
    assert choose_decision("youden", y, p, **kwargs, ordinal=True).policy == "expected-grade"
    assert choose_decision("youden", y, p, **kwargs).policy == "offsets:balanced"


def test_decision_refuses_tuned_values_that_do_not_fit() -> None:
    from medbalance.evaluation.decision import Decision

    with pytest.raises(ValueError, match="needs 3 tuned values"):
        Decision(("a", "b", "c"), "offsets:balanced", train_counts=(1, 1, 1), tuned=(0.0, 1.0))
    with pytest.raises(ValueError, match="needs 3 tuned values"):
        Decision(("a", "b", "c"), "offsets:balanced", train_counts=(1, 1, 1))
    with pytest.raises(ValueError, match="needs no tuned values"):
        Decision(("a", "b", "c"), "argmax", tuned=(0.0, 1.0, 2.0))
