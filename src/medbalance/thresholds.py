"""Public building block: operating points chosen on validation data only.

::

    from medbalance.thresholds import choose_decision, choose_threshold

    point = choose_threshold("sensitivity>=0.95", y_val == 1, p_val[:, 1], chosen_on="val")
    point.value, point.sensitivity, point.specificity
    decision = choose_decision("youden", y_val, p_val, class_names=["normal", "pneumonia"],
                               positive=1, train_counts=[1214, 3494])
    decision.decide(p_test)  # class indices

Multi-class rules on arrays, the same ones a run's ``Decision`` applies::

    from medbalance.thresholds import decide, tune_rule

    decide(p_test, "balanced", prior=train_counts, model_prior=learned)  # class indices
    offsets = tune_rule("offsets:macro-f1,accuracy>=0.8", y_val, p_val, prior=train_counts)
    decide(p_test, "offsets:macro-f1,accuracy>=0.8", tuned=offsets)
    decide(p_test, "cost:0,1,1;5,0,1;5,1,0", prior=train_counts)    # rows: true class
    cuts = tune_rule("expected-grade", y_val, p_val)                 # ordinal grades
    decide(p_test, "expected-grade", tuned=cuts)

``choose_threshold(..., chosen_on="test")`` is refused: the test split never chooses anything.
The implementation lives in :mod:`medbalance.evaluation.thresholds`,
:mod:`medbalance.evaluation.multiclass_rules` and :mod:`medbalance.evaluation.decision`;
this module is the stable public name.
"""

from __future__ import annotations

from medbalance.evaluation.decision import Decision, choose_decision, read_decision
from medbalance.evaluation.multiclass_rules import RULE_FORMS, decide, tune_rule
from medbalance.evaluation.thresholds import (
    POLICY_FORMS,
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
    "POLICY_FORMS",
    "RULE_FORMS",
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
    "decide",
    "parse_multiclass_rule",
    "parse_policy",
    "read_decision",
    "tune_rule",
]
