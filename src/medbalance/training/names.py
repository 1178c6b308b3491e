"""The names of the components and choices a run is built from, as ``StrEnum``s.

Torch-free, so the command line's help lists them without importing torch; the registries
(``SAMPLERS``, ``LOSSES``) are keyed by these names and a test checks that they agree.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CalibrationMethod",
    "Device",
    "LossName",
    "Normalization",
    "Precision",
    "SamplerName",
    "Schedule",
    "SelectMetric",
    "SelectRule",
    "Track",
    "choices",
]


class SamplerName(StrEnum):
    """Sampler names for ``create_sampler``; ``oversample`` also as ``oversample:ALPHA``, ``dual``
    as ``dual:RATE``."""

    NONE = "none"
    OVERSAMPLE = "oversample"
    UNDERSAMPLE = "undersample"
    BALANCED_BATCHES = "balanced-batches"
    DUAL = "dual"  # dual:RATE, at least RATE positives in every batch (LibAUC's DualSampler)


class LossName(StrEnum):
    """Names of the losses in ``LOSSES``, for the command line."""

    CE = "ce"
    WEIGHTED_CE = "weighted-ce"
    CB_CE = "cb-ce"
    CB_FOCAL = "cb-focal"
    COST_CE = "cost-ce"
    FOCAL = "focal"
    LDAM = "ldam"
    BALANCED_SOFTMAX = "balanced-softmax"
    LOGIT_ADJUSTED = "logit-adjusted"
    SOFT_F1 = "soft-f1"
    AUCM = "aucm"  # AUC-margin, through MONAI's AUCMLoss (binary)


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Precision(StrEnum):
    AUTO = "auto"  # chosen from the hardware: core.device.choose_precision
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Schedule(StrEnum):
    ONECYCLE = "onecycle"
    COSINE = "cosine"
    CONSTANT = "constant"


class Normalization(StrEnum):
    MINMAX = "minmax"
    MEANSTD = "meanstd"
    FIXED = "fixed"


class SelectMetric(StrEnum):
    AUROC = "auroc"
    BALANCED_ACCURACY = "balanced_accuracy"
    MACRO_F1 = "macro_f1"
    SENSITIVITY = "sensitivity"
    LOSS = "loss"


class SelectRule(StrEnum):
    """How the checkpoint is chosen from the epochs' validation metric."""

    LAST = "last"  # the last epoch (the suite's default: RESULTS.md, rule 2 of 2026-12-03)
    BEST = "best"  # the epoch with the best value
    WITHIN_NOISE = "within-noise"  # the latest epoch within the noise of the best value


class CalibrationMethod(StrEnum):
    """How the probabilities are calibrated on the tuning cases (``evaluation/calibration.py``)."""

    TEMPERATURE = "temperature"  # one temperature (the default)
    VECTOR = "vector"  # a scale and a bias per class
    ISOTONIC = "isotonic"  # isotonic regression per class (one against the rest)
    BCTS = "bcts"  # a temperature and a bias per class: moves the base rate (another site's)


class Track(StrEnum):
    """Where a run is logged besides its run folder (``workflows/tracking.py``)."""

    NONE = "none"
    MLFLOW = "mlflow"


def choices(enum: type[StrEnum], sep: str = " | ") -> str:
    """The values of ``enum`` for a help text: ``"a | b | c"``."""
    return sep.join(member.value for member in enum)
