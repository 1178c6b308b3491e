"""Class weights, priors and margins derived from the training split's class counts.

Every function here takes the counts of the GLOBAL training split: the number of training samples
of each class over the whole data set, in class-index order. That holds under DDP too, where each
rank only iterates over its own shard: weights, priors and margins built from a rank's local counts
would differ from rank to rank (and from a single-process run). The trainer passes
``Prepared.train_counts()``, i.e. ``Catalog.class_counts("train")``, which every rank computes
from the same full catalog before the sampler shards it.

- :func:`inverse_frequency_weights`: ``weighted-ce``
- :func:`class_balanced_weights`: ``cb-ce`` and ``cb-focal`` (Cui et al. 2019)
- :func:`drw_weights`: the weights of deferred re-weighting (Cao et al. 2019)
- :func:`ldam_margins`: ``ldam``
- :func:`log_prior`: ``balanced-softmax`` and ``logit-adjusted``
- :func:`cost_weights`: ``cost-ce``, from a cost matrix rather than the counts

The losses themselves live in :mod:`medbalance.training.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from medbalance.training._validation import Counts, check, counts_tensor, is_real

__all__ = [
    "class_balanced_weights",
    "cost_weights",
    "drw_weights",
    "inverse_frequency_weights",
    "ldam_margins",
    "log_prior",
]


# --- validation ----------------------------------------------------------------------------------
def _check_beta(beta: float) -> None:
    ok = is_real(beta) and 0 <= beta < 1
    check(ok, "beta", beta, "it must lie in [0, 1)", "Cui et al. use 0.999 or 0.9999")


# --- weights, priors and margins from the training counts ---------------------------------------
def inverse_frequency_weights(class_counts: Counts) -> Tensor:
    """Weights ``w_c = N / (C * n_c)``, so that ``sum_c w_c * n_c = N`` (mean sample weight 1)."""
    n = counts_tensor(class_counts)
    return (n.sum() / (len(n) * n)).float()


def class_balanced_weights(class_counts: Counts, beta: float = 0.999) -> Tensor:
    """Class-balanced weights of Cui et al. (2019), normalised to sum to ``C``.

    ``w_c`` is proportional to ``(1 - beta) / (1 - beta ** n_c)``, the inverse effective number of
    samples; ``beta=0`` gives equal weights and ``beta -> 1`` inverse frequency.
    """
    _check_beta(beta)
    n = counts_tensor(class_counts)
    if beta == 0:
        return torch.ones(len(n))
    w = (1 - beta) / -torch.expm1(n * math.log(beta))
    return (w * len(n) / w.sum()).float()


def drw_weights(class_counts: Counts, beta: float = 0.9999) -> Tensor:
    """The class-balanced weights Cao et al. (2019) switch to for deferred re-weighting.

    The ratios are those of :func:`class_balanced_weights`; the scale makes the mean weight over
    training samples 1 (``sum_c w_c * n_c = N``). Cao et al.'s code divides by the batch's sum of
    weights, which cancels any scale; our plain mean matches it in expectation only at this scale
    (with weights summing to ``C`` the DRW stage would run at a fraction of the learning rate).
    """
    n = counts_tensor(class_counts)
    w = class_balanced_weights(class_counts, beta).double()
    return (w * n.sum() / (w * n).sum()).float()


def ldam_margins(class_counts: Counts, max_m: float = 0.5) -> Tensor:
    """LDAM margins ``m_c = max_m * n_c^(-1/4) / max_k n_k^(-1/4)``; the rarest class gets max_m."""
    check(is_real(max_m) and max_m >= 0, "max_m", max_m, "it must be >= 0", "Cao et al. use 0.5")
    m = counts_tensor(class_counts) ** -0.25
    return (max_m * m / m.max()).float()


def log_prior(class_counts: Counts) -> Tensor:
    """Log of the training-split class prior, ``log(n_c / N)``."""
    n = counts_tensor(class_counts)
    return (n / n.sum()).log().float()


def cost_weights(cost_matrix: Sequence[Sequence[float]] | Tensor) -> Tensor:
    """Per-class ``cost-ce`` weights: row sums of the cost matrix, normalised to sum to ``C``.

    ``cost_matrix[i][j]`` is the cost of predicting ``j`` when the truth is ``i``; see the
    :mod:`medbalance.training.losses` docstring for the rules it must follow and when the weighting
    is exact.
    """
    cost = torch.as_tensor(cost_matrix, dtype=torch.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 2:
        raise ValueError(f"cost_matrix must be square C x C with C >= 2; got {tuple(cost.shape)}")
    rows = cost.sum(dim=1)
    if not (torch.isfinite(cost).all() and (cost >= 0).all() and (cost.diagonal() == 0).all()):
        raise ValueError(
            f"cost_matrix must be finite, nonnegative and 0 on the diagonal; got {cost.tolist()}; "
            "subtract each row's diagonal entry from that row"
        )
    if not (rows > 0).all():
        raise ValueError(f"every row of cost_matrix needs a positive cost; got {cost.tolist()}")
    return (rows * len(rows) / rows.sum()).float()
