"""Argument checks shared by :mod:`medbalance.training.class_weights`,
:mod:`medbalance.training.loss_functions` and
:mod:`medbalance.training.losses`.

Internal: one wording for every rejected option (``name=value is invalid: rule; fix``), one
validation of the training split's class counts and one of a loss's logits and targets.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "Counts",
    "check",
    "check_inputs",
    "check_reduction",
    "check_smoothing",
    "counts_tensor",
    "is_real",
]

Counts = Sequence[int] | Tensor


def check(ok: bool, name: str, value: object, rule: str, fix: str) -> None:
    """Raise ``ValueError("name=value is invalid: rule; fix")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: {rule}; {fix}")


def is_real(value: object) -> bool:
    """Whether ``value`` is a finite ``int`` or ``float`` (``bool`` is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def counts_tensor(class_counts: Counts) -> Tensor:
    """Validate per-class training counts; return them as float64.

    Raises:
        ValueError: fewer than 2 classes, or a count that is not a whole positive number.
    """
    values = class_counts.tolist() if isinstance(class_counts, Tensor) else list(class_counts)
    if len(values) < 2:
        raise ValueError(f"class_counts needs one count per class, at least 2; got {values}")
    for i, value in enumerate(values):
        try:
            count = -1 if isinstance(value, bool) else operator.index(value)
        except TypeError:
            count = -1
        if count <= 0:
            raise ValueError(
                f"class_counts[{i}] is {value!r} (counts {values}): every class needs a whole, "
                f"positive number of training samples; add samples of class {i} or drop the class"
            )
    return torch.tensor([operator.index(v) for v in values], dtype=torch.float64)


def check_smoothing(label_smoothing: float) -> None:
    """Refuse a ``label_smoothing`` outside ``[0, 1)``."""
    ok = is_real(label_smoothing) and 0 <= label_smoothing < 1
    check(ok, "label_smoothing", label_smoothing, "it must lie in [0, 1)", "use 0.1, or 0 for off")


def check_reduction(reduction: str) -> None:
    """Refuse a ``reduction`` other than ``"mean"``, ``"sum"`` or ``"none"``."""
    ok = reduction in ("mean", "sum", "none")
    check(ok, "reduction", reduction, "choose 'mean', 'sum' or 'none'", "'mean' is the default")


def check_inputs(logits: Tensor, target: Tensor, num_classes: int | None) -> None:
    """Check a loss's float ``logits [N, C]`` and int64 ``target [N]``; ``C`` if ``num_classes``."""
    if logits.ndim != 2 or logits.shape[0] == 0 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a non-empty float tensor of shape [N, C]; got shape "
            f"{tuple(logits.shape)}, dtype {logits.dtype}"
        )
    if target.shape != logits.shape[:1] or target.dtype != torch.long:
        raise ValueError(
            f"target must be int64 class indices of shape [N] = [{logits.shape[0]}] to match "
            f"logits {tuple(logits.shape)}; got shape {tuple(target.shape)}, dtype {target.dtype} "
            "(use target.long())"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} classes (shape {tuple(logits.shape)}) but the loss was "
            f"built for {num_classes}; build it from the same class list as the model head"
        )
