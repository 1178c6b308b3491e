"""medbalance: train and report medical image classifiers on class-imbalanced data.

The Python API mirrors the command line::

    import medbalance as mb

    insp = mb.inspect("data/")
    run = mb.train("data/", out="runs/a", epochs=10, sampler="oversample", loss="ce")
    run.metrics, run.decision, run.predict(["x.png"])
    mb.evaluate(mb.load_run("runs/a"), "other_site/")
    cmp = mb.compare("data/", remedies=["baseline", "oversample"], seeds=2, out="cmp/")

Building blocks for your own training loop: :mod:`medbalance.samplers`,
:mod:`medbalance.losses`, :mod:`medbalance.thresholds`, :mod:`medbalance.metrics`.

``import medbalance`` stays light (no torch, no matplotlib): every name below is imported on
first use (PEP 562), so the command line answers ``--help`` at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it; a module name maps to None
_LAZY: dict[str, str | None] = {
    "inspect": "medbalance.workflows.api",
    "train": "medbalance.workflows.api",
    "evaluate": "medbalance.workflows.api",
    "predict": "medbalance.workflows.api",
    "compare": "medbalance.workflows.api",
    "cv": "medbalance.workflows.api",
    "ensemble": "medbalance.workflows.api",
    "estimate_prevalence": "medbalance.workflows.api",
    "recalibrate": "medbalance.workflows.api",
    "load_run": "medbalance.workflows.api",
    "Run": "medbalance.workflows.api",
    "TrainConfig": "medbalance.training.config",
    "ConfigError": "medbalance.training.config",
    "Decision": "medbalance.evaluation.decision",
    "samplers": None,
    "losses": None,
    "thresholds": None,
    "metrics": None,
}

__all__ = [
    "ConfigError",
    "Decision",
    "Run",
    "TrainConfig",
    "__version__",
    "compare",
    "cv",
    "ensemble",
    "estimate_prevalence",
    "evaluate",
    "inspect",
    "load_run",
    "losses",
    "metrics",
    "predict",
    "recalibrate",
    "samplers",
    "thresholds",
    "train",
]

if TYPE_CHECKING:
    from medbalance import losses, metrics, samplers, thresholds
    from medbalance.evaluation.decision import Decision
    from medbalance.training.config import ConfigError, TrainConfig
    from medbalance.workflows.api import (
        Run,
        compare,
        cv,
        ensemble,
        estimate_prevalence,
        evaluate,
        inspect,
        load_run,
        predict,
        recalibrate,
        train,
    )


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'medbalance' has no attribute {name!r}")
    where = _LAZY[name]
    value = (
        importlib.import_module(f"medbalance.{name}")
        if where is None
        else getattr(importlib.import_module(where), name)
    )
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
