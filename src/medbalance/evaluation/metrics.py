"""Classification metrics for imbalanced data, from scikit-learn where it has them.

Written here only what scikit-learn lacks: specificity and negative predictive value (NPV) per
class, sensitivity at a fixed specificity and the reverse, and the expected calibration error.
Everything else (confusion matrix, accuracy, balanced accuracy, precision = PPV, recall =
sensitivity, F1, MCC, Cohen's kappa, AUROC, average precision, Brier score) is scikit-learn's.

Conventions:

- Binary tasks take the positive-class probability ``score`` and a ``threshold``; an item is
  predicted positive when ``score >= threshold`` (the rule of :func:`sklearn.metrics.roc_curve`,
  and of :mod:`medbalance.evaluation.thresholds`). A threshold of ``inf`` calls every item negative.
- Multi-class tasks take probabilities ``(N, C)`` (rows sum to 1 within 1e-4 and are
  renormalised to absorb float32 rounding) and the predicted classes, which may come from a
  decision rule other than argmax (see
  :func:`medbalance.evaluation.thresholds.apply_multiclass_rule`).
- An undefined value is NaN, never 0 and never an exception: PPV with no predicted positive,
  AUROC with one class present, MCC when a row or column of the confusion matrix is empty
  (scikit-learn returns 0 there; we report NaN), and any macro average over ``C`` classes of a
  per-class value when a class has no items (macro F1 alone follows scikit-learn's
  ``zero_division=nan`` and averages the classes where F1 is defined).
- Expected calibration error (ECE) uses ``n_bins`` equal-width bins over [0, 1] (default 15,
  Guo et al. 2017), right-closed, ``(k/n, (k+1)/n]``, with 0 in the first bin:
  ``ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|``. For a 1-D positive-class
  probability, ``confidence`` is that probability and ``accuracy`` the fraction of positives
  (calibration of the risk a clinician reads); for ``(N, C)`` probabilities it is top-label:
  confidence ``max_c p_c`` and accuracy whether ``argmax_c p_c`` is the true class.
- Brier score: binary, ``mean((score - y)^2)``; multi-class,
  ``mean over items of sum over classes of (p_c - [y = c])^2`` (so a binary task scored as two
  columns gives twice the binary value).

Confidence intervals, and the same metric sets vectorised over bootstrap resamples, are in
:mod:`medbalance.evaluation.bootstrap`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from medbalance.evaluation._metric_inputs import (
    Floats,
    binary_inputs,
    check_threshold,
    class_indices,
    ece,
    ece_bins,
    multiclass_inputs,
    one_vs_rest,
    prediction_inputs,
    ratio,
)

__all__ = [
    "BINARY_KEYS",
    "MULTICLASS_KEYS",
    "ORDINAL_KEYS",
    "SELECT_METRICS",
    "binary_metrics",
    "classification_metrics",
    "expected_calibration_error",
    "multiclass_metrics",
    "npv_per_class",
    "per_class_metrics",
    "per_class_table",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "specificity_per_class",
]

SELECT_METRICS = ("auroc", "balanced_accuracy", "macro_f1", "sensitivity", "loss")
BINARY_KEYS = (
    "auroc", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv",
    "f1", "accuracy", "mcc", "average_precision", "brier", "ece",
)  # fmt: skip
MULTICLASS_KEYS = (
    "auroc", "weighted_auroc", "balanced_accuracy", "accuracy", "macro_f1", "mcc", "kappa",
    "average_precision", "brier", "ece", "sensitivity", "specificity",
)  # fmt: skip
# added to MULTICLASS_KEYS for ordered grades (``ordinal=True``); errors are in grade steps
ORDINAL_KEYS = ("quadratic_kappa", "mean_abs_error", "within_one_accuracy")

MetricFn = Callable[..., dict[str, float]]

_NAN = math.nan
_RATE_TOL = 1e-12  # float slack when comparing a rate k/n with a target such as 0.95


# --- written here: what scikit-learn lacks --------------------------------------------------


def specificity_per_class(confusion: np.ndarray) -> np.ndarray:
    """Specificity of each class, one-vs-rest: TN / (TN + FP), from a confusion matrix.

    ``confusion[i, j]`` counts items of true class ``i`` predicted as ``j``; a stack of matrices
    ``(..., C, C)`` gives ``(..., C)``. A class with no negatives has specificity NaN.
    """
    _, false_pos, _, true_neg = one_vs_rest(confusion)
    return ratio(true_neg, true_neg + false_pos)


def npv_per_class(confusion: np.ndarray) -> np.ndarray:
    """Negative predictive value of each class, one-vs-rest: TN / (TN + FN).

    Same layout as :func:`specificity_per_class`. A class predicted for every item (no
    predicted negatives) has NPV NaN.
    """
    _, _, false_neg, true_neg = one_vs_rest(confusion)
    return ratio(true_neg, true_neg + false_neg)


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, *, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width bins (see the module docstring).

    Args:
        y_true: true class per item (0/1 for a 1-D ``probs``).
        probs: positive-class probability ``(N,)`` (calibration of that probability), or class
            probabilities ``(N, C)`` (top-label calibration).
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        The ECE, between 0 (calibrated) and 1.
    """
    probs = np.asarray(probs)
    if probs.ndim == 1:
        y, score = binary_inputs(y_true, probs)
        bins, residual = ece_bins(score, n_bins), y - score
    else:
        labels, p = multiclass_inputs(y_true, probs)
        confidence = p.max(axis=1)
        hit = (p.argmax(axis=1) == labels).astype(np.float64)
        bins, residual = ece_bins(confidence, n_bins), hit - confidence
    return float(ece(np.ones((1, len(residual))), bins, residual, n_bins)[0])


def _roc(y_true: ArrayLike, score: ArrayLike) -> tuple[Floats, Floats] | None:
    from sklearn.metrics import roc_curve

    y, s = binary_inputs(y_true, score)
    if y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def _check_rate(value: float, name: str) -> float:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} is invalid: a rate lies in [0, 1]")
    return float(value)


def sensitivity_at_specificity(y_true: ArrayLike, score: ArrayLike, specificity: float) -> float:
    """Sensitivity of the ROC curve at a given specificity, interpolated linearly.

    The ROC curve is scikit-learn's ``roc_curve`` (every distinct score a threshold) joined by
    straight segments, the curve whose area is the AUROC. At false-positive rate
    ``f = 1 - specificity`` the sensitivity is the top of the curve there: the largest
    sensitivity among the points with FPR <= f, moved along the next segment to FPR = f. On
    the usual staircase that is the sensitivity of the best threshold whose specificity is at
    least the target; only across tied positive and negative scores (a diagonal segment) does
    it interpolate, which a randomised tie-break achieves.

    Returns:
        The sensitivity, or NaN when ``y_true`` holds one class only.
    """
    target = 1.0 - _check_rate(specificity, "specificity")
    roc = _roc(y_true, score)
    if roc is None:
        return _NAN
    fpr, tpr = roc
    i = int(np.searchsorted(fpr, target + _RATE_TOL, side="right")) - 1
    if fpr[i] >= target - _RATE_TOL or i == len(fpr) - 1:
        return float(tpr[i])
    step = (target - fpr[i]) / (fpr[i + 1] - fpr[i])
    return float(tpr[i] + step * (tpr[i + 1] - tpr[i]))


def specificity_at_sensitivity(y_true: ArrayLike, score: ArrayLike, sensitivity: float) -> float:
    """Specificity of the ROC curve at a given sensitivity, interpolated linearly.

    The mirror of :func:`sensitivity_at_specificity`: the smallest false-positive rate at which
    the curve reaches the target sensitivity (the first point with TPR >= target, or the point
    on the segment leading to it), returned as ``1 - FPR``.

    Returns:
        The specificity, or NaN when ``y_true`` holds one class only.
    """
    target = _check_rate(sensitivity, "sensitivity")
    roc = _roc(y_true, score)
    if roc is None:
        return _NAN
    fpr, tpr = roc
    i = int(np.searchsorted(tpr, target - _RATE_TOL, side="left"))
    if tpr[i] <= target + _RATE_TOL or i == 0:
        return float(1.0 - fpr[i])
    step = (target - tpr[i - 1]) / (tpr[i] - tpr[i - 1])
    return float(1.0 - (fpr[i - 1] + step * (fpr[i] - fpr[i - 1])))


# --- metric sets (scikit-learn) -------------------------------------------------------------


def binary_metrics(
    y_true: ArrayLike, score: ArrayLike, threshold: float, *, n_bins: int = 15
) -> dict[str, float]:
    """The binary metric set at one operating point.

    Args:
        y_true: 1 for positive (diseased), 0 for negative.
        score: positive-class probability per item.
        threshold: an item is predicted positive when ``score >= threshold``.
        n_bins: ECE bins.

    Returns:
        ``auroc``, ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``,
        ``f1``, ``accuracy``, ``mcc``, ``average_precision``, ``brier``, ``ece``; NaN where
        undefined (module docstring).
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        matthews_corrcoef,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y, s = binary_inputs(y_true, score)
    pred = (s >= check_threshold(threshold)).astype(np.float64)
    confusion = confusion_matrix(y, pred, labels=[0, 1])
    (tn, fp), (fn, tp) = confusion
    ppv, sens, f1, _ = precision_recall_fscore_support(
        y, pred, labels=[1], average=None, zero_division=np.nan
    )
    both = tp + fn > 0 and tn + fp > 0
    margins_ok = min(tp + fp, tp + fn, tn + fp, tn + fn) > 0
    return {
        "auroc": float(roc_auc_score(y, s)) if both else _NAN,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else _NAN,
        "sensitivity": float(sens[0]),
        "specificity": float(specificity_per_class(confusion)[1]),
        "ppv": float(ppv[0]),
        "npv": float(npv_per_class(confusion)[1]),
        "f1": float(f1[0]),
        "accuracy": float(accuracy_score(y, pred)),
        "mcc": float(matthews_corrcoef(y, pred)) if margins_ok else _NAN,
        "average_precision": float(average_precision_score(y, s)) if tp + fn > 0 else _NAN,
        "brier": float(brier_score_loss(y, s, labels=[0, 1])),
        "ece": expected_calibration_error(y, s, n_bins=n_bins),
    }


def multiclass_metrics(
    labels: ArrayLike,
    probs: ArrayLike,
    preds: ArrayLike,
    *,
    ordinal: bool = False,
    n_bins: int = 15,
) -> dict[str, float]:
    """The multi-class metric set.

    Args:
        labels: true class index per item.
        probs: class probabilities ``(N, C)``; used by AUROC, average precision, Brier and ECE.
        preds: predicted class per item (argmax or another decision rule); used by the rest.
        ordinal: classes are ordered grades (class index = grade): also the ordinal metrics.
        n_bins: ECE bins (top-label).

    Returns:
        ``auroc`` and ``average_precision`` (one-vs-rest, macro), ``weighted_auroc``
        (one-vs-rest, weighted by each class's support), ``balanced_accuracy``, ``accuracy``,
        ``macro_f1``, ``mcc``, ``kappa`` (Cohen's, unweighted), ``brier``, ``ece``, and macro
        ``sensitivity`` and ``specificity`` (:data:`MULTICLASS_KEYS`). With ``ordinal`` also
        ``quadratic_kappa`` (Cohen's kappa with quadratic weights), ``mean_abs_error`` (mean
        ``|predicted grade - true grade|``, in grade steps) and ``within_one_accuracy`` (the
        share of items with ``|error| <= 1``) (:data:`ORDINAL_KEYS`).
    """
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        brier_score_loss,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        recall_score,
        roc_auc_score,
    )

    y, p = multiclass_inputs(labels, probs)
    n_classes = p.shape[1]
    pred = class_indices(preds, n_classes, "preds")
    if len(pred) != len(y):
        raise ValueError(f"preds has {len(pred)} items but labels has {len(y)}")
    classes = list(range(n_classes))
    confusion = confusion_matrix(y, pred, labels=classes)
    all_present = bool((confusion.sum(axis=1) > 0).all())
    onehot = np.eye(n_classes)[y]
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    # MCC is 0/0 when every item has one true class or one predicted class
    mcc_defined = len(y) ** 2 > max(true_counts @ true_counts, pred_counts @ pred_counts)
    with warnings.catch_warnings():  # kappa with one shared label: NaN by replace_undefined_by
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(y, pred, labels=classes)
        quadratic = (
            cohen_kappa_score(y, pred, labels=classes, weights="quadratic") if ordinal else _NAN
        )
    out = {
        "auroc": float(roc_auc_score(onehot, p, average="macro")) if all_present else _NAN,
        "weighted_auroc": (
            float(roc_auc_score(onehot, p, average="weighted")) if all_present else _NAN
        ),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if all_present else _NAN,
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=np.nan)),
        "mcc": float(matthews_corrcoef(y, pred)) if mcc_defined else _NAN,
        "kappa": float(kappa),
        "average_precision": (
            float(average_precision_score(onehot, p, average="macro")) if all_present else _NAN
        ),
        "brier": float(brier_score_loss(y, p, labels=classes, scale_by_half=False)),
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
        "sensitivity": (
            float(recall_score(y, pred, labels=classes, average="macro")) if all_present else _NAN
        ),
        "specificity": float(np.mean(specificity_per_class(confusion))),
    }
    if ordinal:
        from sklearn.metrics import mean_absolute_error

        out["quadratic_kappa"] = float(quadratic)
        out["mean_abs_error"] = float(mean_absolute_error(y, pred))
        out["within_one_accuracy"] = float(np.mean(np.abs(pred - y) <= 1))
    return out


def per_class_metrics(
    labels: ArrayLike, preds: ArrayLike, n_classes: int
) -> list[dict[str, float]]:
    """One-vs-rest metrics of each class.

    Returns:
        One dict per class, in class order: ``sensitivity``, ``specificity``, ``ppv``,
        ``npv``, ``f1`` (NaN where undefined) and ``support`` (items of that class).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y, pred = prediction_inputs(labels, preds, n_classes)
    classes = list(range(n_classes))
    ppv, sens, f1, support = precision_recall_fscore_support(
        y, pred, labels=classes, average=None, zero_division=np.nan
    )
    confusion = confusion_matrix(y, pred, labels=classes)
    spec, npv = specificity_per_class(confusion), npv_per_class(confusion)
    return [
        {
            "sensitivity": float(sens[c]),
            "specificity": float(spec[c]),
            "ppv": float(ppv[c]),
            "npv": float(npv[c]),
            "f1": float(f1[c]),
            "support": float(support[c]),
        }
        for c in classes
    ]


def per_class_table(labels: ArrayLike, preds: ArrayLike, n_classes: int) -> dict[str, float]:
    """:func:`per_class_metrics` as one flat dict, ``{"sensitivity/0": ..., "support/2": ...}``:
    the form :func:`~medbalance.evaluation.bootstrap.bootstrap_ci` takes (vectorised there)."""
    rows = per_class_metrics(labels, preds, n_classes)
    return {f"{key}/{c}": value for c, row in enumerate(rows) for key, value in row.items()}


def _auroc(labels: np.ndarray, probs: np.ndarray, positive: int) -> float:
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if len(present) < 2:
        return math.nan
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == positive, probs[:, positive]))
    if len(present) < probs.shape[1]:
        return math.nan
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def classification_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    positive: int | None = None,
    predictions: np.ndarray | None = None,
) -> dict[str, float]:
    """The per-epoch metrics: balanced accuracy, AUROC, macro F1, sensitivity and specificity.

    Args:
        labels: true class per item.
        probs: class probabilities per item, ``(N, C)``.
        class_names: names, used in the per-class keys (``sensitivity/PNEUMONIA``).
        positive: the positive class of a binary task (default: the last class).
        predictions: predicted classes; default argmax of ``probs``.

    Returns:
        Flat dict: ``accuracy``, ``balanced_accuracy``, ``auroc``, ``macro_f1``,
        ``sensitivity`` and ``specificity`` (of the positive class for binary tasks, macro
        averages otherwise) and ``sensitivity/<class>``, ``specificity/<class>`` per class.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    labels = np.asarray(labels)
    n_classes = probs.shape[1]
    positive = n_classes - 1 if positive is None else positive
    preds = probs.argmax(axis=1) if predictions is None else np.asarray(predictions)
    confusion = confusion_matrix(labels, preds, labels=list(range(n_classes)))
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(actual > 0, np.diag(confusion) / actual, np.nan)
    specificity = specificity_per_class(confusion)
    out = {
        "accuracy": float((preds == labels).mean()) if len(labels) else math.nan,
        "balanced_accuracy": float(balanced_accuracy_score(labels, preds)),
        "auroc": _auroc(labels, probs, positive),
        "macro_f1": float(
            f1_score(labels, preds, average="macro", labels=list(range(n_classes)), zero_division=0)
        ),
    }
    if n_classes == 2:
        out["sensitivity"] = float(sensitivity[positive])
        out["specificity"] = float(specificity[positive])
    else:
        out["sensitivity"] = float(np.nanmean(sensitivity))
        out["specificity"] = float(np.nanmean(specificity))
    for name, sens, spec in zip(class_names, sensitivity, specificity, strict=True):
        out[f"sensitivity/{name}"] = float(sens)
        out[f"specificity/{name}"] = float(spec)
    return out
