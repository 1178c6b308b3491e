"""Public building block: imbalance-aware classification losses as ``nn.Module``s.

Each takes raw logits ``[N, C]`` and class indices ``[N]``; the class statistics they need come
from the training counts::

    from medbalance.losses import create_loss

    loss_fn = create_loss("ldam", class_counts=[1214, 3494])  # or LDAMLoss(class_counts=...)
    loss = loss_fn(model(x), y)

The pure functions (``focal_loss``, ``ldam_loss`` ...) and the class statistics they take
(``class_balanced_weights``, ``ldam_margins``, ``log_prior`` ...) are here too. The
implementation lives in :mod:`medbalance.training.losses`; this module is the stable public name.
"""

from __future__ import annotations

from medbalance.training.class_weights import (
    class_balanced_weights,
    cost_weights,
    drw_weights,
    inverse_frequency_weights,
    ldam_margins,
    log_prior,
)
from medbalance.training.loss_functions import (
    balanced_softmax_loss,
    cross_entropy,
    focal_loss,
    ldam_loss,
    logit_adjusted_loss,
    soft_f1_loss,
)
from medbalance.training.losses import (
    LOSSES,
    PESG,
    AUCMarginLoss,
    BalancedSoftmaxLoss,
    ClassBalancedCrossEntropyLoss,
    ClassBalancedFocalLoss,
    ClassificationLoss,
    CostSensitiveCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LossName,
    SoftF1Loss,
    WeightedCrossEntropyLoss,
    create_loss,
)

__all__ = [
    "LOSSES",
    "PESG",
    "AUCMarginLoss",
    "BalancedSoftmaxLoss",
    "ClassBalancedCrossEntropyLoss",
    "ClassBalancedFocalLoss",
    "ClassificationLoss",
    "CostSensitiveCrossEntropyLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossName",
    "SoftF1Loss",
    "WeightedCrossEntropyLoss",
    "balanced_softmax_loss",
    "class_balanced_weights",
    "cost_weights",
    "create_loss",
    "cross_entropy",
    "drw_weights",
    "focal_loss",
    "inverse_frequency_weights",
    "ldam_loss",
    "ldam_margins",
    "log_prior",
    "logit_adjusted_loss",
    "soft_f1_loss",
]
