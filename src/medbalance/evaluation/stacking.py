"""Stacking: a logistic regression that maps an ensemble's mean probabilities to new ones,
fit on out-of-fold (OOF) outputs.

The features are the log-probabilities (floored at 1e-12, as
:func:`medbalance.models.tta.as_logits`): for two classes one feature, the logit of the positive
class (``log p_pos - log p_neg``); for C > 2 classes the C log-probabilities, with a multinomial
regression. Every stacker is stored in one form, a linear layer on the log-probabilities followed
by a softmax: ``softmax(log(p) @ weights.T + bias)``, with ``weights`` ``(C, C)`` and ``bias``
``(C,)`` plain numbers (``ensemble.json`` holds them; no pickle), so ``predict`` and an exported
graph apply it without scikit-learn.

**What it is fit on, and what it is applied to.** Each OOF image has one prediction, from the one
fold model that did not see it; each test image has K, one per fold model. The stacker is fit on
the OOF probabilities and, at test time, applied to the *mean* of the K members' probabilities:
average the members, then stack, the standard way to stack bagged fold models. The mean of K
members is distributed a little differently from one member's output (usually less extreme),
which the stacker never sees: a known, small mismatch, not a leak of test data.

**Honesty of the operating point.** The stacker is fit on the OOF set, so its outputs on that set
are in-sample. The operating point is therefore chosen on *cross-validated* stacker outputs
(:func:`cross_validated_outputs`, scikit-learn's ``cross_val_predict`` over the same,
patient-grouped folds as the fold models): every OOF image is scored by a fold model and a
stacker that both did not see it.

With one feature, a binary stacker is a monotone map of the positive probability (Platt scaling
of the ensemble): it changes calibration and the probabilities the threshold is chosen on, never
the ranking (AUROC). A multi-class stacker can also change which class wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["LOG_FLOOR", "Stacker", "cross_validated_outputs", "fit_stacker", "stack_features"]

LOG_FLOOR = 1e-12  # the probability floor before the log, as models.tta.as_logits
_C = 1.0  # scikit-learn's default L2 strength: a handful of parameters on hundreds of cases


@dataclass(frozen=True)
class Stacker:
    """``softmax(log(p) @ weights.T + bias)``, fit by logistic regression on OOF outputs."""

    weights: NDArray[np.float64]  # (C, C)
    bias: NDArray[np.float64]  # (C,)
    n_fit: int  # OOF images it was fit on

    def __post_init__(self) -> None:
        c = self.bias.shape[0] if self.bias.ndim == 1 else -1
        if self.weights.shape != (c, c) or c < 2:
            raise ValueError(
                f"a stacker needs weights (C, C) and bias (C,) with C >= 2 classes, got "
                f"weights {self.weights.shape} and bias {self.bias.shape}"
            )
        if not (np.isfinite(self.weights).all() and np.isfinite(self.bias).all()):
            raise ValueError("a stacker's weights and bias must be finite numbers")

    @property
    def n_classes(self) -> int:
        return int(self.bias.shape[0])

    def logits(self, probs: ArrayLike) -> NDArray[np.float64]:
        """The stacker's logits for probabilities ``probs`` (``[N, C]``)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != self.n_classes:
            raise ValueError(f"a {self.n_classes}-class stacker needs [N, {self.n_classes}] "
                             f"probabilities, got shape {p.shape}")  # fmt: skip
        return np.asarray(np.log(np.maximum(p, LOG_FLOOR)) @ self.weights.T + self.bias)

    def apply(self, probs: ArrayLike) -> NDArray[np.float64]:
        """The stacked class probabilities (rows sum to 1)."""
        z = self.logits(probs)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))

    def to_record(self) -> dict[str, Any]:
        """Plain numbers for ``ensemble.json``."""
        return {
            "model": "logistic-regression",
            "features": "log-probabilities of the mean of the members",
            "form": "softmax(log(max(p, 1e-12)) @ weights.T + bias)",
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "n_fit": self.n_fit,
            "fit_on": "oof",
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Stacker:
        """Read :meth:`to_record` back.

        Raises:
            ValueError: the record lacks weights or bias, or their shapes do not match.
        """
        try:
            weights = np.asarray(record["weights"], dtype=np.float64)
            bias = np.asarray(record["bias"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a readable stacker record ({error!r})") from None
        return cls(weights, bias, int(record.get("n_fit", 0)))


def stack_features(probs: ArrayLike, positive: int | None) -> NDArray[np.float64]:
    """The regression's inputs: the positive class's logit (two classes), else the log-probs."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), LOG_FLOOR))
    if logp.shape[1] == 2:
        pos = 1 if positive is None else positive
        return logp[:, [pos]] - logp[:, [1 - pos]]
    return logp


def _estimator() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=_C, max_iter=2000)


def _check_labels(labels: NDArray[np.int64], n_classes: int) -> None:
    missing = sorted(set(range(n_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(
            f"stacking needs out-of-fold cases of every class; class index(es) {missing} have "
            "none; use --combine mean"
        )


def fit_stacker(labels: ArrayLike, probs: ArrayLike, *, positive: int | None = None) -> Stacker:
    """Fit a logistic regression on OOF ``probs`` (``[N, C]``) against ``labels`` (``[N]``).

    Args:
        labels: true class indices.
        probs: one (out-of-fold) prediction per case.
        positive: two classes: the positive class index (default 1).

    Raises:
        ValueError: a class has no case.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    _check_labels(y, p.shape[1])
    fitted = _estimator().fit(stack_features(p, positive), y)
    coef = np.asarray(fitted.coef_, dtype=np.float64)
    intercept = np.asarray(fitted.intercept_, dtype=np.float64)
    c = p.shape[1]
    if c > 2:
        return Stacker(coef, intercept, len(y))
    pos = 1 if positive is None else positive
    direction = np.zeros(c)
    direction[pos], direction[1 - pos] = 1.0, -1.0
    weights = np.zeros((c, c))  # class 0's logit stays 0; class 1's is w * logit(p_pos) + b
    weights[1] = coef[0, 0] * direction
    return Stacker(weights, np.array([0.0, float(intercept[0])]), len(y))


def cross_validated_outputs(
    labels: ArrayLike,
    probs: ArrayLike,
    splits: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    *,
    positive: int | None = None,
) -> NDArray[np.float64]:
    """The stacker's probabilities on every case, each from a stacker fit without it.

    ``splits`` are (fit, held-out) index pairs covering every case once (cv passes its own
    folds, so patients stay together); the operating point is chosen on these outputs.
    """
    from sklearn.model_selection import cross_val_predict

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    _check_labels(y, p.shape[1])
    for fit_idx, _ in splits:
        _check_labels(y[fit_idx], p.shape[1])
    out = cross_val_predict(
        _estimator(), stack_features(p, positive), y, cv=list(splits), method="predict_proba"
    )
    return np.asarray(out, dtype=np.float64)
