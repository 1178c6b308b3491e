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

A guaranteed constraint and another site (issue 24)::

    choose_threshold("sensitivity>=0.9", y_val == 1, p_val[:, 1], guarantee=0.95)
    cases_needed(0.9, 0.95)                   # 29 tuning positives at least
    cal = fit_calibration(y_val, p_val, train_counts=counts, model_prior=learned)
    cal.apply(p_test)                         # calibrated probabilities
    estimate_prior(cal.for_prevalence.apply(p_site), cal.for_prevalence.tuning_prior)
    at_prior(y_test, calls, [0.95, 0.05], ["normal", "pneumonia"], positive=1)  # PPV, NPV

``choose_threshold(..., chosen_on="test")`` is refused: the test split never chooses anything.
The implementation lives in :mod:`medbalance.evaluation.thresholds`,
:mod:`medbalance.evaluation.multiclass_rules` and :mod:`medbalance.evaluation.decision`;
this module is the stable public name.
"""

from __future__ import annotations

from medbalance.evaluation.calibration import Calibration, calibration_metrics, fit_calibration
from medbalance.evaluation.decision import Decision, choose_decision, read_decision
from medbalance.evaluation.guarantee import cases_needed, lower_bound
from medbalance.evaluation.multiclass_rules import RULE_FORMS, decide, tune_rule
from medbalance.evaluation.prevalence import at_prior, estimate_prior, shift_probabilities
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
    "Calibration",
    "Decision",
    "MulticlassRule",
    "OperatingPoint",
    "Policy",
    "PolicyKind",
    "RuleKind",
    "adjust_probabilities",
    "apply_multiclass_rule",
    "at_prior",
    "calibration_metrics",
    "cases_needed",
    "choose_decision",
    "choose_threshold",
    "decide",
    "estimate_prior",
    "fit_calibration",
    "lower_bound",
    "parse_multiclass_rule",
    "parse_policy",
    "read_decision",
    "shift_probabilities",
    "tune_rule",
]
