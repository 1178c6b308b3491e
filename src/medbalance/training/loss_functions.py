"""Imbalance-aware classification losses as pure functions.

:mod:`medbalance.training.losses` wraps each in an ``nn.Module`` and builds them by name.

Every loss takes raw ``logits`` of shape ``[N, C]`` and ``target`` class indices (int64, ``[N]``),
works from ``log_softmax`` (finite values and gradients for logits as large as ±1e4) and computes
in float32 when given half-precision logits. ``reduction="mean"`` is the plain mean of the
per-sample losses; a class weight scales the loss of each sample of that class. Unlike
``F.cross_entropy(weight=...)`` the mean does not divide by the batch's sum of weights, so the
scale of the weights matters, and every weight vector :mod:`medbalance.training.class_weights`
builds is normalised.

The functions check their inputs and options on every call; per-class weights, margins and priors
are tensors with one entry per logit column, built from the training counts by
:mod:`medbalance.training.class_weights` (:func:`~medbalance.training.class_weights.ldam_margins`
for
:func:`ldam_loss`, :func:`~medbalance.training.class_weights.log_prior` for
:func:`logit_adjusted_loss` and
:func:`balanced_softmax_loss`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medbalance.training._validation import (
    check,
    check_inputs,
    check_reduction,
    check_smoothing,
    is_real,
)

__all__ = [
    "Reduction",
    "balanced_softmax_loss",
    "cross_entropy",
    "focal_loss",
    "ldam_loss",
    "logit_adjusted_loss",
    "soft_f1_loss",
]

Reduction = Literal["mean", "sum", "none"]


# --- helpers -------------------------------------------------------------------------------------
def _float(logits: Tensor) -> Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _per_sample_ce(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    log_probs = F.log_softmax(_float(logits), dim=1)
    nll = -log_probs.gather(1, target[:, None]).squeeze(1)
    if label_smoothing == 0:
        return nll
    return (1 - label_smoothing) * nll - label_smoothing * log_probs.mean(dim=1)


def _reduce(loss: Tensor, target: Tensor, class_weight: Tensor | None, reduction: str) -> Tensor:
    if class_weight is not None:
        loss = loss * class_weight.to(loss.dtype)[target]
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _prepare(
    logits: Tensor, target: Tensor, reduction: str, smoothing: float, *per_class: Tensor | None
) -> None:
    """Check inputs, reduction and smoothing; ``per_class`` vectors must have one entry a class."""
    check_inputs(logits, target, None)
    check_reduction(reduction)
    check_smoothing(smoothing)
    for vector in per_class:
        if vector is not None and vector.shape != logits.shape[1:]:
            raise ValueError(
                f"class weights, margins and priors need one entry per logit column "
                f"({logits.shape[1]}); got shape {tuple(vector.shape)}; build them from the same "
                "class list as the model head"
            )


# --- losses --------------------------------------------------------------------------------------
def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross-entropy; unweighted, it matches ``F.cross_entropy(label_smoothing=...)``.

    The other pure functions take the same arguments.

    Args:
        logits: Raw scores, shape ``[N, C]``.
        target: Class indices, int64, shape ``[N]``.
        class_weight: Optional ``[C]`` weights; each sample's (smoothed) loss is multiplied by the
            weight of its true class. (With smoothing, torch instead weights each class term.)
        label_smoothing: Mass in ``[0, 1)`` spread uniformly over the classes.
        reduction: ``"mean"`` (plain mean over the batch), ``"sum"`` or ``"none"`` (shape ``[N]``).

    Returns:
        The loss, a scalar unless ``reduction="none"``.
    """
    _prepare(logits, target, reduction, label_smoothing, class_weight)
    return _reduce(_per_sample_ce(logits, target, label_smoothing), target, class_weight, reduction)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    class_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Softmax focal loss ``-(1 - p_t)^gamma * log p_t`` (Lin et al. 2017); gamma=0 is CE.

    ``class_weight`` plays the role of the paper's alpha (for two classes pass ``[1 - a, a]``).
    """
    _prepare(logits, target, reduction, 0.0, class_weight)
    check(is_real(gamma) and gamma >= 0, "gamma", gamma, "it must be >= 0", "Lin et al. use 2")
    log_pt = -_per_sample_ce(logits, target, 0.0)
    loss = -log_pt
    if gamma != 0:  # clamp keeps d/dp (1 - p)^gamma finite at p = 1 for gamma < 1
        loss = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).eps) ** gamma * loss
    return _reduce(loss, target, class_weight, reduction)


def ldam_loss(
    logits: Tensor,
    target: Tensor,
    margins: Tensor,
    *,
    scale: float = 30.0,
    class_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """LDAM loss (Cao et al. 2019): CE on ``scale * (logits - m_y at the true class)``.

    The paper's ``scale=30`` assumes cosine logits in [-1, 1] (normalised features and weights);
    with an ordinary linear head use a smaller scale.
    """
    _prepare(logits, target, reduction, 0.0, class_weight, margins)
    check(is_real(scale) and scale > 0, "scale", scale, "it must be > 0", "Cao et al. use 30")
    x = _float(logits)
    shifted = x - F.one_hot(target, x.shape[1]).to(x.dtype) * margins.to(x.dtype)
    return _reduce(_per_sample_ce(scale * shifted, target, 0.0), target, class_weight, reduction)


def logit_adjusted_loss(
    logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    *,
    tau: float = 1.0,
    class_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Logit-adjusted CE (Menon et al. 2021) on ``logits + tau * log_prior``; tau=0 is CE.

    Only training sees the adjustment: predict with the raw logits.
    """
    _prepare(logits, target, reduction, label_smoothing, class_weight, log_prior)
    check(is_real(tau) and tau >= 0, "tau", tau, "it must be >= 0", "Menon et al. use 1")
    x = _float(logits)
    adjusted = x + tau * log_prior.to(x.dtype)
    return cross_entropy(
        adjusted,
        target,
        class_weight=class_weight,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def balanced_softmax_loss(
    logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    *,
    class_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Balanced softmax (Ren et al. 2020): CE on ``logits + log_prior``; predict with raw logits."""
    return logit_adjusted_loss(
        logits,
        target,
        log_prior,
        tau=1.0,
        class_weight=class_weight,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def soft_f1_loss(logits: Tensor, target: Tensor, *, eps: float = 1e-7) -> Tensor:
    """``1 - soft F1`` of class 1 over the batch, ``p = softmax(logits)[:, 1]``; binary only."""
    check_inputs(logits, target, None)
    if logits.shape[1] != 2:
        raise ValueError(
            f"soft-f1 scores the positive class of a binary problem, so logits need 2 columns; "
            f"got shape {tuple(logits.shape)}; use 'ce', 'focal' or 'ldam' for more classes"
        )
    p = F.softmax(_float(logits), dim=1)[:, 1]
    y = (target == 1).to(p.dtype)
    tp = (p * y).sum()
    return 1 - 2 * tp / (p.sum() + y.sum() + eps)  # 2TP + FP + FN = sum(p) + sum(y)
