"""The operating point of a trained model as one frozen :class:`Decision`.

A decision is a binary threshold on the positive class's probability, or a multi-class rule
(:mod:`medbalance.evaluation.multiclass_rules`) with the training class counts, the model's prior
and the tuned values (offsets, grade cut-points) it needs. It is
chosen from a policy on validation data only (:func:`choose_decision`), written into the
checkpoint metadata once (:meth:`Decision.to_record`, under the key ``threshold``), read back by
one function (:func:`read_decision`) and applied by one :meth:`Decision.decide`, which
``evaluate``, ``predict`` and the export sidecar all use.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medbalance.evaluation.multiclass_rules import (
    RULE_FORMS,
    MulticlassRule,
    RuleKind,
    apply_multiclass_rule,
    parse_multiclass_rule,
    tune_rule,
)
from medbalance.evaluation.thresholds import choose_threshold, parse_policy

__all__ = [
    "AUTO_POLICY", "BINARY_DEFAULT", "METADATA_KEY", "MULTICLASS_DEFAULT", "ORDINAL_DEFAULT",
    "Decision", "choose_decision", "policy_for_task", "read_decision",
]  # fmt: skip

log = logging.getLogger(__name__)
METADATA_KEY = "threshold"  # where the checkpoint metadata keeps the decision record
BINARY_DEFAULT = "youden"  # every run's default policy; with more classes it stands for:
# The multi-class rule when the policy is a binary one (the default youden, itself the binary
# rule for the best balanced accuracy on val). Chosen by benchmark on two data sets (RESULTS.md,
# "The multi-class default on two data sets"), means over 3 seeds of an oversampled model,
# accuracy / balanced accuracy: on chest_xray_mini_3class argmax 0.764 / 0.608, prior 0.743 /
# 0.705, offsets:balanced 0.743 / 0.659; on the synthetic 5-grade set (plain softmax head) argmax
# 0.575 / 0.441, prior 0.466 / 0.389 (it divides by the natural prior a second time),
# offsets:balanced 0.707 / 0.572. Only the offsets tuned on val beat argmax on balanced accuracy
# on both and never lost much accuracy; the report shows accuracy beside argmax's.
MULTICLASS_DEFAULT = "offsets:balanced"
ORDINAL_DEFAULT = "expected-grade"  # the same for ordinal (graded) tasks
AUTO_POLICY = "auto"  # a run's default: the task's policy above, once its classes are known
_TUNED_KEYS = {RuleKind.OFFSETS: "offsets", RuleKind.EXPECTED_GRADE: "cut_points"}


@dataclass(frozen=True)
class Decision:
    """How a model's probabilities become one class per image.

    Attributes:
        class_names: the model's classes, in output order.
        policy: the policy that chose it (binary: ``youden``, ``f1``, ...; multi-class: the rule).
        chosen_on: the split it was tuned on; never ``test``.
        threshold: binary only: call the positive class when its probability is at least this
            (``inf``: never); ``None`` means argmax.
        positive: binary only: index of the positive class.
        train_counts: multi-class ``prior`` / ``logit-adjust`` rules: training counts per class.
        val_rates: binary: (sensitivity, specificity) at the threshold on the tuning split.
        tta: test-time augmentation views the probabilities were averaged over when the
            decision was chosen; ``predict`` and ``evaluate`` use as many (1: none).
        model_prior: multi-class: the class prior the model's outputs are calibrated to
            (``accuracy`` and ``balanced`` correct from it).
        ordinal: the classes are ordered grades (class order = grade order).
        tuned: a tuned rule's values, chosen on the tuning split: per-class log-probability
            offsets (``offsets:...``) or the expected grade's cut-points (``expected-grade``).
        guarantee: binary ``sensitivity>=X`` / ``specificity>=X`` only: the confidence level
            at which the constrained rate's lower bound on the tuning split meets ``X``.
        lower_bound: with ``guarantee``: that one-sided lower Clopper–Pearson bound (the point
            estimate is in ``val_rates``).
    """

    class_names: tuple[str, ...]
    policy: str
    chosen_on: str = "val"
    threshold: float | None = None
    positive: int | None = None
    train_counts: tuple[int, ...] | None = None
    val_rates: tuple[float, float] | None = None
    tta: int = 1
    model_prior: tuple[float, ...] | None = None
    ordinal: bool = False
    tuned: tuple[float, ...] | None = None
    guarantee: float | None = None
    lower_bound: float | None = None

    def __post_init__(self) -> None:
        if self.chosen_on == "test":
            raise ValueError("a decision is never chosen on the test split; use val")
        if (self.guarantee is None) != (self.lower_bound is None) or (
            self.guarantee is not None and self.threshold is None
        ):
            raise ValueError(
                f"guarantee={self.guarantee!r} with lower_bound={self.lower_bound!r}: a "
                "guarantee belongs to a binary threshold and comes with the bound it reached; "
                "re-choose it (medbalance evaluate RUN --threshold POLICY --guarantee LEVEL)"
            )
        if self.threshold is not None:
            if len(self.class_names) != 2 or self.positive not in (0, 1):
                raise ValueError("a threshold needs two classes and a positive class (0 or 1)")
            value = self.threshold
            if math.isnan(value) or not (0 <= value <= 1 or value == math.inf):
                raise ValueError(
                    f"the decision threshold must be a probability in [0, 1] or inf, got {value!r}"
                    "; re-choose it on the validation split (medbalance evaluate RUN --threshold)"
                )
        elif len(self.class_names) > 2:
            rule = parse_multiclass_rule(self.policy)
            needs_counts = rule.kind not in (RuleKind.ARGMAX, RuleKind.COST) and not rule.ordinal
            if needs_counts and not self.train_counts:
                raise ValueError(f"the rule {self.policy!r} needs the training class counts")
            expected = _tuned_length(rule, len(self.class_names))
            if (self.tuned is None) != (expected is None) or (
                self.tuned is not None and len(self.tuned) != expected
            ):
                raise ValueError(
                    f"the rule {self.policy!r} needs {expected or 'no'} tuned values, got "
                    f"{self.tuned!r}; re-choose it on the validation split "
                    "(medbalance evaluate RUN --threshold RULE)"
                )

    def decide(self, probs: ArrayLike) -> NDArray[np.int64]:
        """The class index of every row of ``probs`` (``[N, C]``; one row ``[C]`` allowed)."""
        p = np.asarray(probs)  # compared in its own dtype, as binary_metrics does
        rows = p[None] if p.ndim == 1 else p
        if rows.ndim != 2 or rows.shape[1] != len(self.class_names):
            raise ValueError(
                f"probabilities of shape {p.shape} do not match {len(self.class_names)} classes"
            )
        if self.threshold is not None and self.positive is not None:
            called = rows[:, self.positive] >= float(self.threshold)
            out = np.where(called, self.positive, 1 - self.positive).astype(np.int64)
        elif len(self.class_names) > 2 and self.policy != "argmax":
            out = apply_multiclass_rule(
                self.policy, rows, self.train_counts, self.model_prior, self.tuned
            )
        else:
            out = rows.argmax(axis=1).astype(np.int64)
        return out[0:1] if p.ndim == 1 else out

    def describe(self) -> str:
        """The rule in words (the export sidecar's ``decision``)."""
        if self.threshold is None:
            if self.policy == "argmax" or len(self.class_names) == 2:
                return "argmax of probabilities"
            return _describe_rule(parse_multiclass_rule(self.policy))
        assert self.positive is not None  # checked in __post_init__
        name = self.class_names[self.positive]
        if self.threshold == math.inf:
            return f"never {name!r}: threshold is inf, so every image gets the other class"
        return (
            f"{name!r} where probabilities[:, {self.positive}] >= threshold, "
            "else the most probable other class"
        )

    def to_record(self) -> dict[str, Any]:
        """The record stored in the checkpoint and in ``metrics.json`` (format unchanged since
        the first checkpoints: binary ``policy, value, chosen_on, sensitivity, specificity``;
        multi-class ``policy, value (null), chosen_on, train_counts``)."""
        tta = {"tta": self.tta} if self.tta > 1 else {}  # absent: the format of old records
        if self.threshold is not None:
            sens, spec = self.val_rates if self.val_rates is not None else (math.nan, math.nan)
            guaranteed: dict[str, Any] = {}  # absent without one: old records' format
            if self.guarantee is not None:
                kind = parse_policy(self.policy).kind
                guaranteed["guarantee"] = {
                    "level": self.guarantee,
                    "lower_bound": self.lower_bound,
                    "estimate": sens if kind == "sensitivity" else spec,
                }
            return {
                "policy": self.policy,
                "value": self.threshold,
                "chosen_on": self.chosen_on,
                "sensitivity": sens,
                "specificity": spec,
                **guaranteed,
                **tta,
            }
        counts = list(self.train_counts) if self.train_counts is not None else None
        prior = {"model_prior": list(self.model_prior)} if self.model_prior is not None else {}
        tuned = {}
        if self.tuned is not None:
            tuned[_TUNED_KEYS[parse_multiclass_rule(self.policy).kind]] = list(self.tuned)
        return {
            "policy": self.policy,
            "value": None,
            "chosen_on": self.chosen_on,
            "train_counts": counts,
            **prior,
            **tuned,
            **({"ordinal": True} if self.ordinal else {}),
            **tta,
        }


_RULE_WORDS = {
    RuleKind.OFFSETS: "argmax of log(probabilities) + operating_point['offsets'] (one offset "
    "per class, tuned on the validation or out-of-fold data for {objective})",
    RuleKind.COST: "the class of least expected cost: argmin over calls j of sum_i q_i * "
    "cost[i][j] (rows true class, columns call: {policy}), q = the probabilities moved to the "
    "training class priors as the 'accuracy' rule does",
    RuleKind.EXPECTED_GRADE: "grades in class order: the expected grade sum_k k * p_k, cut at "
    "operating_point['cut_points'] (grade k where cut[k-1] < expected <= cut[k]), tuned for "
    "quadratic weighted kappa",
    RuleKind.MEDIAN_GRADE: "grades in class order: the median grade, the first k whose "
    "cumulative probability reaches 0.5",
}


def _describe_rule(rule: MulticlassRule) -> str:
    words = _RULE_WORDS.get(rule.kind)
    if words is not None:
        floor = "" if rule.accuracy_floor is None else f" with accuracy >= {rule.accuracy_floor}"
        return words.format(objective=f"{rule.objective}{floor}", policy=rule)
    return (
        f"argmax of probabilities adjusted by the multi-class rule {str(rule)!r}: "
        "'prior' divides them by the training class priors (operating_point"
        "['train_counts'] over their sum), 'logit-adjust:TAU' subtracts TAU * log prior "
        "from their logarithms, 'balanced' divides them by the prior the model learned "
        "(operating_point['model_prior']), 'accuracy' multiplies them by the training "
        "priors over that"
    )


def _tuned_length(rule: MulticlassRule, n_classes: int) -> int | None:
    if rule.kind is RuleKind.OFFSETS:
        return n_classes
    if rule.kind is RuleKind.EXPECTED_GRADE:
        return n_classes - 1
    return None


def choose_decision(
    policy: str,
    labels: ArrayLike,
    probs: ArrayLike,
    *,
    class_names: Sequence[str],
    positive: int | None,
    train_counts: Sequence[int],
    chosen_on: str = "val",
    tta: int = 1,
    model_prior: Sequence[float] | None = None,
    ordinal: bool = False,
    guarantee: float | None = None,
) -> Decision:
    """Choose the decision from ``policy`` on tuning data (validation or out-of-fold).

    ``auto`` is the task's default (:func:`policy_for_task`). A binary policy on multi-class data
    falls back to the default rule (``offsets:balanced``; for ordinal tasks ``expected-grade``),
    with a warning; a multi-class rule on binary data is an error
    (``TrainConfig`` and ``prepare_run`` refuse it before training). Tuned rules (``offsets``,
    ``expected-grade``) find their values on these data. ``guarantee`` (binary
    ``sensitivity>=X`` / ``specificity>=X`` only) bounds the constrained rate at that
    confidence (:func:`~medbalance.evaluation.thresholds.choose_threshold`).
    """
    if chosen_on == "test":
        raise ValueError("thresholds are chosen on validation data only, not on 'test'")
    names = tuple(str(n) for n in class_names)
    y, p = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    counts = tuple(int(c) for c in train_counts)
    policy = policy_for_task(policy, len(names), ordinal=ordinal)
    if guarantee is not None and len(names) != 2:
        raise ValueError(
            f"guarantee={guarantee!r} bounds a binary sensitivity or specificity; these data "
            f"have {len(names)} classes; drop the guarantee"
        )
    if len(names) == 2:
        if positive is None:
            raise ValueError("a binary decision needs the positive class")
        point = choose_threshold(
            policy, y == positive, p[:, positive], chosen_on=chosen_on, guarantee=guarantee
        )
        return Decision(
            names,
            point.policy,
            chosen_on,
            threshold=float(point.value),
            positive=positive,
            val_rates=(point.sensitivity, point.specificity),
            tta=tta,
            guarantee=point.guarantee,
            lower_bound=point.lower_bound,
        )
    rule = parse_multiclass_rule(policy)
    if rule.ordinal and not ordinal:
        log.warning(
            "rule %s reads the classes as grades in the order %s; train with --ordinal "
            "(and --class-order) when they are grades",
            rule,
            ", ".join(names),
        )
    prior = tuple(float(v) for v in model_prior) if model_prior is not None else None
    tuned = tune_rule(
        rule, y, p, prior=counts if min(counts, default=0) > 0 else None, model_prior=prior
    )
    return Decision(
        names,
        str(rule),
        chosen_on,
        train_counts=counts,
        tta=tta,
        model_prior=prior,
        ordinal=ordinal,
        tuned=tuned,
    )


def policy_for_task(policy: str, n_classes: int, *, ordinal: bool) -> str:
    """The policy a task of ``n_classes`` decides by: ``auto`` is :data:`BINARY_DEFAULT` for
    two classes, :data:`ORDINAL_DEFAULT` for grades and :data:`MULTICLASS_DEFAULT` otherwise; a
    binary policy given for more classes falls back to that default, with a warning."""
    if policy == AUTO_POLICY:
        default = BINARY_DEFAULT
    elif n_classes == 2 or is_multiclass_rule(policy):
        return policy
    else:
        default = None
    if n_classes > 2:
        task = ORDINAL_DEFAULT if ordinal else MULTICLASS_DEFAULT
        if default is None:
            log.warning(
                "threshold policy %r needs two classes; with %d classes the decision is %s "
                "(or give --threshold with a multi-class rule: %s)",
                policy, n_classes, task, " | ".join(RULE_FORMS),
            )  # fmt: skip
        return task
    return default or policy


def is_multiclass_rule(policy: str) -> bool:
    """Whether ``policy`` is a multi-class rule (:mod:`~medbalance.evaluation.multiclass_rules`)."""
    try:
        parse_multiclass_rule(policy)
    except ValueError:
        return False
    return True


def is_binary_policy(policy: str) -> bool:
    """Whether ``policy`` is a binary threshold policy (youden, f1, a number, ...)."""
    try:
        parse_policy(policy)
    except ValueError:
        return False
    return True


def read_decision(metadata: Mapping[str, Any]) -> Decision:
    """The decision stored in a checkpoint's metadata.

    A checkpoint without one (older runs) decides by argmax; a bare number is a threshold.

    Raises:
        ValueError: the stored record is not a valid decision.
    """
    names = tuple(str(n) for n in metadata["class_names"])
    positive_name = metadata.get("positive_class")
    positive = names.index(positive_name) if len(names) == 2 and positive_name in names else None
    raw = metadata.get(METADATA_KEY)
    record: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {"value": raw}
    value = record.get("value")
    policy = str(record.get("policy", "argmax" if value is None else "fixed"))
    chosen_on = str(record.get("chosen_on", "val"))
    tta = int(record.get("tta", 1) or 1)
    if value is not None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not (0 <= value <= 1 or value == math.inf):
            raise ValueError(
                f"checkpoint threshold must be a probability in [0, 1], inf or absent, got "
                f"{raw!r}; re-tune the threshold on the validation split"
            )
        sens, spec = record.get("sensitivity"), record.get("specificity")
        val_rates = (float(sens), float(spec)) if sens is not None and spec is not None else None
        guaranteed = record.get("guarantee")  # absent in records older than the option
        level, bound = (
            (float(guaranteed["level"]), float(guaranteed["lower_bound"]))
            if isinstance(guaranteed, Mapping)
            else (None, None)
        )
        return Decision(
            names,
            policy,
            chosen_on,
            threshold=float(value),
            positive=positive,
            val_rates=val_rates,
            tta=tta,
            guarantee=level,
            lower_bound=bound,
        )
    counts = record.get("train_counts") or metadata.get("train_counts")
    if len(names) == 2:
        policy = "argmax"
    prior = record.get("model_prior") or metadata.get("model_prior")
    tuned = record.get("offsets", record.get("cut_points"))
    return Decision(
        names,
        policy,
        chosen_on,
        positive=positive,
        train_counts=tuple(int(c) for c in counts) if counts else None,
        tta=tta,
        model_prior=tuple(float(v) for v in prior) if prior else None,
        ordinal=bool(record.get("ordinal", metadata.get("ordinal", False))),
        tuned=tuple(float(v) for v in tuned) if tuned is not None and len(names) > 2 else None,
    )
