"""Decision thresholds, tuned on validation data only and frozen as an :class:`OperatingPoint`.

Binary: a policy picks the threshold on the tuning (validation) split; an item is then called
positive when ``score >= threshold``, the rule of
:func:`medbalance.evaluation.metrics.binary_metrics`. Policies, as text (:func:`parse_policy`):

- ``youden``: maximise sensitivity + specificity - 1;
- ``f1``: maximise F1 of the positive class;
- ``sensitivity>=0.95``: maximise specificity subject to sensitivity >= 0.95 on the tuning
  data (``specificity>=0.90`` the reverse);
- ``cost:FN=5,FP=1``: minimise the expected cost per case,
  ``FN * prevalence * (1 - sensitivity) + FP * (1 - prevalence) * (1 - specificity)``, with the
  tuning data's prevalence, or the one given: ``cost:FN=5,FP=1,prevalence=0.1`` (the prevalence
  where the model will be used, when the validation split was enriched);
- a number such as ``0.3``: that threshold, unchanged.

The candidates are scikit-learn's ``roc_curve`` thresholds: every distinct tuning score, plus
``inf`` (call nothing positive). Ties in the objective go to the better secondary rate (the
constrained one for constraint policies) and then to the higher threshold, which calls fewer
cases positive. The chosen threshold is then moved midway between the chosen cut score and the
next lower tuning score: every tuning case is decided as before, but the threshold no longer sits
on the lowest-scored tuning case called positive (with well separated validation scores, say
negatives below 0.3 and positives above 0.99, a cut at 0.99 would miss every new positive that
scores a little lower; midway, 0.65, splits the margin).

:func:`choose_threshold` refuses ``chosen_on="test"``: the test split never chooses anything.

A guarantee (``guarantee=0.95`` with ``sensitivity>=X`` or ``specificity>=X``) replaces the
constrained rate by its one-sided lower Clopper–Pearson bound at that confidence
(:func:`lower_bound`): among the thresholds whose bound is at least ``X``, the one best for the
other rate, as the plain policy. It needs :func:`cases_needed` cases of the constrained class
(``X=0.9`` at 0.95: 29, the smallest ``n`` for which ``n`` of ``n`` reaches the bound); with
fewer it is refused (:func:`check_guarantee_cases`), never silently missed.

Multi-class decision rules (``argmax``, ``accuracy``, ``balanced``, ``prior``,
``logit-adjust:TAU``, tuned ``offsets:...``, ``cost:MATRIX``, ordinal ``expected-grade`` and
``median-grade``) live in :mod:`medbalance.evaluation.multiclass_rules`; their names are
re-exported here.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medbalance.evaluation._parsing import is_number, parse_float, unknown
from medbalance.evaluation.multiclass_rules import (
    RULE_FORMS,
    MulticlassRule,
    RuleKind,
    adjust_probabilities,
    apply_multiclass_rule,
    parse_multiclass_rule,
)

__all__ = [
    "POLICY_FORMS",
    "RULE_FORMS",
    "MulticlassRule",
    "OperatingPoint",
    "Policy",
    "PolicyKind",
    "RuleKind",
    "adjust_probabilities",
    "apply_multiclass_rule",
    "choose_threshold",
    "parse_multiclass_rule",
    "parse_policy",
]

POLICY_FORMS = (
    "youden",
    "f1",
    "sensitivity>=0.95",
    "specificity>=0.90",
    "cost:FN=5,FP=1",
    "cost:FN=5,FP=1,prevalence=0.1",
    "0.3",
)
_TOL = 1e-12  # float slack when comparing rates and objectives


class PolicyKind(StrEnum):
    """How a binary threshold is chosen."""

    YOUDEN = "youden"
    F1 = "f1"
    SENSITIVITY = "sensitivity"
    SPECIFICITY = "specificity"
    COST = "cost"
    FIXED = "fixed"


@dataclass(frozen=True)
class Policy:
    """A parsed threshold policy; ``str(policy)`` is its canonical text.

    Attributes:
        kind: the policy.
        bound: the minimum rate of ``sensitivity``/``specificity``, or the fixed threshold.
        fn_cost: cost of a false negative (``cost``).
        fp_cost: cost of a false positive (``cost``).
        prevalence: the prevalence the cost is taken at; None uses the tuning data's.
    """

    kind: PolicyKind
    bound: float | None = None
    fn_cost: float | None = None
    fp_cost: float | None = None
    prevalence: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in set(PolicyKind):
            raise unknown(str(self.kind), tuple(PolicyKind), "threshold policy kind")
        object.__setattr__(self, "kind", PolicyKind(self.kind))
        kind, bound = self.kind, self.bound
        uses_bound = kind in (PolicyKind.SENSITIVITY, PolicyKind.SPECIFICITY, PolicyKind.FIXED)
        if uses_bound and bound is None:
            raise ValueError(f"policy {kind} needs a bound (e.g. {kind}>=0.95 or 0.3)")
        if not uses_bound and bound is not None:
            raise ValueError(f"policy {kind} takes no bound; got bound={bound!r}")
        is_rate = kind in (PolicyKind.SENSITIVITY, PolicyKind.SPECIFICITY)
        if is_rate and (not is_number(bound) or not 0.0 <= bound <= 1.0):
            why = "cannot be met" if is_number(bound) and bound > 1 else "is invalid"
            raise ValueError(
                f"{kind}>={bound!r} {why}: {kind} is a rate in [0, 1]; "
                f"write a bound such as {kind}>=0.95"
            )
        if kind is PolicyKind.FIXED and (not is_number(bound) or not 0.0 <= bound <= 1.0):
            raise ValueError(
                f"fixed threshold {bound!r} is invalid: scores are probabilities, so a "
                "threshold lies in [0, 1]"
            )
        costs = (self.fn_cost, self.fp_cost, self.prevalence)
        if kind is not PolicyKind.COST:
            if costs != (None, None, None):
                raise ValueError(f"policy {kind} takes no costs or prevalence; got {costs}")
            return
        fn, fp = self.fn_cost, self.fp_cost
        if not (is_number(fn) and is_number(fp) and fn >= 0 and fp >= 0 and fn + fp > 0):
            raise ValueError(
                f"cost policy needs finite, nonnegative FN and FP costs, not both 0; got "
                f"FN={fn!r}, FP={fp!r}; e.g. cost:FN=5,FP=1"
            )
        p = self.prevalence
        if p is not None and (not is_number(p) or not 0.0 < p < 1.0):
            raise ValueError(f"prevalence={p!r} is invalid: it lies strictly between 0 and 1")

    def __str__(self) -> str:
        if self.kind in (PolicyKind.SENSITIVITY, PolicyKind.SPECIFICITY):
            return f"{self.kind}>={self.bound!r}"
        if self.kind is PolicyKind.FIXED:
            return repr(self.bound)
        if self.kind is PolicyKind.COST:
            text = f"cost:FN={self.fn_cost!r},FP={self.fp_cost!r}"
            return text if self.prevalence is None else f"{text},prevalence={self.prevalence!r}"
        return str(self.kind)


def parse_policy(text: str) -> Policy:
    """Parse a threshold policy such as ``youden`` or ``sensitivity>=0.95``.

    Args:
        text: ``youden``, ``f1``, ``sensitivity>=X``, ``specificity>=X``,
            ``cost:FN=A,FP=B[,prevalence=P]`` or a number in [0, 1]; case and spaces ignored.

    Raises:
        ValueError: unknown text (listing the valid forms and suggesting the nearest), or a
            bound, cost or prevalence out of range (``sensitivity>=1.01`` cannot be met).
    """
    if not isinstance(text, str):
        raise ValueError(f"a threshold policy is text such as 'youden'; got {text!r}")
    compact = re.sub(r"\s+", "", text).lower()
    if compact in (PolicyKind.YOUDEN, PolicyKind.F1):
        return Policy(PolicyKind(compact))
    match = re.fullmatch(r"(sensitivity|specificity)>=(.+)", compact)
    if match:
        name, value = match.groups()
        return Policy(PolicyKind(name), bound=parse_float(value, text, f"{name}>=0.95"))
    if compact.startswith("cost:"):
        return _parse_cost(text, compact[len("cost:") :])
    try:
        value = float(compact)
    except ValueError:
        pass
    else:
        return Policy(PolicyKind.FIXED, bound=value)
    constraint = re.fullmatch(r"([a-z_]+)(?:>=|=>|>|=|<=|<)(.+)", compact)
    if constraint:  # a misspelt name or operator: suggest the repaired constraint
        name, value = constraint.groups()
        near = difflib.get_close_matches(name, ["sensitivity", "specificity"], n=1, cutoff=0.5)
        if near:
            raise ValueError(
                f"unknown threshold policy {text!r}: constraints read NAME>=VALUE with NAME "
                f"sensitivity or specificity; did you mean '{near[0]}>={value}'?"
            )
    raise unknown(compact, POLICY_FORMS, "threshold policy")


def _parse_cost(text: str, body: str) -> Policy:
    form = "cost:FN=5,FP=1 or cost:FN=5,FP=1,prevalence=0.1"
    values: dict[str, float] = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in ("fn", "fp", "prevalence"):
            near = difflib.get_close_matches(key, ["fn", "fp", "prevalence"], n=1, cutoff=0.5)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"cost policy {text!r}: cannot read {item!r}{hint}; write {form}")
        values[key] = parse_float(value, f"cost policy {text!r}", form)
    if "fn" not in values or "fp" not in values:
        raise ValueError(f"cost policy {text!r} needs both FN and FP costs; write {form}")
    return Policy(
        PolicyKind.COST,
        fn_cost=values["fn"],
        fp_cost=values["fp"],
        prevalence=values.get("prevalence"),
    )


def _check_split(chosen_on: str) -> None:
    if not isinstance(chosen_on, str) or not chosen_on.strip():
        raise ValueError(f"chosen_on={chosen_on!r}: name the split the threshold is tuned on")
    if "test" in re.split(r"[^a-z0-9]+", chosen_on.lower()):
        raise ValueError(
            f"thresholds are chosen on validation data only; chosen_on={chosen_on!r} would let "
            "the test split choose the operating point. Tune on the validation split and apply "
            "the frozen OperatingPoint to test"
        )


@dataclass(frozen=True)
class OperatingPoint:
    """A frozen binary threshold and how it was chosen.

    Attributes:
        policy: the canonical policy text (``parse_policy`` reads it back).
        value: the threshold; predict positive when ``score >= value`` (``inf``: never).
        chosen_on: the split it was tuned on; never ``test``.
        sensitivity: sensitivity at ``value`` on that split.
        specificity: specificity at ``value`` on that split.
        guarantee: the confidence level of a guaranteed constraint (None: none).
        lower_bound: with ``guarantee``: the constrained rate's one-sided lower
            Clopper–Pearson bound at that level on that split.
    """

    policy: str
    value: float
    chosen_on: str
    sensitivity: float
    specificity: float
    guarantee: float | None = None
    lower_bound: float | None = None

    def __post_init__(self) -> None:
        _check_split(self.chosen_on)
        parse_policy(self.policy)
        if not isinstance(self.value, int | float) or math.isnan(self.value):
            raise ValueError(f"OperatingPoint value={self.value!r} must be a number (inf allowed)")
        for name in ("sensitivity", "specificity"):
            rate = getattr(self, name)
            if not is_number(rate) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"OperatingPoint {name}={rate!r} must lie in [0, 1]")
        if self.guarantee is not None:
            from medbalance.evaluation.guarantee import check_guarantee

            check_guarantee(self.policy, self.guarantee)
        if (self.guarantee is None) != (self.lower_bound is None):
            raise ValueError("OperatingPoint: give guarantee and lower_bound together, or neither")

    def predict(self, scores: ArrayLike) -> NDArray[np.int64]:
        """1 where ``score >= value``, else 0."""
        return (np.asarray(scores, dtype=np.float64) >= self.value).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (``inf`` is written ``Infinity`` by :mod:`json`); without a
        guarantee, the five keys of every earlier record."""
        values = asdict(self)
        if self.guarantee is None:
            del values["guarantee"], values["lower_bound"]
        return values

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatingPoint:
        """Read :meth:`to_dict` output back; unknown or missing keys are errors."""
        fields = {"policy", "value", "chosen_on", "sensitivity", "specificity"}
        optional = {"guarantee", "lower_bound"}
        if not fields <= set(data) <= fields | optional:
            raise ValueError(
                f"an operating point has keys {sorted(fields)} (and {sorted(optional)} with a "
                f"guarantee); missing {sorted(fields - set(data))}, unknown "
                f"{sorted(set(data) - fields - optional)}"
            )
        level, bound = data.get("guarantee"), data.get("lower_bound")
        return cls(
            policy=str(data["policy"]),
            value=float(data["value"]),
            chosen_on=str(data["chosen_on"]),
            sensitivity=float(data["sensitivity"]),
            specificity=float(data["specificity"]),
            guarantee=None if level is None else float(level),
            lower_bound=None if bound is None else float(bound),
        )


def _tuning_data(y_true: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[Any]]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape or len(y) == 0:
        raise ValueError(
            f"y_true and scores must be 1-D, non-empty, same length; got {y.shape}, {s.shape}"
        )
    if not np.isin(y, [0, 1]).all():
        raise ValueError(f"y_true must hold 0 and 1 only; found {np.unique(y).tolist()[:10]}")
    counts = np.bincount(y.astype(np.int64), minlength=2)
    if counts.min() == 0:
        raise ValueError(
            f"tuning data holds {counts[0]} negatives and {counts[1]} positives; choosing a "
            "threshold needs both classes in the validation split"
        )
    if not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("scores must be finite positive-class probabilities in [0, 1]")
    return y.astype(np.int64), s


def choose_threshold(
    policy: str | Policy,
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    chosen_on: str = "val",
    guarantee: float | None = None,
) -> OperatingPoint:
    """Choose a binary threshold on tuning data by a policy (module docstring).

    A constraint always has a solution for a bound in [0, 1]: ``inf`` gives specificity 1 and
    the lowest tuning score gives sensitivity 1. So ``sensitivity>=1.0`` may call every tuning
    case positive (the threshold at the lowest score, the equivalent of threshold 0) with
    specificity 0; that point is returned, not refused. Sensitivity and specificity are compared
    with the bound with 1e-12 slack for float rounding.

    Args:
        policy: policy text or a parsed :class:`Policy`.
        y_true: 1 positive, 0 negative, on the tuning split (both classes needed).
        scores: positive-class probabilities on that split.
        chosen_on: the split's name, recorded in the result; ``"test"`` is refused.
        guarantee: a confidence level such as 0.95 for a ``sensitivity>=`` or
            ``specificity>=`` policy: the constraint must hold for the rate's one-sided lower
            Clopper–Pearson bound at that level, not only for the rate (module docstring).

    Returns:
        The frozen :class:`OperatingPoint` with its tuning sensitivity and specificity (and,
        with a guarantee, the level and the bound reached).

    Raises:
        ValueError: a guarantee with another policy, or too few tuning cases of the constrained
            class to reach the bound (naming how many are needed and how many there are).
    """
    from sklearn.metrics import roc_curve

    from medbalance.evaluation.guarantee import check_guarantee_cases, lower_bound

    _check_split(chosen_on)
    rule = parse_policy(policy) if isinstance(policy, str) else policy
    y, s = _tuning_data(y_true, scores)
    if guarantee is not None:
        check_guarantee_cases(rule, guarantee, y, split=chosen_on)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if rule.kind is PolicyKind.FIXED:
        assert rule.bound is not None  # Policy.__post_init__ guarantees it
        pred = s >= rule.bound
        sens, spec = pred[y == 1].mean(), 1.0 - pred[y == 0].mean()
        return OperatingPoint(str(rule), rule.bound, chosen_on, float(sens), float(spec))
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)  # decreasing thresholds
    tp = np.rint(tpr * n_pos)
    fp = np.rint(fpr * n_neg)
    sens, spec = tp / n_pos, 1.0 - fp / n_neg
    objective, secondary = _objective(rule, sens, spec, tp, fp, n_pos, n_neg)
    bound = None
    if guarantee is not None:  # feasible: the bound, not only the rate, meets the constraint
        kept, n_kept = (tp, n_pos) if rule.kind is PolicyKind.SENSITIVITY else (n_neg - fp, n_neg)
        bound = lower_bound(kept, n_kept, guarantee)
        assert rule.bound is not None  # check_guarantee_cases: a rate policy, enough cases
        objective = np.where(bound >= rule.bound - _TOL, objective, -np.inf)
    best = np.flatnonzero(objective >= np.max(objective) - _TOL)
    best = best[secondary[best] >= np.max(secondary[best]) - _TOL]
    i = int(best[0])  # the highest threshold among the remaining ties
    return OperatingPoint(
        str(rule),
        _midway(thresholds, i),
        chosen_on,
        float(sens[i]),
        float(spec[i]),
        guarantee=guarantee,
        lower_bound=None if bound is None else float(bound[i]),
    )


def _midway(thresholds: NDArray[Any], i: int) -> float:
    """Midway between the chosen cut score ``thresholds[i]`` and the next lower tuning score
    (0 below the lowest): the same tuning decisions, and the margin split between the classes
    instead of sitting on the lowest-scored tuning case called positive."""
    if not math.isfinite(thresholds[i]):  # call nothing positive
        return float(thresholds[i])
    lower = float(thresholds[i + 1]) if i + 1 < len(thresholds) else 0.0
    return (float(thresholds[i]) + lower) / 2


def _objective(
    rule: Policy,
    sens: NDArray[Any],
    spec: NDArray[Any],
    tp: NDArray[Any],
    fp: NDArray[Any],
    n_pos: int,
    n_neg: int,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """What each candidate maximises, and the tie-breaker; infeasible candidates get -inf."""
    if rule.kind is PolicyKind.YOUDEN:
        return sens + spec - 1.0, np.zeros_like(sens)
    if rule.kind is PolicyKind.F1:
        return 2 * tp / (tp + fp + n_pos), np.zeros_like(sens)
    if rule.kind is PolicyKind.SENSITIVITY:
        assert rule.bound is not None  # Policy.__post_init__ guarantees these
        return np.where(sens >= rule.bound - _TOL, spec, -np.inf), sens
    if rule.kind is PolicyKind.SPECIFICITY:
        assert rule.bound is not None
        return np.where(spec >= rule.bound - _TOL, sens, -np.inf), spec
    assert rule.fn_cost is not None and rule.fp_cost is not None
    prevalence = n_pos / (n_pos + n_neg) if rule.prevalence is None else rule.prevalence
    cost = rule.fn_cost * prevalence * (1 - sens) + rule.fp_cost * (1 - prevalence) * (1 - spec)
    return -cost, np.zeros_like(sens)
