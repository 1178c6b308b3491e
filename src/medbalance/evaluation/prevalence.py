"""The place of use: its class prior, estimated from unlabelled images, and what the operating
point's predictive values become there.

A model chosen at one hospital's prevalence is used where the disease is rarer or commoner.
Sensitivity and specificity (per class: the rate of each call given the true class) travel with
the model; PPV and NPV do not, they follow the prior. :func:`at_prior` re-targets them, with CIs
from the bootstrap of the rates on labelled cases. :func:`estimate_prior` finds the prior of
unlabelled images from the calibrated probabilities by the EM of Saerens, Latinne & Decaestecker
(2002), the method Alexandari et al. (2020) found best once the probabilities are calibrated
(:mod:`~medbalance.evaluation.calibration` does that on val), with a bootstrap CI over images.

Written here: scikit-learn has no prior-shift estimation, and the EM is ten lines of NumPy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "at_prior", "estimate_prior", "named_estimate", "parse_prior", "shift_probabilities",
    "site_report",
]  # fmt: skip

_EPS = 1e-12


def parse_prior(text: str | float, class_names: Sequence[str], positive: int | None) -> np.ndarray:
    """``0.05`` (two classes: the positive class's prevalence) or ``a=0.7,b=0.2,c=0.1`` as
    one probability per class, in class order.

    Raises:
        ValueError: naming the value, the rule and an example.
    """
    names = list(class_names)
    if isinstance(text, int | float) or "=" not in str(text):
        value = _probability(str(text), "prevalence")
        if len(names) != 2 or positive is None:
            raise ValueError(
                f"a single prevalence ({text}) needs two classes; with {len(names)} give one "
                f"value per class, e.g. --class-prior {','.join(f'{n}=...' for n in names)}"
            )
        prior = np.zeros(2)
        prior[positive], prior[1 - positive] = value, 1.0 - value
        return prior
    values: dict[str, float] = {}
    for part in str(text).split(","):
        name, _, number = part.partition("=")
        if name.strip() not in names:
            raise ValueError(f"class prior: {name.strip()!r} is not a class ({', '.join(names)})")
        values[name.strip()] = _probability(number, f"the prior of {name.strip()}")
    if set(values) != set(names) or not math.isclose(sum(values.values()), 1.0, abs_tol=1e-3):
        raise ValueError(
            f"class prior {text!r}: give every class ({', '.join(names)}) a value, summing to 1"
        )
    return np.array([values[n] for n in names])


def _probability(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {value}")
    return value


def shift_probabilities(probs: ArrayLike, source: ArrayLike, target: ArrayLike) -> NDArray[Any]:
    """Probabilities at prior ``source`` moved to prior ``target`` (Bayes' rule per image)."""
    p = np.asarray(probs, dtype=np.float64) * (np.asarray(target) / np.asarray(source))
    return np.asarray(p / p.sum(axis=-1, keepdims=True), dtype=np.float64)


def estimate_prior(
    probs: ArrayLike,
    source: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """The class prior of the images whose calibrated probabilities (at prior ``source``) are
    ``probs``: EM of Saerens et al. (2002), and a 95% percentile bootstrap CI over images.

    Returns:
        ``{"prior": [...], "ci": [[lo, hi], ...], "source_prior": [...], "iterations": n}``.
    """
    p = np.asarray(probs, dtype=np.float64)
    base = np.asarray(source, dtype=np.float64)
    prior, iterations = _em(p, base, tol, max_iter)
    rng = np.random.default_rng(seed)
    draws = [_em(p[rng.integers(0, len(p), len(p))], base, tol, max_iter)[0]
             for _ in range(n_bootstrap)]  # fmt: skip
    ci = (
        np.percentile(np.asarray(draws), [2.5, 97.5], axis=0).T.tolist()
        if draws
        else [[math.nan, math.nan]] * len(prior)
    )
    return {
        "prior": prior.tolist(),
        "ci": ci,
        "source_prior": (base / base.sum()).tolist(),
        "iterations": iterations,
    }


def _em(probs: NDArray[Any], source: NDArray[Any], tol: float, max_iter: int) -> tuple[Any, int]:
    source = source / source.sum()
    prior = source.copy()
    for step in range(1, max_iter + 1):
        new = shift_probabilities(probs, source, prior).mean(axis=0)
        done = np.abs(new - prior).max() < tol
        prior = np.clip(new, _EPS, 1.0)
        if done:
            return prior / prior.sum(), step
    return prior / prior.sum(), max_iter


def at_prior(
    labels: ArrayLike,
    preds: ArrayLike,
    prior: ArrayLike,
    class_names: Sequence[str],
    *,
    positive: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Each class's PPV (precision) and, for two classes with a ``positive`` one, the NPV (the
    PPV of the negative call) at class prior ``prior``,
    from the call rates given each true class on labelled cases; 95% CIs by the stratified
    bootstrap of those cases (the rates are what is uncertain, the prior is given).

    PPV_k = P(call k | true k) prior_k / sum_j P(call k | true j) prior_j.
    """
    from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci

    target = np.asarray(prior, dtype=np.float64)
    metric = functools.partial(_values_at, prior=target)
    y, calls = np.asarray(labels), np.asarray(preds)
    point = metric(y, calls)
    cis = (
        bootstrap_ci(metric, y, calls, n_resamples=n_bootstrap, seed=seed)
        if n_bootstrap
        else {k: (math.nan, math.nan) for k in point}
    )
    values = with_ci(point, cis)
    names = list(class_names)
    out: dict[str, Any] = {
        "prior": {n: float(v) for n, v in zip(names, target, strict=True)},
        "ppv": {n: values[f"ppv/{k}"] for k, n in enumerate(names)},
    }
    if len(names) == 2 and positive is not None:
        out["npv"] = values[f"ppv/{1 - positive}"]
    return out


def _values_at(
    labels: NDArray[Any], preds: NDArray[Any], *, prior: NDArray[Any]
) -> dict[str, float]:
    n = len(prior)
    counts = np.zeros((n, n))
    np.add.at(counts, (labels, preds), 1.0)
    support = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, support, out=np.full_like(counts, np.nan), where=support > 0)
    called = rates * prior[:, None]  # P(true j and call k) at the target prior
    total = called.sum(axis=0)
    ppv = np.divide(np.diag(called), total, out=np.full(n, np.nan), where=total > 0)
    return {f"ppv/{k}": float(ppv[k]) for k in range(n)}


def site_report(
    labels: ArrayLike,
    probs: ArrayLike,
    preds: ArrayLike,
    class_names: Sequence[str],
    *,
    train_counts: Sequence[int],
    positive: int | None,
    calibrated: ArrayLike | None = None,
    calibrated_prior: Sequence[float] | None = None,
    prior: str | float | None = None,
    estimate: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``metrics.json``'s ``site``: PPV/NPV at the prior the user gives (``prior``) and the
    prior estimated from the images' probabilities (``estimate``), beside the prior of the
    evaluated cases and of training. ``calibrated`` are the probabilities the estimate reads
    (the model's own when None), standing at ``calibrated_prior`` (the training prior when
    None)."""
    names = list(class_names)
    y = np.asarray(labels)
    counts = np.asarray(train_counts, dtype=np.float64)
    observed = np.bincount(y, minlength=len(names)) / max(len(y), 1)
    out: dict[str, Any] = {
        "training_prior": dict(zip(names, (counts / counts.sum()).tolist(), strict=True)),
        "evaluated_prior": dict(zip(names, observed.tolist(), strict=True)),
    }
    if prior is not None:
        target = parse_prior(prior, names, positive)
        out["at_prior"] = at_prior(
            y, preds, target, names, positive=positive, n_bootstrap=n_bootstrap, seed=seed
        )
    if estimate:
        source = calibrated if calibrated is not None else probs
        start = calibrated_prior if calibrated_prior is not None else counts
        out["estimated_prior"] = named_estimate(source, start, names, n_bootstrap, seed)
        out["estimated_from"] = "calibrated" if calibrated is not None else "model"
    return out


def named_estimate(
    probs: ArrayLike, start: ArrayLike, names: Sequence[str], n_bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    """:func:`estimate_prior` per class name: ``{name: {"value": v, "ci": [lo, hi]}}``."""
    found = estimate_prior(probs, start, n_bootstrap=n_bootstrap, seed=seed)
    return {
        n: {"value": v, "ci": ci}
        for n, v, ci in zip(names, found["prior"], found["ci"], strict=True)
    }
