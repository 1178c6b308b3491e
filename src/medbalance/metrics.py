"""Classification metrics for imbalanced data, from scikit-learn where it has them.

Written here only what scikit-learn lacks: specificity (the recall of "not this class") per
class. Probabilities are ``(N, C)``; for binary tasks the positive class is the one named by
``positive`` (default: the last class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["SELECT_METRICS", "classification_metrics", "specificity_per_class"]

SELECT_METRICS = ("auroc", "balanced_accuracy", "macro_f1", "sensitivity", "loss")


def specificity_per_class(confusion: np.ndarray) -> np.ndarray:
    """Specificity of each class, one-vs-rest: TN / (TN + FP), from a confusion matrix.

    ``confusion[i, j]`` counts items of true class ``i`` predicted as ``j``. A class with no
    negatives has specificity NaN.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    true_pos = np.diag(confusion)
    false_pos = predicted - true_pos
    true_neg = total - actual - false_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(true_neg + false_pos > 0, true_neg / (true_neg + false_pos), np.nan)


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
