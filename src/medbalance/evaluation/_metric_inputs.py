"""Input validation and shared building blocks of :mod:`medbalance.evaluation.metrics` and
:mod:`medbalance.evaluation.bootstrap`.

Internal: both modules validate their inputs the same way and compute ratios, one-vs-rest
counts and the expected calibration error from the same pieces, so the scikit-learn metric sets
and their vectorised bootstrap twins agree on every rule and every message.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Floats",
    "binary_inputs",
    "check_threshold",
    "class_indices",
    "ece",
    "ece_bins",
    "multiclass_inputs",
    "one_vs_rest",
    "prediction_inputs",
    "ratio",
]

Floats = NDArray[np.float64]


def ratio(num: ArrayLike, den: ArrayLike) -> Floats:
    """``num / den`` elementwise, NaN where ``den`` is not positive."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def one_vs_rest(confusion: ArrayLike) -> tuple[Floats, Floats, Floats, Floats]:
    """TP, FP, FN, TN per class from confusion matrices ``(..., C, C)`` (rows: true class)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum(axis=(-2, -1))[..., None]
    true_pos = np.diagonal(confusion, axis1=-2, axis2=-1)
    false_pos = confusion.sum(axis=-2) - true_pos
    false_neg = confusion.sum(axis=-1) - true_pos
    return true_pos, false_pos, false_neg, total - true_pos - false_pos - false_neg


def ece_bins(confidence: Floats, n_bins: int) -> NDArray[np.intp]:
    """Equal-width bin of each confidence: bin ``k`` is ``(k/n, (k+1)/n]``, with 0 in bin 0."""
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} is invalid: ECE needs a positive whole number of bins")
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner_edges, confidence, side="left")  # bin k is (k/n, (k+1)/n]


def ece(weights: Floats, bins: NDArray[np.intp], residual: Floats, n_bins: int) -> Floats:
    """ECE of each weighted resample: ``sum_b |sum_{i in b} w_i (hit_i - conf_i)| / sum w``."""
    signed = np.zeros((len(residual), n_bins))
    signed[np.arange(len(residual)), bins] = residual
    return np.abs(weights @ signed).sum(axis=1) / weights.sum(axis=1)


def binary_inputs(y_true: ArrayLike, score: ArrayLike) -> tuple[Floats, Floats]:
    """``y_true`` as 0.0/1.0 and ``score`` as float64 probabilities, validated."""
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(
            f"y_true and score must be 1-D of the same length; got shapes {y.shape} and "
            f"{s.shape} (for (N, 2) probabilities pass the positive column, probs[:, 1])"
        )
    if len(y) == 0:
        raise ValueError("y_true is empty: metrics need at least one item")
    values = np.unique(y)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(
            f"y_true must hold 0 (negative) and 1 (positive) only; found {values.tolist()[:10]}"
        )
    if not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(
            f"score must be finite probabilities in [0, 1]; found min {np.nanmin(s):.4g}, max "
            f"{np.nanmax(s):.4g}, {int(np.isnan(s).sum())} NaN; pass sigmoid/softmax outputs"
        )
    return y.astype(np.float64), s


def multiclass_inputs(labels: ArrayLike, probs: ArrayLike) -> tuple[NDArray[np.intp], Floats]:
    """``labels`` as class indices and ``probs`` ``(N, C)`` validated and renormalised per row."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (N, C) with C >= 2 classes; got shape {p.shape}")
    y = class_indices(labels, p.shape[1], "labels")
    if len(y) != len(p):
        raise ValueError(f"labels has {len(y)} items but probs has {len(p)} rows")
    sums = p.sum(axis=1)
    if not np.isfinite(p).all() or p.min() < 0.0 or np.abs(sums - 1.0).max() > 1e-4:
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            f"probs must be finite, nonnegative and sum to 1 per row (within 1e-4); row {worst} "
            f"sums to {sums[worst]:.6g}; apply softmax to the logits first"
        )
    return y, p / sums[:, None]


def class_indices(values: ArrayLike, n_classes: int, name: str) -> NDArray[np.intp]:
    """``values`` as a non-empty 1-D array of class indices in ``0..n_classes - 1``.

    Args:
        values: class index per item (integers, or floats holding whole numbers).
        n_classes: number of classes.
        name: the argument's name, used in error messages.
    """
    a = np.asarray(values)
    if a.ndim != 1 or len(a) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class indices; got {a.shape}")
    if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.array_equal(a, np.round(a))):
        raise ValueError(f"{name} must hold whole class indices; got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= n_classes:
        raise ValueError(
            f"{name} must lie in 0..{n_classes - 1} ({n_classes} classes); "
            f"found {a.min()}..{a.max()}"
        )
    return a.astype(np.intp)


def prediction_inputs(
    labels: ArrayLike, preds: ArrayLike, n_classes: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``labels`` and ``preds`` as class indices of one length, for ``n_classes`` classes."""
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes={n_classes!r} is invalid: a classifier has at least 2")
    y = class_indices(labels, n_classes, "labels")
    pred = class_indices(preds, n_classes, "preds")
    if len(pred) != len(y):
        raise ValueError(f"preds has {len(pred)} items but labels has {len(y)}")
    return y, pred


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float; any number but NaN (``inf`` calls every item negative)."""
    if not isinstance(threshold, int | float | np.floating) or math.isnan(threshold):
        raise ValueError(f"threshold={threshold!r} is invalid: it must be a number (inf allowed)")
    return float(threshold)
