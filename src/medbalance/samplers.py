"""Public building block: class-balanced, DDP-aware ``torch.utils.data.Sampler``s.

Seeded functions of the training labels, for your own training loop::

    from medbalance.samplers import create_sampler

    sampler = create_sampler("oversample", train_labels, seed=0)  # or OversampleSampler(...)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a fresh balanced draw each epoch; shards under DDP

``create_sampler("none", ...)`` returns ``None`` (shuffle as usual). The implementation lives in
:mod:`medbalance.training.samplers`; this module is the stable public name.
"""

from __future__ import annotations

from medbalance.training.samplers import (
    SAMPLERS,
    BalancedBatchSampler,
    BalancedSampler,
    OversampleSampler,
    SamplerName,
    UndersampleSampler,
    create_sampler,
    parse_sampler_spec,
)

__all__ = [
    "SAMPLERS",
    "BalancedBatchSampler",
    "BalancedSampler",
    "OversampleSampler",
    "SamplerName",
    "UndersampleSampler",
    "create_sampler",
    "parse_sampler_spec",
]
