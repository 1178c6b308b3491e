"""Multi-class decision rules: how class probabilities become one class per image.

Rules, as text (:func:`parse_multiclass_rule`; case and spaces ignored):

- ``argmax``: the most probable class.
- ``accuracy``: move the probabilities from the prior the model learned (``model_prior``) to the
  natural training prior, then argmax: the most correct calls when test data has the training
  mix.
- ``balanced``: move them to a uniform prior, then argmax: the best balanced accuracy when the
  model is calibrated (every class counts alike).
- ``prior``: divide by the natural training prior (Buda et al. 2018; it assumes a naturally
  trained model); ``logit-adjust:TAU`` subtracts ``TAU * log prior`` (Menon et al. 2021).
- ``offsets:balanced`` / ``offsets:macro-f1``: add one offset per class to the log-probabilities,
  tuned on the validation (or out-of-fold) predictions to maximise balanced accuracy or macro-F1;
  ``offsets:balanced,accuracy>=0.8`` keeps the tuning accuracy at 0.8 or more.
- ``cost:0,1,1;5,0,1;5,1,0``: the class of minimum expected cost; row ``i`` of the matrix is the
  true class, column ``j`` the call, in class order; the expectation is taken over the
  probabilities moved to the natural prior (as ``accuracy`` does).
- Ordinal grades (the class order is the grade order): ``expected-grade`` cuts the expected
  grade ``sum_k k p_k`` at cut-points tuned on the tuning data for the best quadratic weighted
  kappa (starting from ``k + 0.5``); ``median-grade`` calls the median of the predicted grade
  distribution (no tuning).

``offsets`` and ``expected-grade`` are *tuned* rules: :func:`tune_rule` finds their values on
tuning data and :func:`decide` applies them. The tuning is a coordinate search written here
because no library tunes per-class decision offsets or ordinal cut-points: for one offset (or one
cut-point) at a time, every value where a tuning item changes class is a candidate, and the best
candidate (ties: the one nearest the current value, so nothing moves without a gain) is kept;
passes repeat until nothing improves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medbalance.evaluation._parsing import is_number, parse_float, unknown

__all__ = [
    "RULE_FORMS",
    "MulticlassRule",
    "Objective",
    "RuleKind",
    "adjust_probabilities",
    "apply_multiclass_rule",
    "decide",
    "parse_multiclass_rule",
    "quadratic_kappa_from_confusion",
    "tune_rule",
]

log = logging.getLogger(__name__)

RULE_FORMS = (
    "argmax",
    "accuracy",
    "balanced",
    "prior",
    "logit-adjust:1.0",
    "offsets:balanced",
    "offsets:macro-f1,accuracy>=0.8",
    "cost:0,1;5,0",
    "expected-grade",
    "median-grade",
)
_TOL = 1e-12
_MAX_CANDIDATES = 256  # candidate values per coordinate step (quantiles when more)
_MAX_PASSES = 20
_FEASIBLE = 1e3  # search key of a candidate that meets the accuracy floor: 1e3 + objective


class RuleKind(StrEnum):
    """How a multi-class prediction is made from probabilities."""

    ARGMAX = "argmax"
    PRIOR = "prior"
    LOGIT_ADJUST = "logit-adjust"
    ACCURACY = "accuracy"  # from the model's prior to the natural one: most correct calls
    BALANCED = "balanced"  # from the model's prior to a uniform one: best balanced accuracy
    OFFSETS = "offsets"  # per-class log-probability offsets tuned on validation data
    COST = "cost"  # minimum expected cost under a cost matrix
    EXPECTED_GRADE = "expected-grade"  # ordinal: expected grade at tuned cut-points
    MEDIAN_GRADE = "median-grade"  # ordinal: median of the grade distribution


class Objective(StrEnum):
    """What tuned offsets maximise on the tuning data."""

    BALANCED = "balanced"
    MACRO_F1 = "macro-f1"


@dataclass(frozen=True)
class MulticlassRule:
    """A multi-class decision rule; ``str(rule)`` is its canonical text.

    Attributes:
        kind: the rule.
        tau: strength of ``logit-adjust`` (0 is argmax, 1 equals ``prior``); None otherwise.
        objective: ``offsets`` only: what the offsets maximise.
        accuracy_floor: ``offsets`` only: the least tuning accuracy allowed (None: no floor).
        costs: ``cost`` only: the cost matrix, rows the true class, columns the call.
    """

    kind: RuleKind
    tau: float | None = None
    objective: Objective | None = None
    accuracy_floor: float | None = None
    costs: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in set(RuleKind):
            raise unknown(str(self.kind), tuple(RuleKind), "multi-class rule kind")
        object.__setattr__(self, "kind", RuleKind(self.kind))
        kind = self.kind
        if kind is RuleKind.LOGIT_ADJUST:
            if not is_number(self.tau) or self.tau < 0:
                raise ValueError(
                    f"logit-adjust tau={self.tau!r} is invalid: a finite number >= 0, "
                    "e.g. logit-adjust:1.0"
                )
        elif self.tau is not None:
            raise ValueError(f"rule {kind} takes no tau; got tau={self.tau!r}")
        if kind is RuleKind.OFFSETS:
            object.__setattr__(self, "objective", Objective(self.objective or "balanced"))
            floor = self.accuracy_floor
            if floor is not None and (not is_number(floor) or not 0 <= floor <= 1):
                raise ValueError(
                    f"accuracy>={floor!r} is invalid: accuracy is a rate in [0, 1]; "
                    "e.g. offsets:balanced,accuracy>=0.8"
                )
        elif self.objective is not None or self.accuracy_floor is not None:
            raise ValueError(f"rule {kind} takes no objective or accuracy floor")
        if kind is RuleKind.COST:
            _check_costs(self.costs)
        elif self.costs is not None:
            raise ValueError(f"rule {kind} takes no cost matrix")

    def __str__(self) -> str:
        if self.kind is RuleKind.LOGIT_ADJUST:
            return f"{self.kind}:{self.tau!r}"
        if self.kind is RuleKind.OFFSETS:
            floor = "" if self.accuracy_floor is None else f",accuracy>={self.accuracy_floor!r}"
            return f"{self.kind}:{self.objective}{floor}"
        if self.kind is RuleKind.COST:
            assert self.costs is not None  # checked in __post_init__
            rows = ";".join(",".join(f"{v:g}" for v in row) for row in self.costs)
            return f"{self.kind}:{rows}"
        return str(self.kind)

    @property
    def tuned(self) -> bool:
        """Whether the rule has values chosen on tuning data (:func:`tune_rule`)."""
        return self.kind in (RuleKind.OFFSETS, RuleKind.EXPECTED_GRADE)

    @property
    def ordinal(self) -> bool:
        """Whether the rule reads the classes as ordered grades."""
        return self.kind in (RuleKind.EXPECTED_GRADE, RuleKind.MEDIAN_GRADE)


def _check_costs(costs: tuple[tuple[float, ...], ...] | None) -> None:
    n = len(costs or ())
    form = "e.g. cost:0,1,1;5,0,1;5,1,0 (row = true class, column = call)"
    if costs is None or n < 2 or any(len(row) != n for row in costs):
        raise ValueError(f"a cost matrix is square with one row per class; {form}")
    values = [v for row in costs for v in row]
    if not all(is_number(v) and v >= 0 for v in values) or max(values) <= 0:
        raise ValueError(f"costs are finite, nonnegative and not all 0; {form}")


def parse_multiclass_rule(text: str) -> MulticlassRule:
    """Parse a rule of the module docstring (``logit-adjust`` alone: tau 1; ``offsets`` alone:
    ``offsets:balanced``).

    Raises:
        ValueError: unknown text, listing the forms and suggesting the nearest; a bad value.
    """
    if not isinstance(text, str):
        raise ValueError(f"a multi-class rule is text such as 'balanced'; got {text!r}")
    compact = re.sub(r"\s+", "", text).lower()
    name, sep, value = compact.partition(":")
    if name == RuleKind.LOGIT_ADJUST:
        tau = parse_float(value, f"rule {text!r}", "logit-adjust:1.0") if sep else 1.0
        return MulticlassRule(RuleKind.LOGIT_ADJUST, tau=tau)
    if name == RuleKind.OFFSETS:
        return _parse_offsets(text, value)
    if name == RuleKind.COST and sep and "=" not in value:
        return MulticlassRule(RuleKind.COST, costs=_parse_matrix(text, value))
    plain = (RuleKind.ARGMAX, RuleKind.PRIOR, RuleKind.ACCURACY, RuleKind.BALANCED)
    if name in (*plain, RuleKind.EXPECTED_GRADE, RuleKind.MEDIAN_GRADE) and not sep:
        return MulticlassRule(RuleKind(name))
    raise unknown(compact, RULE_FORMS, "multi-class rule")


def _parse_offsets(text: str, body: str) -> MulticlassRule:
    form = "offsets:balanced, offsets:macro-f1 or offsets:balanced,accuracy>=0.8"
    objective, _, rest = body.partition(",")
    if objective not in (*Objective, ""):
        raise unknown(objective, tuple(str(o) for o in Objective), "offsets objective")
    floor = None
    if rest:
        match = re.fullmatch(r"accuracy>=(.+)", rest)
        if not match:
            raise ValueError(f"rule {text!r}: cannot read {rest!r}; write {form}")
        floor = parse_float(match.group(1), f"rule {text!r}", form)
    return MulticlassRule(
        RuleKind.OFFSETS, objective=Objective(objective or "balanced"), accuracy_floor=floor
    )


def _parse_matrix(text: str, body: str) -> tuple[tuple[float, ...], ...]:
    form = "cost:0,1,1;5,0,1;5,1,0 (rows separated by ';', row = true class)"
    return tuple(
        tuple(parse_float(v, f"cost matrix {text!r}", form) for v in row.split(","))
        for row in body.split(";")
    )


# --- applying rules ---------------------------------------------------------------------------


def _check_probs(probs: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (N, C) with C >= 2 classes; got shape {p.shape}")
    sums = p.sum(axis=1)
    if not np.isfinite(p).all() or p.min() < 0 or np.abs(sums - 1).max(initial=0) > 1e-4:
        raise ValueError(
            "probs must be finite, nonnegative and sum to 1 per row (within 1e-4); apply "
            "softmax to the logits first"
        )
    return p


def _priors(
    rule: MulticlassRule, n_classes: int, train_counts: ArrayLike | None, model_prior: Any
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The natural training prior and the prior the model learned (default: the natural)."""
    if train_counts is None:
        raise ValueError(f"rule {rule} needs train_counts, the training items per class")
    counts = np.asarray(train_counts, dtype=np.float64)
    if counts.shape != (n_classes,) or not np.isfinite(counts).all() or counts.min() <= 0:
        raise ValueError(
            f"train_counts must hold one positive count per class ({n_classes} classes); got "
            f"{counts.tolist()}; every class needs training items for a prior"
        )
    prior = counts / counts.sum()
    return prior, prior if model_prior is None else _as_prior(model_prior, n_classes)


def _as_prior(values: ArrayLike, n_classes: int) -> NDArray[np.float64]:
    prior = np.asarray(values, dtype=np.float64)
    if prior.shape != (n_classes,) or not np.isfinite(prior).all() or prior.min() <= 0:
        raise ValueError(
            f"model_prior must hold one positive share per class ({n_classes}); got "
            f"{prior.tolist()}"
        )
    return prior / prior.sum()


def adjust_probabilities(
    rule: str | MulticlassRule,
    probs: ArrayLike,
    train_counts: ArrayLike | None,
    model_prior: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Probabilities after the rule's prior correction, renormalised.

    ``argmax``, the ordinal rules and tuned ``offsets`` (which add their offsets on top) leave
    them unchanged; ``cost`` takes its expectation over the ``accuracy`` correction.

    ``accuracy`` and ``balanced`` know the prior the model's outputs are calibrated to
    (``model_prior``: natural after plain sampling and cross-entropy, uniform after full
    oversampling or a balanced loss, in between after ``oversample:ALPHA``) and move the
    probabilities from it to the natural training prior (``accuracy``) or to a uniform one
    (``balanced``), so a correction the sampler or loss already made is not made twice.
    ``prior`` always divides by the natural prior (it assumes a naturally trained model).

    Args:
        rule: rule text or a parsed :class:`MulticlassRule`.
        probs: class probabilities ``(N, C)``.
        train_counts: training items per class, ``C`` positive counts (the priors); may be
            None for the rules that need no prior.
        model_prior: the class prior the model learned (default: the natural one).
    """
    parsed = parse_multiclass_rule(rule) if isinstance(rule, str) else rule
    p = _check_probs(probs)
    if parsed.kind in (RuleKind.ARGMAX, RuleKind.OFFSETS) or parsed.ordinal:
        return p
    if parsed.kind is RuleKind.COST and train_counts is None:
        return p  # no prior known: the expectation is over the model's own probabilities
    prior, learned = _priors(parsed, p.shape[1], train_counts, model_prior)
    if parsed.kind in (RuleKind.ACCURACY, RuleKind.COST):
        adjusted = p * prior / learned
    elif parsed.kind is RuleKind.BALANCED:
        adjusted = p / learned
    elif parsed.kind is RuleKind.PRIOR:
        adjusted = p / prior
    else:
        assert parsed.tau is not None  # MulticlassRule.__post_init__ guarantees it
        with np.errstate(divide="ignore"):  # log 0 = -inf: a zero probability stays zero
            logits = np.log(p) - parsed.tau * np.log(prior)
        adjusted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return adjusted / adjusted.sum(axis=1, keepdims=True)


def decide(
    probs: ArrayLike,
    rule: str | MulticlassRule = "argmax",
    *,
    prior: ArrayLike | None = None,
    model_prior: ArrayLike | None = None,
    tuned: Sequence[float] | None = None,
) -> NDArray[np.int64]:
    """The class index of every row of ``probs`` under ``rule``.

    Args:
        probs: class probabilities ``(N, C)``.
        rule: rule text (module docstring) or a parsed :class:`MulticlassRule`.
        prior: the natural (training) class prior, as counts or shares; the prior-aware rules
            need it.
        model_prior: the prior the model's outputs are calibrated to (default: ``prior``).
        tuned: a tuned rule's values from :func:`tune_rule` (offsets: one per class;
            expected-grade: ``C - 1`` increasing cut-points).
    """
    parsed = parse_multiclass_rule(rule) if isinstance(rule, str) else rule
    p = adjust_probabilities(parsed, probs, prior, model_prior)
    n_classes = p.shape[1]
    if parsed.tuned and tuned is None:
        raise ValueError(f"rule {parsed} is tuned on validation data first: use tune_rule")
    if parsed.kind is RuleKind.OFFSETS:
        offsets = _values(tuned, n_classes, "offsets")
        return np.argmax(_log(p) + offsets, axis=1).astype(np.int64)
    if parsed.kind is RuleKind.EXPECTED_GRADE:
        cuts = _values(tuned, n_classes - 1, "cut-points")
        return _grades(_expected_grade(p), cuts)
    if parsed.kind is RuleKind.MEDIAN_GRADE:
        return np.argmax(np.cumsum(p, axis=1) >= 0.5 - 1e-9, axis=1).astype(np.int64)
    if parsed.kind is RuleKind.COST:
        costs = np.asarray(parsed.costs, dtype=np.float64)
        if costs.shape != (n_classes, n_classes):
            raise ValueError(
                f"the cost matrix is {costs.shape[0]}x{costs.shape[1]} but the model has "
                f"{n_classes} classes; give one row and one column per class, in class order"
            )
        return np.argmin(p @ costs, axis=1).astype(np.int64)
    return p.argmax(axis=1).astype(np.int64)


def apply_multiclass_rule(
    rule: str | MulticlassRule,
    probs: ArrayLike,
    train_counts: ArrayLike | None,
    model_prior: ArrayLike | None = None,
    tuned: Sequence[float] | None = None,
) -> NDArray[np.int64]:
    """Predicted class per item under the rule (:func:`decide` with positional priors)."""
    return decide(probs, rule, prior=train_counts, model_prior=model_prior, tuned=tuned)


def _values(values: Sequence[float] | None, n: int, what: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,) or not np.isfinite(array).all():
        raise ValueError(f"the rule's tuned {what} must be {n} finite numbers; got {values!r}")
    return array


def _log(p: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.log(np.maximum(p, 1e-300))


def _expected_grade(p: NDArray[np.float64]) -> NDArray[np.float64]:
    return p @ np.arange(p.shape[1], dtype=np.float64)


def _grades(expected: NDArray[np.float64], cuts: NDArray[np.float64]) -> NDArray[np.int64]:
    """Grade ``k`` where ``cuts[k-1] < expected <= cuts[k]``."""
    return np.searchsorted(cuts, expected, side="left").astype(np.int64)


# --- tuning -----------------------------------------------------------------------------------


def tune_rule(
    rule: str | MulticlassRule,
    labels: ArrayLike,
    probs: ArrayLike,
    *,
    prior: ArrayLike | None = None,
    model_prior: ArrayLike | None = None,
) -> tuple[float, ...] | None:
    """A tuned rule's values, chosen on tuning data (validation or out-of-fold), else None.

    Args:
        rule: the rule; only ``offsets`` and ``expected-grade`` have values to tune.
        labels: true class per tuning item.
        probs: class probabilities ``(N, C)`` of those items.
        prior: natural class prior (counts or shares): a start of the offset search.
        model_prior: the prior the model learned: another start.
    """
    parsed = parse_multiclass_rule(rule) if isinstance(rule, str) else rule
    if not parsed.tuned:
        return None
    p = _check_probs(probs)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(p),) or y.min(initial=0) < 0 or y.max(initial=0) >= p.shape[1]:
        raise ValueError(f"labels must be {len(p)} class indices below {p.shape[1]}")
    if parsed.kind is RuleKind.EXPECTED_GRADE:
        return tuple(float(v) for v in _tune_cut_points(y, p))
    return tuple(float(v) for v in _tune_offsets(parsed, y, p, prior, model_prior))


def _confusions(y: NDArray[np.int64], preds: NDArray[np.int64], n: int) -> NDArray[np.float64]:
    """Confusion matrices ``(M, C, C)`` (rows true) of ``M`` rows of predictions."""
    codes = (y[None, :] * n + preds) + (n * n) * np.arange(len(preds))[:, None]
    flat = np.bincount(codes.ravel(), minlength=len(preds) * n * n)
    return flat.reshape(len(preds), n, n).astype(np.float64)


def _offset_keys(
    rule: MulticlassRule, confusion: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Search key (feasible: 1e3 + objective; else accuracy) and accuracy of each matrix."""
    diag = np.diagonal(confusion, axis1=1, axis2=2)
    rows, cols = confusion.sum(axis=2), confusion.sum(axis=1)
    accuracy = diag.sum(axis=1) / confusion.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule.objective is Objective.MACRO_F1:
            per_class = 2 * diag / (rows + cols)
        else:
            per_class = np.where(rows > 0, diag / rows, np.nan)
    present = ~np.isnan(per_class)
    objective = np.where(present, per_class, 0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    floor = -np.inf if rule.accuracy_floor is None else rule.accuracy_floor - _TOL
    return np.where(accuracy >= floor, _FEASIBLE + objective, accuracy), accuracy


def _candidates(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Values between consecutive change points (and beyond both ends); at most 256."""
    unique = np.unique(points[np.isfinite(points)])
    if len(unique) == 0:
        return np.zeros(1)
    inner = (unique[1:] + unique[:-1]) / 2
    values = np.concatenate([[unique[0] - 1.0], inner, [unique[-1] + 1.0]])
    if len(values) > _MAX_CANDIDATES:
        values = np.unique(np.quantile(values, np.linspace(0, 1, _MAX_CANDIDATES)))
    return values


def _tune_offsets(
    rule: MulticlassRule,
    y: NDArray[np.int64],
    p: NDArray[np.float64],
    prior: ArrayLike | None,
    model_prior: ArrayLike | None,
) -> NDArray[np.float64]:
    n = p.shape[1]
    score = _log(p)
    starts = [np.zeros(n)]
    if prior is not None:  # the accuracy and balanced corrections as starting points
        natural, learned = _priors(rule, n, prior, model_prior)
        starts += [np.log(natural) - np.log(learned), -np.log(learned)]
    best: tuple[float, float, NDArray[np.float64]] | None = None
    for start in starts:
        offsets, key, accuracy = _ascend_offsets(rule, y, score, start - start[0])
        if best is None or (key, accuracy) > best[:2]:
            best = (key, accuracy, offsets)
    assert best is not None
    if best[0] < _FEASIBLE:
        log.warning(
            "rule %s: no offsets reach accuracy >= %s on the tuning data (best %.3f); the "
            "decision keeps the most accurate offsets found",
            rule,
            rule.accuracy_floor,
            best[1],
        )
    return best[2]


def _ascend_offsets(
    rule: MulticlassRule, y: NDArray[np.int64], score: NDArray[np.float64], offsets: Any
) -> tuple[NDArray[np.float64], float, float]:
    n = score.shape[1]
    offsets = np.asarray(offsets, dtype=np.float64).copy()
    current = np.argmax(score + offsets, axis=1)[None]
    key, accuracy = (float(v[0]) for v in _offset_keys(rule, _confusions(y, current, n)))
    for _ in range(_MAX_PASSES):
        improved = False
        for c in range(1, n):  # class 0's offset stays 0: only differences matter
            others = score + offsets
            others[:, c] = -np.inf
            rival, rival_class = others.max(axis=1), others.argmax(axis=1)
            change = rival - score[:, c]  # item i is called c when offset_c > change_i
            values = _candidates(change)
            preds = np.where(values[:, None] > change[None, :], c, rival_class[None, :])
            keys, accs = _offset_keys(rule, _confusions(y, preds, n))
            pick = _pick(keys, accs, values, offsets[c])
            gain = keys[pick] - key if abs(keys[pick] - key) > _TOL else accs[pick] - accuracy
            if gain > _TOL:
                improved = True
            if gain >= -_TOL:
                offsets[c], key, accuracy = values[pick], float(keys[pick]), float(accs[pick])
        if not improved:
            break
    return offsets, key, accuracy


def _pick(
    keys: NDArray[np.float64], secondary: NDArray[np.float64], values: Any, current: float
) -> int:
    """The best key, then the best secondary, then the value nearest ``current``."""
    best = np.flatnonzero(keys >= keys.max() - _TOL)
    best = best[secondary[best] >= secondary[best].max() - _TOL]
    return int(best[np.argmin(np.abs(np.asarray(values)[best] - current))])


def quadratic_kappa_from_confusion(confusion: ArrayLike) -> NDArray[np.float64]:
    """Quadratic weighted kappa of confusion matrices ``(..., C, C)`` (rows true), the value of
    ``sklearn.metrics.cohen_kappa_score(weights="quadratic")``; vectorised for the search."""
    o = np.asarray(confusion, dtype=np.float64)
    n = o.shape[-1]
    grades = np.arange(n)
    weights = (grades[:, None] - grades[None, :]) ** 2 / max(n - 1, 1) ** 2
    total = o.sum(axis=(-2, -1), keepdims=True)
    expected = o.sum(axis=-1)[..., :, None] * o.sum(axis=-2)[..., None, :] / total[..., 0:1, :]
    observed_cost = (weights * o).sum(axis=(-2, -1))
    expected_cost = (weights * expected).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(1.0 - observed_cost / expected_cost, dtype=np.float64)


def _tune_cut_points(y: NDArray[np.int64], p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cut-points of the expected grade for the best quadratic kappa, from ``k + 0.5``."""
    n = p.shape[1]
    expected = _expected_grade(p)
    cuts = np.arange(n - 1, dtype=np.float64) + 0.5

    def kappa(rows: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.nan_to_num(quadratic_kappa_from_confusion(_confusions(y, rows, n)), nan=-1.0)

    current = float(kappa(_grades(expected, cuts)[None])[0])
    for _ in range(_MAX_PASSES):
        improved = False
        for k in range(n - 1):
            low = cuts[k - 1] if k > 0 else -np.inf
            high = cuts[k + 1] if k + 1 < n - 1 else np.inf
            inside = expected[(expected > low) & (expected < high)]
            values = _candidates(np.concatenate([inside, [cuts[k]]]))
            values = values[(values > low) & (values < high)]
            if len(values) == 0:
                continue
            rows = np.stack([_grades(expected, _with(cuts, k, v)) for v in values])
            keys = kappa(rows)
            pick = _pick(keys, np.zeros_like(keys), values, cuts[k])
            if keys[pick] > current + _TOL:
                improved = True
            if keys[pick] >= current - _TOL:
                cuts[k], current = values[pick], float(keys[pick])
        if not improved:
            break
    return cuts


def _with(cuts: NDArray[np.float64], k: int, value: float) -> NDArray[np.float64]:
    out = cuts.copy()
    out[k] = value
    return out
