"""Tests for medbalance.evaluation.thresholds: policies against brute force, the test-split guard,
rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medbalance.evaluation.guarantee import cases_needed, check_guarantee, lower_bound
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


# --- guaranteed constraints ------------------------------------------------------------------


def _clopper_pearson_by_root(k: int, n: int, level: float) -> float:
    """The lower bound from its definition, independently of the beta quantile: the p at which
    P(Bin(n, p) >= k) = 1 - level (0 for k = 0)."""
    from scipy.optimize import brentq
    from scipy.stats import binom

    if k == 0:
        return 0.0
    return float(
        brentq(lambda p: binom.sf(k - 1, n, p) - (1 - level), 1e-12, 1 - 1e-12, xtol=1e-14)
    )


def test_lower_bound_equals_clopper_pearson_reference_values() -> None:
    # n of n: (1 - level) ** (1 / n); 29 of 29 at 0.95 -> 0.05 ** (1/29) = 0.90186
    assert lower_bound(29, 29, 0.95)[()] == pytest.approx(0.9018553723, abs=1e-9)
    # 8 of 10: the lower end of the textbook 90% two-sided interval (0.4931, 0.9632)
    assert lower_bound(8, 10, 0.95)[()] == pytest.approx(0.49310, abs=5e-5)
    assert lower_bound(0, 10, 0.95)[()] == 0.0
    for k, n, level in [(1, 20, 0.95), (45, 50, 0.95), (17, 30, 0.9), (99, 100, 0.99)]:
        assert lower_bound(k, n, level)[()] == pytest.approx(
            _clopper_pearson_by_root(k, n, level), abs=1e-9
        )
    assert lower_bound([0, 5, 10], 10, 0.95).shape == (3,)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        lower_bound(11, 10, 0.95)


@pytest.mark.parametrize(
    ("rate", "level", "needed"),
    [(0.9, 0.95, 29), (0.95, 0.95, 59), (0.8, 0.9, 11), (0.99, 0.95, 299)],
)
def test_cases_needed_is_the_fewest_n_of_n_reaching_the_bound(
    rate: float, level: float, needed: int
) -> None:
    assert cases_needed(rate, level) == needed
    assert _clopper_pearson_by_root(needed, needed, level) >= rate
    assert _clopper_pearson_by_root(needed - 1, needed - 1, level) < rate


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("policy", ["sensitivity>=0.8", "specificity>=0.9"])
def test_guaranteed_threshold_meets_the_bound_and_is_the_best_such(seed: int, policy: str) -> None:
    y, score = overlapping(seed, n_neg=300, n_pos=120)
    bf = brute_force(y, score)
    rate = "sens" if policy.startswith("sens") else "spec"
    other = "spec" if rate == "sens" else "sens"
    kept = bf["tp"] if rate == "sens" else (y == 0).sum() - bf["fp"]
    n = int((y == 1).sum() if rate == "sens" else (y == 0).sum())
    bounds = np.array([_clopper_pearson_by_root(int(k), n, 0.95) for k in kept])
    feasible = bounds >= float(policy.split(">=")[1])
    op = choose_threshold(policy, y, score, guarantee=0.95)
    plain = choose_threshold(policy, y, score)
    chosen = binary_metrics(y, score, op.value)
    assert op.guarantee == 0.95 and op.lower_bound is not None
    assert op.lower_bound >= float(policy.split(">=")[1])
    k = round(chosen[{"sens": "sensitivity", "spec": "specificity"}[rate]] * n)
    assert op.lower_bound == pytest.approx(_clopper_pearson_by_root(k, n, 0.95), abs=1e-9)
    best_other = bf[other][feasible].max()
    assert getattr(op, {"sens": "specificity", "spec": "sensitivity"}[rate]) == pytest.approx(
        best_other
    )
    # the bound is stricter than the rate: never a better other rate than the plain policy
    assert getattr(op, {"sens": "specificity", "spec": "sensitivity"}[rate]) <= getattr(
        plain, {"sens": "specificity", "spec": "sensitivity"}[rate]
    )


def test_the_guarantee_holds_over_repeated_validation_draws() -> None:
    # scores: negatives Beta(2, 5), positives Beta(5, 2); the true sensitivity at t is the
    # positives' survival function. A threshold chosen on 60 positives for sensitivity >= 0.9
    # misses 0.9 about half the time; with the 95% guarantee at most about 5% of the time.
    from scipy.stats import beta

    rng = np.random.default_rng(0)
    misses = {None: 0, 0.95: 0}
    repeats = 300
    for _ in range(repeats):
        y = np.r_[np.zeros(150, int), np.ones(60, int)]
        score = np.r_[rng.beta(2, 5, 150), rng.beta(5, 2, 60)]
        for level in misses:
            op = choose_threshold("sensitivity>=0.9", y, score, guarantee=level)
            misses[level] += beta.sf(op.value, 5, 2) < 0.9
    assert misses[0.95] / repeats <= 0.07
    assert misses[None] / repeats >= 0.3


def test_too_few_tuning_cases_are_refused_with_the_count_needed() -> None:
    y, score = overlapping(0, n_neg=120, n_pos=20)
    with pytest.raises(
        ValueError, match=r"needs at least 29 positive tuning cases .* val holds 20"
    ):
        choose_threshold("sensitivity>=0.9", y, score, guarantee=0.95)
    with pytest.raises(
        ValueError, match=r"needs at least 59 negative tuning cases .* oof holds 20"
    ):
        choose_threshold(
            "specificity>=0.95", 1 - y[80:], score[80:], chosen_on="oof", guarantee=0.95
        )
    assert (
        choose_threshold("sensitivity>=0.9", *overlapping(0, n_pos=29), guarantee=0.95).sensitivity
        == 1.0
    )


@pytest.mark.parametrize(
    ("policy", "level", "match"),
    [
        ("youden", 0.95, "use it with 'sensitivity>=X' or 'specificity>=X'"),
        ("auto", 0.95, "the threshold policy is 'auto'"),
        ("0.3", 0.95, "bounds a constrained rate"),
        ("sensitivity>=0.9", 1.0, "guarantee=1.0 is invalid: it is a confidence level in"),
        ("sensitivity>=0.9", 0.3, "guarantee=0.3 is invalid"),
        ("specificity>=1", 0.95, "specificity>=1.0 cannot be guaranteed"),
    ],
)
def test_guarantees_a_policy_cannot_take_are_refused(policy: str, level: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_guarantee(policy, level)


def test_a_guaranteed_operating_point_round_trips_and_old_ones_keep_their_keys() -> None:
    y, score = overlapping(1, n_pos=60)
    op = choose_threshold("sensitivity>=0.9", y, score, guarantee=0.95)
    assert set(op.to_dict()) >= {"guarantee", "lower_bound"}
    assert OperatingPoint.from_dict(json.loads(json.dumps(op.to_dict()))) == op
    plain = choose_threshold("sensitivity>=0.9", y, score)
    assert set(plain.to_dict()) == {"policy", "value", "chosen_on", "sensitivity", "specificity"}
    with pytest.raises(ValueError, match="guarantee and lower_bound together"):
        OperatingPoint("sensitivity>=0.9", 0.5, "val", 0.9, 0.5, guarantee=0.95)


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
