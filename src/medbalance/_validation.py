"""Argument checks shared by :mod:`medbalance.class_weights` and :mod:`medbalance.losses`.

Internal: one wording for every rejected option (``name=value is invalid: rule; fix``) and one
validation of the training split's class counts.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Counts", "check", "counts_tensor", "is_real"]

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
