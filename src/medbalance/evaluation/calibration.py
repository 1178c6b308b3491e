"""Probabilities a clinician can read: calibration fitted on the tuning cases, and how good it is.

A remedy for imbalance moves the model's outputs away from the real prevalence: oversampling or a
balanced loss trains the model to a prior of its own (``model_prior``), so "0.7" no longer means
seven in ten. :class:`Calibration` undoes that in two steps, both fitted on validation (or
out-of-fold) cases only:

1. **Prior correction**: from the prior the model learned back to the natural (training) prior,
   ``p_k * natural_k / model_k``, renormalised (Saerens et al., 2002; a run without a remedy
   learns the natural prior and the step does nothing);
2. **Temperature scaling** (Guo et al., 2017, the default): ``softmax(log p / T)`` with the one
   ``T`` that minimises the log loss on the tuning cases. As options (``method``): **vector
   scaling** (``softmax(a * log p + b)``, a positive scale and a bias per class, Guo et al.) and
   **isotonic regression** (scikit-learn's, one class against the rest, then renormalised; for
   two classes on the positive class alone), which need more tuning cases than one number does.

Temperature scaling keeps the order of each image's classes, and for two classes the order of
the images, so a binary threshold keeps its sensitivity and specificity (vector scaling keeps
the order of the images for two classes; isotonic keeps it up to ties). Decisions are chosen on
the model's own outputs and stay as they are; the calibrated probabilities are reported beside
them.

:func:`calibration_metrics` gives Brier score, log loss, and expected and maximum calibration
error (ECE over the top label and per class, one-vs-rest), with bootstrap CIs in
:func:`calibration_report`, before and after.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "METADATA_KEY",
    "METHODS",
    "Calibration",
    "calibration_method",
    "calibration_metrics",
    "calibration_report",
    "fit_calibration",
    "read_calibration",
]

METADATA_KEY = "calibration"  # where the checkpoint metadata keeps the record
_FOR_PREVALENCE = "for_prevalence"  # the bias-corrected form inside it
_EPS = 1e-12
_BINS = 15
METHODS = ("temperature", "vector", "isotonic", "bcts")  # what fit_calibration fits


@dataclass(frozen=True)
class Calibration:
    """How the model's probabilities become calibrated ones.

    Attributes:
        temperature: divides the log-probabilities (1: unchanged; above 1 softens).
        prior_weights: natural prior / model prior per class, or None (no correction).
        chosen_on: the cases it was fitted on (``val`` or ``oof``), never ``test``.
        bias: per-class terms added after the temperature (bias-corrected temperature scaling,
            BCTS, Alexandari et al. 2020), or None (temperature scaling alone).
        for_prevalence: the bias-corrected form fitted on the same cases, which the prior
            estimate of another site reads (:func:`fit_calibration` says why), or None.
        tuning_prior: the class shares of the cases it was fitted on: the prior its
            probabilities stand at, where a prior estimate starts from.
        scale: vector scaling's per-class factors on the log-probabilities (in place of
            ``1 / temperature``), with ``bias``; or None.
        knots: isotonic regression's step function per class, ``(x, y)`` knots applied by
            linear interpolation to the prior-corrected probabilities (one entry, for the
            second class, when there are two classes); or None.
    """

    temperature: float
    prior_weights: tuple[float, ...] | None = None
    chosen_on: str = "val"
    bias: tuple[float, ...] | None = None
    for_prevalence: Calibration | None = None
    tuning_prior: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    knots: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] | None = None

    @property
    def method(self) -> str:
        """``temperature``, ``vector``, ``isotonic`` or ``bcts``."""
        if self.knots is not None:
            return "isotonic"
        if self.scale is not None:
            return "vector"
        return "bcts" if self.bias is not None else "temperature"

    def __post_init__(self) -> None:
        if self.chosen_on == "test":
            raise ValueError("calibration is fitted on validation or out-of-fold cases, not test")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")

    def apply(self, probs: ArrayLike) -> NDArray[np.float64]:
        """The calibrated probabilities of ``probs`` (``[N, C]``)."""
        from scipy.special import softmax

        logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))
        if self.prior_weights is not None:
            logp = logp + np.log(np.asarray(self.prior_weights))
        if self.knots is not None:
            return _isotonic_apply(np.asarray(softmax(logp, axis=-1)), self.knots)
        factor = np.asarray(self.scale) if self.scale is not None else 1.0 / self.temperature
        z = logp * factor + (np.asarray(self.bias) if self.bias is not None else 0.0)
        return np.asarray(softmax(z, axis=-1), dtype=np.float64)

    def to_record(self) -> dict[str, Any]:
        weights = list(self.prior_weights) if self.prior_weights is not None else None
        extra: dict[str, Any] = {"bias": list(self.bias)} if self.bias is not None else {}
        if self.scale is not None:
            extra["scale"] = list(self.scale)
        if self.knots is not None:
            extra["knots"] = [[list(x), list(y)] for x, y in self.knots]
        if self.for_prevalence is not None:
            extra[_FOR_PREVALENCE] = self.for_prevalence.to_record()
        if self.tuning_prior is not None:
            extra["tuning_prior"] = list(self.tuning_prior)
        return {
            "method": self.method,
            "temperature": self.temperature,
            "prior_weights": weights,
            "chosen_on": self.chosen_on,
            **extra,
        }


def read_calibration(metadata: Mapping[str, Any]) -> Calibration | None:
    """The calibration stored in a checkpoint's metadata; None for older checkpoints."""
    record = metadata.get(METADATA_KEY)
    return _from_record(record) if record else None


def _from_record(record: Mapping[str, Any]) -> Calibration:
    weights, bias, nested = record.get("prior_weights"), record.get("bias"), None
    if record.get(_FOR_PREVALENCE):
        nested = _from_record(record[_FOR_PREVALENCE])
    return Calibration(
        float(record["temperature"]),
        tuple(float(w) for w in weights) if weights is not None else None,
        str(record.get("chosen_on", "val")),
        tuple(float(b) for b in bias) if bias is not None else None,
        nested,
        tuple(float(v) for v in record["tuning_prior"]) if record.get("tuning_prior") else None,
        tuple(float(v) for v in record["scale"]) if record.get("scale") else None,
        tuple((tuple(float(v) for v in x), tuple(float(v) for v in y)) for x, y in record["knots"])
        if record.get("knots")
        else None,
    )


def calibration_method(metadata: Mapping[str, Any]) -> str:
    """The method a checkpoint's configuration asks for (``temperature`` for older ones)."""
    config = metadata.get("config")
    method = config.get("calibration") if isinstance(config, Mapping) else None
    return str(method) if method else "temperature"


def fit_calibration(
    labels: ArrayLike,
    probs: ArrayLike,
    *,
    train_counts: Sequence[int] | None = None,
    model_prior: Sequence[float] | None = None,
    chosen_on: str = "val",
    method: str = "temperature",
) -> Calibration:
    """Fit the prior correction and the temperature (``method="bcts"``: and per-class biases)
    on tuning cases (val or out-of-fold).

    Temperature scaling also carries its bias-corrected form (``for_prevalence``) for the
    prior estimate of another site: that EM needs the mean calibrated probability to equal the
    tuning cases' class shares, which per-class biases guarantee and a temperature alone does
    not (PneumoniaMNIST: EM on its own val split read 0.60 pneumonia against the true 0.74 with
    the temperature alone; benchmarks/RESULTS.md).
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    weights = _prior_weights(train_counts, model_prior, p.shape[1])
    corrected = Calibration(1.0, weights, chosen_on).apply(p)
    shares = tuple((np.bincount(y, minlength=p.shape[1]) / max(len(y), 1)).tolist())
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    temperature, bias = _bias_corrected(y, corrected)
    nested = Calibration(temperature, weights, chosen_on, bias, tuning_prior=shares)
    if method == "bcts":
        return nested
    if method == "vector":
        scale, vector_bias = _vector(y, corrected)
        return Calibration(1.0, weights, chosen_on, vector_bias, nested, shares, scale)
    if method == "isotonic":
        knots = _isotonic_fit(y, corrected)
        return Calibration(1.0, weights, chosen_on, None, nested, shares, knots=knots)
    return Calibration(_temperature(y, corrected), weights, chosen_on, None, nested, shares)


def _vector(
    labels: NDArray[np.int64], probs: NDArray[np.float64]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Per-class positive scales and biases (the first bias fixed at 0) minimising the log loss
    (vector scaling, Guo et al. 2017; by hand with SciPy's L-BFGS for the reason of
    :func:`_temperature`). Classes absent from the cases: one temperature, no bias."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n_classes = probs.shape[1]
    if len(np.unique(labels)) < n_classes:
        return (1.0 / _temperature(labels, probs),) * n_classes, None
    logp = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(labels))

    def nll(params: NDArray[np.float64]) -> float:
        z = logp * np.exp(params[:n_classes]) + np.r_[0.0, params[n_classes:]]
        return float(-log_softmax(z, axis=1)[rows, labels].mean())

    found = minimize(nll, np.zeros(2 * n_classes - 1), method="L-BFGS-B")
    scale = tuple(float(v) for v in np.exp(found.x[:n_classes]))
    return scale, tuple(float(b) for b in np.r_[0.0, found.x[n_classes:]])


def _isotonic_fit(
    labels: NDArray[np.int64], probs: NDArray[np.float64]
) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    """scikit-learn's isotonic regression of each class's outcome on its probability (one
    against the rest; the second class alone for two), kept as its knots."""
    from sklearn.isotonic import IsotonicRegression

    classes = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    knots = []
    for k in classes:
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        fitted.fit(probs[:, k], (labels == k).astype(np.float64))
        xs, ys = fitted.X_thresholds_, fitted.y_thresholds_
        knots.append((tuple(float(v) for v in xs), tuple(float(v) for v in ys)))
    return tuple(knots)


def _isotonic_apply(
    probs: NDArray[np.float64], knots: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
) -> NDArray[np.float64]:
    """Each class's probability through its knots, renormalised (two classes: ``1 - p``)."""
    if probs.shape[-1] == 2:
        xs, ys = knots[0]
        positive = np.interp(probs[..., 1], xs, ys)
        return np.stack([1.0 - positive, positive], axis=-1)
    mapped = np.stack(
        [np.interp(probs[..., k], xs, ys) for k, (xs, ys) in enumerate(knots)], axis=-1
    )
    total = mapped.sum(axis=-1, keepdims=True)
    uniform = np.full_like(mapped, 1.0 / mapped.shape[-1])
    return np.where(total > 0, mapped / np.where(total > 0, total, 1.0), uniform)


def _prior_weights(
    train_counts: Sequence[int] | None, model_prior: Sequence[float] | None, n_classes: int
) -> tuple[float, ...] | None:
    if train_counts is None or model_prior is None or len(model_prior) != n_classes:
        return None
    natural = np.asarray(train_counts, dtype=np.float64)
    learned = np.asarray(model_prior, dtype=np.float64)
    if natural.min() <= 0 or learned.min() <= 0:
        return None
    ratio = (natural / natural.sum()) / (learned / learned.sum())
    return None if np.allclose(ratio, 1.0) else tuple(float(r) for r in ratio)


def _temperature(labels: NDArray[np.int64], probs: NDArray[np.float64]) -> float:
    """The temperature minimising the log loss of ``probs`` on ``labels``; 1 when the cases hold
    a single class (nothing to fit).

    Written here with SciPy's bounded scalar minimiser: scikit-learn's temperature scaling
    (``CalibratedClassifierCV(method="temperature")``) is reached only through a fitted
    estimator with ``fit``/``predict``, not from probabilities that were computed already.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    if len(np.unique(labels)) < 2:
        return 1.0
    logp = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / math.exp(log_t), axis=1)[rows, labels].mean())

    found = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def _bias_corrected(
    labels: NDArray[np.int64], probs: NDArray[np.float64]
) -> tuple[float, tuple[float, ...] | None]:
    """Temperature and per-class biases (the first class's fixed at 0) minimising the log loss
    (BCTS, Alexandari et al. 2020; by hand with SciPy's L-BFGS for the reason of
    :func:`_temperature`). Classes absent from the cases get no bias fitted: temperature only."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n_classes = probs.shape[1]
    if len(np.unique(labels)) < n_classes:
        return _temperature(labels, probs), None
    logp = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(labels))

    def nll(params: NDArray[np.float64]) -> float:
        z = logp / math.exp(params[0]) + np.r_[0.0, params[1:]]
        return float(-log_softmax(z, axis=1)[rows, labels].mean())

    found = minimize(nll, np.zeros(n_classes), method="L-BFGS-B")
    return math.exp(found.x[0]), tuple(float(b) for b in np.r_[0.0, found.x[1:]])


def calibration_metrics(labels: ArrayLike, probs: ArrayLike) -> dict[str, float]:
    """Brier score (sum over classes, mean over images), log loss, top-label ECE and MCE, and
    one-vs-rest ECE per class (``ece/K``) of class probabilities ``[N, C]``.

    Brier and log loss are the one-line formulas of scikit-learn's ``brier_score_loss`` and
    ``log_loss`` (tests check they agree): this runs once per bootstrap resample, where their
    input checks cost more than the arithmetic.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    onehot = np.eye(p.shape[1])[y]
    picked = np.clip(p[np.arange(len(y)), y] / p.sum(axis=1), _EPS, 1.0)
    out = {
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "log_loss": float(-np.mean(np.log(picked))),
    }
    confidence = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    out["ece"], out["mce"] = _ece_mce(confidence, hit)
    for k in range(p.shape[1]):
        out[f"ece/{k}"] = _ece_mce(p[:, k], onehot[:, k])[0]
    return out


def _ece_mce(confidence: NDArray[np.float64], outcome: NDArray[np.float64]) -> tuple[float, float]:
    """Expected and maximum calibration error over equal-width bins (written here: scikit-learn
    has ``calibration_curve`` but no ECE; the maximum gap is what a clinician reading one
    probability is exposed to)."""
    bins = np.minimum((confidence * _BINS).astype(int), _BINS - 1)
    count = np.bincount(bins, minlength=_BINS)
    gap = np.abs(np.bincount(bins, outcome - confidence, minlength=_BINS))
    filled = count > 0
    ece = float(gap.sum() / len(confidence))
    mce = float((gap[filled] / count[filled]).max())
    return ece, mce


def calibration_report(
    labels: ArrayLike,
    probs: ArrayLike,
    calibration: Calibration,
    class_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``metrics.json``'s ``calibration``: the fitted record and the metrics with 95% CIs of
    the model's probabilities (``before``) and the calibrated ones (``after``)."""
    from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci

    y = np.asarray(labels, dtype=np.int64)
    raw = np.asarray(probs, dtype=np.float64)
    out: dict[str, Any] = calibration.to_record()
    for name, p in (("before", raw), ("after", calibration.apply(raw))):
        point = calibration_metrics(y, p)
        if n_bootstrap:
            cis = bootstrap_ci(
                functools.partial(calibration_metrics), y, p, n_resamples=n_bootstrap, seed=seed
            )
        else:
            cis = {k: (math.nan, math.nan) for k in point}
        block = with_ci(point, cis)
        per_class = {str(n): block.pop(f"ece/{k}") for k, n in enumerate(class_names)}
        out[name] = {**block, "ece_per_class": per_class}
    return out
