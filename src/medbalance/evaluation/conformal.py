"""Conformal prediction sets that cover each class, the rare one included, at a stated level.

Class-conditional (Mondrian) split conformal prediction (Vovk, 2012; Angelopoulos & Bates, 2021,
section 4.1): for every class ``k`` the nonconformity scores of the tuning cases of class ``k``
(validation, or out-of-fold for cv; never test) are kept sorted. At level ``L`` class ``k`` enters
an image's set when its score is at most ``q_k``, the ``ceil((n_k + 1) L)``-th smallest of those
``n_k`` scores. A new image of class ``k``, exchangeable with them, is then covered with
probability at least ``L`` (at most ``L + 1 / (n_k + 1)`` when scores do not tie), whatever the
other classes' counts: marginal conformal would let a frequent class carry a rare one's misses.

The score is ``1 - p_k``: one minus the model's own probability of the class, the probability
the decision reads. Not the calibrated one: the calibration is fitted on the same tuning cases,
so the score would depend on them twice, and the prior correction it makes is a per-class factor
that the per-class quantiles absorb already. (The best epoch was also selected on these cases, a
mild reuse that the benchmark in RESULTS.md measures.)

What is stored (:meth:`ConformalScores.to_record`, in the checkpoint's metadata or
``ensemble.json`` under ``conformal``) is the sorted scores themselves, so sets at any level can
be drawn later without the tuning data. When ``ceil((n_k + 1) L) > n_k`` (fewer than
:func:`needed_cases` tuning cases) no score is large enough: class ``k`` enters every set, which
covers it trivially; :meth:`ConformalScores.too_few` says so.

Written here rather than with crepes, MAPIE or TorchCP: the computation is one order statistic
per class, the checkpoint must hold plain numbers (no pickled fitted objects), and those packages
bring pandas (crepes), an estimator API around precomputed probabilities (MAPIE) or transformers
and torch_geometric (TorchCP). ``tests/test_conformal.py`` checks the sets against the
brute-force conformal p-value rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "METADATA_KEY",
    "SCORE",
    "SET_SEPARATOR",
    "ConformalScores",
    "check_level",
    "conformal_metrics",
    "conformal_report",
    "fit_conformal",
    "missing_scores",
    "needed_cases",
    "read_conformal",
]

log = logging.getLogger(__name__)
METADATA_KEY = "conformal"  # where the checkpoint metadata (or ensemble.json) keeps the record
SCORE = "1 - p_k (the model's own probability of the class, before calibration)"
SET_SEPARATOR = "|"  # joins a set's class names in a CSV cell
_METHOD = "mondrian split conformal"


def check_level(level: object) -> float:
    """``level`` as a float strictly between 0 and 1.

    Raises:
        ValueError: not a number in (0, 1), naming the value and an example.
    """
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating):
        raise ValueError(f"conformal level {level!r} is not a number; give one in (0, 1), e.g. 0.9")
    value = float(level)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(
            f"conformal level {level!r} is outside (0, 1): it is the share of each class's "
            "images whose set holds their class; give e.g. 0.9"
        )
    return value


def _exact(level: float) -> Fraction:
    """The level as written (0.9 is 9/10, not the nearest binary float), so the rank rule below
    has no rounding: ``(n + 1) * 0.9`` in floating point is not always a whole number."""
    return Fraction(repr(float(level)))


def _rank(n: int, level: float) -> int:
    """The 1-based rank ``ceil((n + 1) * level)`` of the quantile among ``n`` tuning scores."""
    return math.ceil((n + 1) * _exact(level))


def needed_cases(level: float) -> int:
    """The fewest tuning cases of a class for a finite quantile at ``level``: the least ``n``
    with ``ceil((n + 1) L) <= n``, i.e. ``(n + 1) L <= n``, i.e. ``n >= L / (1 - L)``, so
    ``ceil(L / (1 - L))`` (9 at 0.9, 19 at 0.95, 99 at 0.99)."""
    exact = _exact(check_level(level))
    return math.ceil(exact / (1 - exact))


@dataclass(frozen=True)
class ConformalScores:
    """The sorted nonconformity scores of each class's tuning cases.

    Attributes:
        class_names: the model's classes, in output order.
        scores: per class (in that order), its tuning cases' ``1 - p_k``, ascending.
        chosen_on: the cases they come from (``val`` or ``oof``), never ``test``.
    """

    class_names: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...]
    chosen_on: str = "val"

    def __post_init__(self) -> None:
        if self.chosen_on == "test":
            raise ValueError("conformal scores come from validation or out-of-fold cases, not test")
        if len(self.scores) != len(self.class_names):
            raise ValueError(
                f"conformal scores for {len(self.scores)} classes, but the model has "
                f"{len(self.class_names)}; fit them on this model's tuning cases"
            )
        for name, values in zip(self.class_names, self.scores, strict=True):
            array = np.asarray(values, dtype=np.float64)
            if not np.isfinite(array).all() or (np.diff(array) < 0).any():
                raise ValueError(
                    f"the conformal scores of class {name!r} are not finite and ascending; "
                    "fit them again (re-run evaluate with --threshold, or train again)"
                )

    @property
    def counts(self) -> dict[str, int]:
        """Tuning cases per class."""
        return {n: len(s) for n, s in zip(self.class_names, self.scores, strict=True)}

    def thresholds(self, level: float) -> NDArray[np.float64]:
        """``q_k`` per class at ``level``; ``inf`` (the class enters every set) for a class with
        fewer than :func:`needed_cases` tuning cases."""
        level = check_level(level)
        out = np.full(len(self.scores), np.inf)
        for k, values in enumerate(self.scores):
            rank = _rank(len(values), level)
            if rank <= len(values):
                out[k] = values[rank - 1]
        return out

    def sets(self, probs: ArrayLike, level: float) -> NDArray[np.bool_]:
        """``[N, C]``: whether each class is in each image's set at ``level``."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.class_names):
            raise ValueError(
                f"probabilities of shape {p.shape} for conformal sets over "
                f"{len(self.class_names)} classes; give [N, {len(self.class_names)}]"
            )
        return (1.0 - p) <= self.thresholds(level)[None, :]

    def too_few(self, level: float) -> list[str]:
        """One warning per class whose tuning cases are too few for ``level``."""
        need = needed_cases(level)
        return [
            f"class {name!r} has {n} {self.chosen_on} case(s); a conformal level of {level:g} "
            f"needs at least {need}, so {name!r} is in every set (covered only trivially); "
            "add tuning cases of it (e.g. --resplit-val) or use a lower level"
            for name, n in self.counts.items()
            if n < need
        ]

    def to_record(self) -> dict[str, Any]:
        return {
            "method": _METHOD,
            "score": SCORE,
            "chosen_on": self.chosen_on,
            "scores": {n: list(s) for n, s in zip(self.class_names, self.scores, strict=True)},
        }


def missing_scores(model: object) -> ValueError:
    """The error for a model stored before conformal scores were kept, naming the fix."""
    return ValueError(
        f"{model} was stored without conformal scores (made before medbalance kept them); run "
        "`medbalance evaluate MODEL --threshold POLICY` on its own data (re-chooses the "
        "operating point on its tuning cases and stores the scores with it), or train again"
    )


def fit_conformal(
    labels: ArrayLike, probs: ArrayLike, class_names: Sequence[str], *, chosen_on: str = "val"
) -> ConformalScores:
    """Each class's sorted scores ``1 - p_k`` over its tuning cases (``labels``, ``probs``)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    per_class = tuple(
        tuple(float(v) for v in np.sort(1.0 - p[y == k, k])) for k in range(len(class_names))
    )
    return ConformalScores(tuple(map(str, class_names)), per_class, chosen_on)


def read_conformal(record_holder: Mapping[str, Any]) -> ConformalScores | None:
    """The conformal scores stored in a checkpoint's metadata (or an ``ensemble.json``
    record); None when it was written before they were stored."""
    record = record_holder.get(METADATA_KEY)
    if not record:
        return None
    stored = record["scores"]
    names = tuple(str(n) for n in stored)
    values = tuple(tuple(float(v) for v in stored[n]) for n in stored)
    return ConformalScores(names, values, str(record.get("chosen_on", "val")))


def conformal_metrics(labels: ArrayLike, sets: ArrayLike) -> dict[str, float]:
    """Coverage (``coverage/K``: share of class-``K`` images whose set holds ``K``) and mean set
    size (``size/K``) per class, and over all images ``coverage``, ``mean_set_size`` and
    ``refer_rate`` (share whose set is not exactly one class). NaN for a class without images.

    Plain NumPy on purpose: it runs once per bootstrap resample.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(sets, dtype=bool)
    n_classes = s.shape[1]
    covered = s[np.arange(len(y)), y].astype(np.float64)
    size = s.sum(axis=1).astype(np.float64)
    count = np.bincount(y, minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cover_k = np.bincount(y, covered, minlength=n_classes) / count
        size_k = np.bincount(y, size, minlength=n_classes) / count
    out = {
        "coverage": float(covered.mean()),
        "mean_set_size": float(size.mean()),
        "refer_rate": float((size != 1).mean()),
    }
    for k in range(n_classes):
        out[f"coverage/{k}"] = float(cover_k[k])
        out[f"size/{k}"] = float(size_k[k])
    return out


def conformal_report(
    labels: ArrayLike,
    probs: ArrayLike,
    conformal: ConformalScores,
    level: float,
    *,
    split: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``metrics.json``'s ``conformal``: the sets at ``level`` on the evaluated images, per class
    coverage and mean set size and the overall refer rate, each with a 95% stratified-bootstrap
    CI, the tuning cases they rest on, and ``warnings`` (too few tuning cases; coverage
    measured on the tuning cases themselves)."""
    from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci

    y = np.asarray(labels, dtype=np.int64)
    sets = conformal.sets(probs, level)
    point = conformal_metrics(y, sets)
    cis = bootstrap_ci(conformal_metrics, y, sets, n_resamples=n_bootstrap, seed=seed)
    block = with_ci(point, cis)
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(conformal.class_names):
        entry: dict[str, Any] = {"n": int((y == k).sum()), "tuning_cases": conformal.counts[name]}
        entry |= {"coverage": block.pop(f"coverage/{k}"), "mean_set_size": block.pop(f"size/{k}")}
        if not entry["n"]:
            entry["undefined"] = f"the {split} split holds no image of this class"
        per_class[name] = entry
    warnings = conformal.too_few(level)
    for warning in warnings:
        log.warning("%s", warning)
    if split == conformal.chosen_on:
        warnings.append(
            f"conformal coverage measured on a {split} split: on the cases the sets were "
            "calibrated on it holds by construction and estimates nothing; evaluate test"
        )
    return {
        "level": level,
        "chosen_on": conformal.chosen_on,
        "method": _METHOD,
        "score": SCORE,
        "needed_cases": needed_cases(level),
        "per_class": per_class,
        **block,
        "warnings": warnings,
    }
