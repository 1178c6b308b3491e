"""Public building block: operating points chosen on validation data only.

::

    from medbalance.thresholds import choose_decision, choose_threshold

    point = choose_threshold("sensitivity>=0.95", y_val == 1, p_val[:, 1], chosen_on="val")
    point.value, point.sensitivity, point.specificity
    decision = choose_decision("youden", y_val, p_val, class_names=["normal", "pneumonia"],
                               positive=1, train_counts=[1214, 3494])
    decision.decide(p_test)  # class indices

``choose_threshold(..., chosen_on="test")`` is refused: the test split never chooses anything.
The implementation lives in :mod:`medbalance.evaluation.thresholds` and
:mod:`medbalance.evaluation.decision`; this module is the stable public name.
"""

from __future__ import annotations

from medbalance.evaluation.decision import Decision, choose_decision, read_decision
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

__all__ = [
    "Decision",
    "MulticlassRule",
    "OperatingPoint",
    "Policy",
    "PolicyKind",
    "RuleKind",
    "adjust_probabilities",
    "apply_multiclass_rule",
    "choose_decision",
    "choose_threshold",
    "parse_multiclass_rule",
    "parse_policy",
    "read_decision",
]
