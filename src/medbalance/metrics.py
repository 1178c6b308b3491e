"""Public building block: clinical metrics from arrays, with bootstrap confidence intervals.

scikit-learn conventions: ``y_true`` first, then scores or predictions::

    from functools import partial
    from medbalance.metrics import binary_metrics, bootstrap_ci, with_ci

    at = partial(binary_metrics, threshold=0.42)
    point = at(y_true, p_positive)  # auroc, sensitivity, specificity, ppv, npv, ...
    cis = bootstrap_ci(at, y_true, p_positive, n_resamples=1000, seed=0)
    with_ci(point, cis)  # {"auroc": {"value": ..., "ci": [low, high]}, ...}

The implementation lives in :mod:`medbalance.evaluation.metrics` and
:mod:`medbalance.evaluation.bootstrap`; this module is the stable public name.
"""

from __future__ import annotations

from medbalance.evaluation.bootstrap import bootstrap_ci, paired_bootstrap, with_ci
from medbalance.evaluation.metrics import (
    BINARY_KEYS,
    MULTICLASS_KEYS,
    SELECT_METRICS,
    binary_metrics,
    classification_metrics,
    expected_calibration_error,
    multiclass_metrics,
    npv_per_class,
    per_class_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    specificity_per_class,
)

__all__ = [
    "BINARY_KEYS",
    "MULTICLASS_KEYS",
    "SELECT_METRICS",
    "binary_metrics",
    "bootstrap_ci",
    "classification_metrics",
    "expected_calibration_error",
    "multiclass_metrics",
    "npv_per_class",
    "paired_bootstrap",
    "per_class_metrics",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "specificity_per_class",
    "with_ci",
]
