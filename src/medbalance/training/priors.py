"""The class prior a model's outputs are calibrated to, from how it was trained.

A classifier trained with cross-entropy on the natural class frequencies outputs posteriors
calibrated to those frequencies. Sampling and loss weights change that prior: a full oversampler
shows every class equally often (uniform), ``oversample:ALPHA`` draws class ``c`` in proportion
to ``n_c ** (1 - ALPHA)``, and a loss weight ``w_c`` acts like showing class ``c`` ``w_c`` times
as often. Balanced softmax and logit adjustment train on prior-shifted logits, so their raw
outputs estimate the balanced posterior. The decision rules ``accuracy`` and ``balanced`` correct
from this prior (recorded in the checkpoint as ``model_prior``) instead of assuming the natural
one, so a correction the sampler or loss already made is not made twice.

An ordinal (CORN) head changes nothing here: cross-entropy on its K log class probabilities is
a plain likelihood (the CORN loss), so its outputs carry the prior the sampler and loss weights
set, as any other model's do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medbalance.training.config import TrainConfig

__all__ = ["learned_prior"]


def learned_prior(config: TrainConfig, train_counts: Sequence[int]) -> list[float]:
    """The prior (shares summing to 1) of the outputs of a model trained with ``config``.

    For the last phase of the run: with deferred re-weighting, its class-balanced weights.
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    shown = _sampled(config.sampler, counts) * _loss_factor(config, counts)
    return (shown / shown.sum()).tolist()


def _sampled(spec: str, counts: np.ndarray) -> np.ndarray:
    from medbalance.training.samplers import SamplerName, parse_sampler_spec

    kind, alpha = parse_sampler_spec(spec)
    if kind is SamplerName.NONE:
        return counts
    if kind is SamplerName.OVERSAMPLE:
        return counts ** (1.0 - (1.0 if alpha is None else alpha))
    return np.ones_like(counts)  # undersample, balanced-batches: every class alike


def _loss_factor(config: TrainConfig, counts: np.ndarray) -> np.ndarray:
    from medbalance.training.class_weights import drw_weights
    from medbalance.training.losses import create_loss

    if config.drw_epoch is not None:
        return drw_weights(counts.astype(int).tolist()).double().numpy()
    options = dict(config.loss_options)
    if config.loss == "balanced-softmax":
        return 1.0 / counts
    if config.loss == "logit-adjusted":
        return counts ** -float(options.get("tau", 1.0))
    loss = create_loss(config.loss, counts.astype(int).tolist(), **options)
    weight = getattr(loss, "class_weight", None)
    return np.ones_like(counts) if weight is None else weight.double().cpu().numpy()
