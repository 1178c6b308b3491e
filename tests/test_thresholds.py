"""Tests for medbalance.evaluation.thresholds: policies against brute force, the test-split guard,
rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medbalance.evaluation.metrics import binary_metrics
from medbalance.evaluation.thresholds import (
    MulticlassRule,
    OperatingPoint,
    Policy,
    PolicyKind,
    RuleKind,
    adjust_probabilities,
    apply_multiclass_rule,
    choose_threshold,
    parse_multiclass_rule,
    parse_policy,
)


def overlapping(seed: int, n_neg: int = 120, n_pos: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced, overlapping scores with ties (rounded to 2 decimals)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1).round(2)
    return y, score


def brute_force(y: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate threshold (distinct scores and inf) with its counts, by direct counting."""
    t = np.r_[np.inf, np.unique(score)[::-1]]
    pred = score[None, :] >= t[:, None]
    tp = (pred & (y == 1)).sum(axis=1)
    fp = (pred & (y == 0)).sum(axis=1)
    n_pos, n_neg = (y == 1).sum(), (y == 0).sum()
    return {
        "t": t,
        "tp": tp,
        "fp": fp,
        "sens": tp / n_pos,
        "spec": 1 - fp / n_neg,
        "f1": 2 * tp / (tp + fp + n_pos),
    }


SEEDS = [0, 1, 2, 3]


# --- policies --------------------------------------------------------------------------------


def test_youden_picks_the_separating_threshold() -> None:
    # negatives in [0.05, 0.40], positives in [0.62, 0.95]: only cuts in the gap give
    # sensitivity 1 and specificity 1; the threshold goes midway, (0.40 + 0.62) / 2
    y = np.r_[np.zeros(8, int), np.ones(4, int)]
    score = np.r_[np.linspace(0.05, 0.40, 8), [0.62, 0.7, 0.8, 0.95]]
    op = choose_threshold("youden", y, score)
    assert op.value == pytest.approx(0.51) and op.sensitivity == 1.0 and op.specificity == 1.0
    assert np.array_equal(score >= op.value, y == 1)
    assert op.policy == "youden" and op.chosen_on == "val"


@pytest.mark.parametrize("seed", SEEDS)
def test_youden_equals_brute_force(seed: int) -> None:
    y, score = overlapping(seed)
    bf = brute_force(y, score)
    op = choose_threshold("youden", y, score)
    j = bf["sens"] + bf["spec"] - 1
    assert op.sensitivity + op.specificity - 1 == pytest.approx(j.max(), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_sensitivity_constraint_holds_with_maximal_specificity(seed: int) -> None:
    y, score = overlapping(seed)
    bf = brute_force(y, score)
    op = choose_threshold("sensitivity>=0.95", y, score)
    applied = binary_metrics(y, score, op.value)  # the same decision rule, score >= value
    assert applied["sensitivity"] >= 0.95 and applied["sensitivity"] == op.sensitivity
    assert op.specificity == pytest.approx(bf["spec"][bf["sens"] >= 0.95].max())


@pytest.mark.parametrize("seed", SEEDS)
def test_specificity_constraint_holds_with_maximal_sensitivity(seed: int) -> None:
    y, score = overlapping(seed)
    bf = brute_force(y, score)
    op = choose_threshold("specificity>=0.9", y, score)
    assert binary_metrics(y, score, op.value)["specificity"] >= 0.9
    assert op.sensitivity == pytest.approx(bf["sens"][bf["spec"] >= 0.9].max())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("prevalence", [None, 0.05])
def test_cost_equals_brute_force_minimum(seed: int, prevalence: float | None) -> None:
    y, score = overlapping(seed)
    bf = brute_force(y, score)
    pi = y.mean() if prevalence is None else prevalence
    cost = 5 * pi * (1 - bf["sens"]) + 1 * (1 - pi) * (1 - bf["spec"])
    text = "cost:FN=5,FP=1" + ("" if prevalence is None else f",prevalence={prevalence}")
    op = choose_threshold(text, y, score)
    chosen = 5 * pi * (1 - op.sensitivity) + (1 - pi) * (1 - op.specificity)
    assert chosen == pytest.approx(cost.min(), abs=1e-12)
    if prevalence is None:  # with the data's prevalence it is the mean cost per case
        assert chosen == pytest.approx(
            (5 * (y == 1) * (score < op.value)).mean() + ((y == 0) * (score >= op.value)).mean()
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_equals_brute_force_maximum(seed: int) -> None:
    y, score = overlapping(seed)
    op = choose_threshold("f1", y, score)
    assert binary_metrics(y, score, op.value)["f1"] == pytest.approx(
        brute_force(y, score)["f1"].max()
    )


def test_fixed_value_passes_through() -> None:
    y, score = overlapping(0)
    op = choose_threshold("0.3", y, score)
    m = binary_metrics(y, score, 0.3)
    assert op.value == 0.3 and op.policy == "0.3"
    assert (op.sensitivity, op.specificity) == (m["sensitivity"], m["specificity"])


def test_ties_go_to_the_better_secondary_rate_then_the_higher_threshold() -> None:
    # negatives .1 .5, positives .3 .6 .7
    #   t = .7: sens 1/3 spec 1 | t = .6: sens 2/3 spec 1 | t = .5: 2/3, 1/2 | t = .3: 1, 1/2
    y = np.array([0, 0, 1, 1, 1])
    score = np.array([0.1, 0.5, 0.3, 0.6, 0.7])
    # same spec, more sens: the cut at .6, placed midway to the next lower score .5
    assert choose_threshold("sensitivity>=0.3", y, score).value == pytest.approx(0.55)
    # Youden J: .7 -> 1/3, .6 -> 2/3, .3 -> 1/2; and with negatives .1 .5, positives .3 .7:
    # J(.7) = 1/2 = J(.3): the higher cut wins (.7, midway to .5)
    assert choose_threshold("youden", y[[0, 1, 2, 4]], score[[0, 1, 2, 4]]).value == (
        pytest.approx(0.6)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("policy", ["youden", "f1", "sensitivity>=0.9", "cost:FN=5,FP=1"])
def test_the_threshold_reproduces_its_tuning_rates(seed: int, policy: str) -> None:
    y, score = overlapping(seed)
    op = choose_threshold(policy, y, score)
    called = score >= op.value
    assert called[y == 1].mean() == pytest.approx(op.sensitivity)
    assert 1 - called[y == 0].mean() == pytest.approx(op.specificity)
    assert not np.isin(op.value, score)  # between two tuning scores, on none of them


def test_extreme_constraints_are_met_at_the_ends() -> None:
    y, score = overlapping(1)
    everyone = choose_threshold("sensitivity>=1.0", y, score)  # met only by calling all positive
    assert everyone.sensitivity == 1.0 and everyone.value <= score[y == 1].min()
    nobody_wrong = choose_threshold("specificity>=1", y, score)
    assert nobody_wrong.specificity == 1.0 and nobody_wrong.value > score[y == 0].max()


def test_policy_objects_round_trip_through_text() -> None:
    for text in ["youden", "f1", "sensitivity>=0.95", "specificity>=0.9", "cost:FN=5,FP=1",
                 "cost:FN=5,FP=1,prevalence=0.1", "0.3"]:  # fmt: skip
        policy = parse_policy(text)
        assert parse_policy(str(policy)) == policy
    assert parse_policy(" Sensitivity >= 0.95 ") == Policy(PolicyKind.SENSITIVITY, bound=0.95)
    y, score = overlapping(2)
    assert choose_threshold(Policy(PolicyKind.F1), y, score) == choose_threshold("f1", y, score)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("yuoden", "did you mean 'youden'"),
        ("f2", "did you mean 'f1'"),
        ("sensitivty>=0.9", "did you mean 'sensitivity>=0.9'"),
        ("sensitivity>0.9", "did you mean 'sensitivity>=0.9'"),
        ("banana", "valid forms: youden, f1, sensitivity>=0.95"),
        ("sensitivity>=1.01", "sensitivity>=1.01 cannot be met"),
        ("specificity>=-0.1", "specificity>=-0.1 is invalid"),
        ("specificity>=high", "'high' is not a number"),
        ("cost:FN=5", "needs both FN and FP"),
        ("cost:FN=5,FQ=1", "did you mean 'fp'"),
        ("cost:FN=5,FP=1,prevalence=1", "prevalence=1.0 is invalid"),
        ("cost:FN=0,FP=0", "not both 0"),
        ("1.5", "threshold lies in \\[0, 1\\]"),
    ],
)
def test_bad_policies_are_explained(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_policy(text)


@pytest.mark.parametrize("split", ["test", "TEST", "test-2023"])
def test_the_test_split_never_chooses_a_threshold(split: str) -> None:
    y, score = overlapping(3)
    with pytest.raises(ValueError, match="thresholds are chosen on validation data only"):
        choose_threshold("youden", y, score, chosen_on=split)
    with pytest.raises(ValueError, match="validation data only"):
        OperatingPoint("youden", 0.5, split, 0.8, 0.7)


def test_tuning_data_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="needs both classes"):
        choose_threshold("youden", [0, 0, 0], [0.1, 0.2, 0.3])


def test_operating_point_round_trips_through_json() -> None:
    y, score = overlapping(0)
    for policy in ("youden", "specificity>=1"):
        op = choose_threshold(policy, y, score, chosen_on="val")
        assert OperatingPoint.from_dict(json.loads(json.dumps(op.to_dict()))) == op
    never = OperatingPoint("specificity>=1.0", math.inf, "val", 0.0, 1.0)
    assert OperatingPoint.from_dict(json.loads(json.dumps(never.to_dict()))) == never
    assert never.predict([0.2, 1.0]).tolist() == [0, 0]
    assert OperatingPoint("0.3", 0.3, "val", 0.9, 0.5).predict([0.29, 0.3, 0.9]).tolist() == [
        0,
        1,
        1,
    ]
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        OperatingPoint.from_dict({**never.to_dict(), "extra": 1})
    with pytest.raises(AttributeError):
        never.value = 0.5  # type: ignore[misc]


# --- multi-class decision rules --------------------------------------------------------------


def test_prior_correction_flips_a_borderline_case_to_the_rare_class() -> None:
    # priors .8 .15 .05; p = .5 .3 .2 -> p / prior = .625 2 4, sum 6.625 -> class 2 (argmax: 0)
    probs = np.array([[0.5, 0.3, 0.2], [0.9, 0.07, 0.03]])
    counts = [80, 15, 5]
    assert apply_multiclass_rule("argmax", probs, counts).tolist() == [0, 0]
    assert apply_multiclass_rule("prior", probs, counts).tolist() == [2, 0]
    np.testing.assert_allclose(
        adjust_probabilities("prior", probs, counts)[0], np.array([0.625, 2.0, 4.0]) / 6.625
    )
    # binary: priors .9 .1; p = .6 .4 -> .6/.9 = 2/3, .4/.1 = 4 -> 1/7, 6/7
    np.testing.assert_allclose(
        adjust_probabilities("prior", [[0.6, 0.4]], [90, 10]), [[1 / 7, 6 / 7]]
    )


def test_logit_adjustment_limits_and_a_hand_value() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=50)
    counts = [70, 20, 10]
    assert (apply_multiclass_rule("logit-adjust:0", probs, counts) == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(
        adjust_probabilities("logit-adjust:1", probs, counts),
        adjust_probabilities("prior", probs, counts),
    )
    # tau = .5: p / sqrt(prior) = .5/sqrt(.7), .3/sqrt(.2), .2/sqrt(.1) = .598, .671, .632 -> 1
    assert apply_multiclass_rule("logit-adjust:0.5", [[0.5, 0.3, 0.2]], counts).tolist() == [1]


def test_multiclass_rules_parse_and_validate() -> None:
    assert parse_multiclass_rule("logit-adjust") == MulticlassRule(RuleKind.LOGIT_ADJUST, tau=1.0)
    assert str(parse_multiclass_rule(" Logit-Adjust : 0.5")) == "logit-adjust:0.5"
    with pytest.raises(ValueError, match="did you mean 'prior'"):
        parse_multiclass_rule("prio")
    with pytest.raises(ValueError, match="tau=-1.0 is invalid"):
        parse_multiclass_rule("logit-adjust:-1")
    with pytest.raises(ValueError, match="needs train_counts"):
        apply_multiclass_rule("prior", [[0.5, 0.5]], None)
    with pytest.raises(ValueError, match="one positive count per class"):
        apply_multiclass_rule("prior", [[0.5, 0.3, 0.2]], [10, 0, 5])
    with pytest.raises(ValueError, match="sum to 1 per row"):
        apply_multiclass_rule("argmax", [[0.5, 0.6]], None)
