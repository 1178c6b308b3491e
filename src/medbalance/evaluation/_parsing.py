"""Small helpers shared by the policy and rule parsers (binary thresholds, multi-class rules)."""

from __future__ import annotations

import difflib
import math
from enum import StrEnum
from typing import TypeGuard, TypeVar

__all__ = ["is_number", "parse_choice", "parse_float", "unknown"]

_E = TypeVar("_E", bound=StrEnum)


def is_number(value: object) -> TypeGuard[float]:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_float(text: str, what: str, form: str) -> float:
    """``float(text)``, or a ValueError naming ``what`` and the ``form`` to write."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number; write {form}") from None
    return value


def unknown(text: str, forms: tuple[str, ...], what: str) -> ValueError:
    """The error for an unknown ``what``: the valid forms and the nearest one."""
    near = difflib.get_close_matches(text, forms, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return ValueError(f"unknown {what} {text!r}; valid forms: {', '.join(forms)}{hint}")


def parse_choice(enum: type[_E], value: str, what: str) -> _E:
    """``value`` as a member of ``enum``, or :func:`unknown`'s error naming the choices."""
    try:
        return enum(value)
    except ValueError:
        raise unknown(value, tuple(member.value for member in enum), what) from None
