"""The training configuration: one frozen, validated dataclass.

A config file (TOML or YAML) and command-line options map onto the same :class:`TrainConfig`;
unknown keys are errors that suggest the nearest known key; the resolved config is written to
``RUN_DIR/config.json`` and into the checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from medbalance.evaluation.decision import AUTO_POLICY
from medbalance.training.names import (
    CalibrationMethod,
    Device,
    Normalization,
    Precision,
    Schedule,
    SelectMetric,
    SelectRule,
    Track,
)

__all__ = [
    "AUTO_SAMPLER",
    "DEFAULT_LOSS",
    "DEFAULT_SAMPLER",
    "GRADES_AS_ORDINAL",
    "ORDINAL_SAMPLER",
    "ConfigError",
    "ResolvedConfig",
    "TrainConfig",
    "check_components",
    "default_drw_epoch",
    "load_config",
    "new_run_folder",
]

# The remedy the benchmarks (benchmarks/RESULTS.md) found best on imbalanced data: oversampling
# for binary and multi-class tasks; no sampler for ordinal grades (synthetic grades, 3 seeds:
# CORN + expected-grade kappa 0.940 without a sampler against 0.864 oversampled).
DEFAULT_SAMPLER = "oversample"
ORDINAL_SAMPLER = "none"
AUTO_SAMPLER = "auto"  # the field's default: one of the two above, by task
# Whether classes named by numbers (three or more) train as ordinal grades when --ordinal is not
# given; chosen by benchmarks/suite.py (RESULTS.md, rule 4 of 2026-12-03)
GRADES_AS_ORDINAL = True
DEFAULT_LOSS = "ce"


_NOISY = ("auroc", "balanced_accuracy", "sensitivity")  # select metrics with a standard error


def default_drw_epoch(epochs: int) -> int:
    """``--drw`` without an epoch: deferred re-weighting from 2/3 of the run (at least 1)."""
    return max(1, epochs * 2 // 3)


class ConfigError(ValueError):
    """A config value breaks a rule; the message names the key, the value and the rule."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. ``None`` means "choose for the data"."""

    data: str
    out: str = "runs/run"
    model: str | None = None
    size: int | None = None
    presize: int | None = None
    epochs: int | None = None  # None: planned from the data (training/budget.py)
    steps: int | None = None  # the optimizer steps to plan for; a resolved config keeps both
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    sampler: str = AUTO_SAMPLER  # resolved in __post_init__: config.json holds the choice
    epoch_samples: int | None = None
    loss: str = DEFAULT_LOSS
    loss_options: dict[str, Any] = field(default_factory=dict)
    drw: bool = False  # deferred re-weighting from drw_epoch (default: 2/3 of the run)
    drw_epoch: int | None = None
    crt_epochs: int = 0
    pretrained: bool = False
    weights: str | None = None
    freeze_epochs: int = 0
    backbone_lr_mult: float = 0.1
    augment: bool = True
    hflip: bool = False
    degrees: float = 10.0
    normalization: str = "minmax"
    select: str = "auroc"
    select_rule: str = "last"  # the suite's choice over best and within-noise (RESULTS.md)
    patience: int | None = None
    positive_class: str | None = None
    threshold: str = AUTO_POLICY  # youden, offsets:balanced or expected-grade by task
    guarantee: float | None = None  # confidence that a sensitivity>=/specificity>= holds
    calibration: str = "temperature"  # fitted on val with the decision: or vector, isotonic
    bootstrap: int = 1000
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # bf16 where the hardware has it (issue 15; benchmarks/RESULTS.md)
    precision_reason: str | None = None  # set when "auto" was resolved: what the hardware said
    channels_last: bool = False
    sync_bn: bool = False
    precise_bn: int = 1024
    ema: float | None = None
    compile: bool = False
    resplit_val: float | None = None
    group_pattern: str | None = None
    group_column: str | None = None
    skip_unreadable: bool = False
    ordinal: bool | None = None  # ordered grades (CORN head, ordinal metrics); None: by the classes
    class_order: tuple[str, ...] | None = None  # the class index order (default: sorted names)
    track: str = "none"  # also log the run to MLflow ("mlflow"; workflows/tracking.py)
    track_uri: str | None = None  # default: MLFLOW_TRACKING_URI, else the file store ./mlruns

    def __post_init__(self) -> None:
        _positive(self, "batch_size")
        _positive_or_none(self, "epochs", "steps")
        if not isinstance(self.drw, bool):
            raise ConfigError(f"drw must be true or false, got {self.drw!r}")
        _check_class_order(self)
        _choice(self, "device", Device)
        _choice(self, "precision", Precision)
        _choice(self, "schedule", Schedule)
        _choice(self, "normalization", Normalization)
        _choice(self, "select", SelectMetric)
        _choice(self, "select_rule", SelectRule)
        _choice(self, "track", Track)
        _choice(self, "calibration", CalibrationMethod)
        if self.track_uri is not None and self.track == Track.NONE:
            raise ConfigError(f"track_uri {self.track_uri!r} needs track 'mlflow' (--track mlflow)")
        if self.select_rule == SelectRule.WITHIN_NOISE and self.select not in _NOISY:
            raise ConfigError(
                f"select_rule within-noise needs a metric with a known standard error "
                f"({', '.join(_NOISY)}), got select {self.select!r}"
            )
        if self.size is not None and not 8 <= self.size <= 1024:
            raise ConfigError(f"size must be between 8 and 1024 pixels, got {self.size}")
        # a presize below size is allowed: 28 px MedMNIST trains at 64 or 224 px, resampled
        # once on the device (the cache never stores upsampled pixels)
        if self.presize is not None and not 8 <= self.presize <= 4096:
            raise ConfigError(f"presize must be between 8 and 4096 pixels, got {self.presize}")
        if self.resplit_val is not None and not 0.01 <= self.resplit_val <= 0.9:
            raise ConfigError(
                f"resplit_val is the fraction of train+val to carve as val, between 0.01 and "
                f"0.9, got {self.resplit_val}"
            )
        if self.lr is not None and not 0 < self.lr < 10:
            raise ConfigError(f"lr must be a positive learning rate below 10, got {self.lr}")
        _check_epoch_fields(self)
        if self.freeze_epochs and not (self.pretrained or self.weights):
            raise ConfigError(
                "freeze_epochs trains a new head on a frozen pretrained backbone; give "
                "--pretrained or --weights PATH, or set freeze_epochs to 0"
            )
        if self.pretrained and self.weights:
            raise ConfigError("give either --pretrained (download) or --weights PATH, not both")
        if self.crt_epochs < 0:
            raise ConfigError(f"crt_epochs must be 0 or more, got {self.crt_epochs}")
        if not 0 < self.backbone_lr_mult <= 1:
            raise ConfigError(f"backbone_lr_mult must be in (0, 1], got {self.backbone_lr_mult}")
        if self.sampler == AUTO_SAMPLER and self.ordinal is not None:  # else once it is known
            by_task = ORDINAL_SAMPLER if self.ordinal is True else DEFAULT_SAMPLER
            object.__setattr__(self, "sampler", by_task)
        check_components(self.sampler, self.loss, self.loss_options, self.threshold)
        _check_guarantee(self)
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise ConfigError(f"epoch_samples must be a positive integer, got {self.epoch_samples}")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be 0 or more resamples, got {self.bootstrap}")
        if self.precise_bn < 0:
            raise ConfigError(
                f"precise_bn is a number of training images (0 turns it off), got {self.precise_bn}"
            )
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(
                f"ema is the decay of a moving average of the weights, in (0, 1) such as 0.999; "
                f"got {self.ema}"
            )
        if not 0 <= self.degrees <= 45:
            raise ConfigError(f"degrees must be between 0 and 45, got {self.degrees}")

    def to_dict(self) -> dict[str, Any]:
        """The config's keys and values (a resolved config: only these keys)."""
        keys = [f.name for f in dataclasses.fields(TrainConfig)]
        return {key: copy.deepcopy(getattr(self, key)) for key in keys}

    def write(self, path: Path) -> None:
        from medbalance.core.files import atomic_write_text

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_text(path, text)


def _positive(config: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _positive_or_none(config: TrainConfig, *names: str) -> None:
    _positive(config, *(name for name in names if getattr(config, name) is not None))


def _check_epoch_fields(config: TrainConfig) -> None:
    """The fields counted in epochs of the run: checked once the run length is known (given,
    or planned from the data)."""
    if config.freeze_epochs < 0:
        raise ConfigError(f"freeze_epochs must be 0 or more, got {config.freeze_epochs}")
    if config.drw_epoch is not None and config.drw_epoch < 1:
        raise ConfigError(f"drw_epoch must be 1 or more, got {config.drw_epoch}")
    epochs = config.epochs
    if epochs is None:
        return
    if config.drw_epoch is not None and not 0 < config.drw_epoch < epochs:
        raise ConfigError(
            f"drw_epoch must fall inside the run (1..{epochs - 1}), got {config.drw_epoch}"
        )
    if config.freeze_epochs >= epochs:
        raise ConfigError(
            f"freeze_epochs must be between 0 and epochs-1 ({epochs - 1}), "
            f"got {config.freeze_epochs}"
        )


def _check_class_order(config: TrainConfig) -> None:
    """``class_order``: two or more distinct, non-empty names; a list (config file) is stored
    as a tuple."""
    if config.ordinal is not None and not isinstance(config.ordinal, bool):
        raise ConfigError(f"ordinal must be true or false, got {config.ordinal!r}")
    order = config.class_order
    if order is None:
        return
    if isinstance(order, str) or not isinstance(order, list | tuple):
        raise ConfigError(
            f"class_order must be a list of class names such as ['0', '1', '2'] "
            f"(on the command line --class-order 0,1,2), got {order!r}"
        )
    bad = [name for name in order if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ConfigError(f"class_order holds {bad[0]!r}; every entry must be a class name")
    repeated = sorted({name for name in order if order.count(name) > 1})
    if repeated:
        raise ConfigError(
            f"class_order names {', '.join(map(repr, repeated))} more than once; "
            "name each class once"
        )
    if len(order) < 2:
        raise ConfigError(f"class_order must name at least two classes, got {list(order)}")
    object.__setattr__(config, "class_order", tuple(order))


def _choice(config: TrainConfig, name: str, enum: type[StrEnum]) -> None:
    choices = tuple(member.value for member in enum)
    value = getattr(config, name)
    if value not in choices:
        near = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: config files are .toml, .yaml or .json")
    import yaml

    try:
        if suffix == ".toml":
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        elif suffix == ".json":
            data = json.loads(path.read_text())
        else:  # safe_load: a !!python tag is refused, never run
            data = yaml.safe_load(path.read_text()) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as error:
        what = " ".join(str(error).split())
        raise ConfigError(
            f"{path}: not a valid {suffix.lstrip('.').upper()} config ({what}); fix the file "
            "(plain key = value pairs; no tags such as !!python)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a config is UTF-8 text") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a table of key = value")
    return data


def _check_threshold(text: str) -> None:
    """Fail now, not after training, on a threshold policy that neither a binary nor a
    multi-class operating point understands."""
    from medbalance.evaluation.thresholds import parse_multiclass_rule, parse_policy

    if text == AUTO_POLICY:
        return
    try:
        parse_policy(text)
    except ValueError as binary:
        try:
            parse_multiclass_rule(text)
        except ValueError as rule:
            compact = text.replace(" ", "").lower() if isinstance(text, str) else ""
            multiclass = compact.startswith(("offsets", "expected", "median", "logit"))
            multiclass |= compact.startswith("cost:") and "=" not in compact
            raise ConfigError(f"threshold: {rule if multiclass else binary}") from None


def _check_guarantee(config: TrainConfig) -> None:
    """Fail now, not after training, on a guarantee the threshold policy cannot take (the
    tuning cases it needs are checked once the data is prepared: ``prepare_run``)."""
    from medbalance.evaluation.guarantee import check_guarantee

    if config.guarantee is None:
        return
    try:
        check_guarantee(config.threshold, config.guarantee)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_components(
    sampler: str, loss: str, options: Mapping[str, Any], threshold: str = AUTO_POLICY
) -> None:
    """Fail now, not when the run starts, on an unknown sampler, loss or threshold policy, or an
    option the loss does not take (each with the nearest name).

    Raises:
        ConfigError: naming the value, the rule and the nearest valid value.
    """
    from medbalance.training.losses import check_loss_options
    from medbalance.training.samplers import parse_sampler_spec

    _check_threshold(threshold)
    if not isinstance(options, Mapping):
        raise ConfigError(f"loss_options must be a table of key = value, got {options!r}")
    try:
        auto = f", {AUTO_SAMPLER} ({DEFAULT_SAMPLER}; {ORDINAL_SAMPLER} with --ordinal)"
        if sampler != AUTO_SAMPLER:  # auto: chosen once the task is known
            parse_sampler_spec(sampler, also=auto)
        check_loss_options(loss, {k: v for k, v in options.items() if k != "class_weight"})
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None


@dataclass(frozen=True, kw_only=True)
class ResolvedConfig(TrainConfig):
    """A :class:`TrainConfig` with every "choose for the data" field filled and checked against
    the data, before the first epoch: ``prepare_run`` makes it.

    ``config.json`` and the checkpoint store only the :class:`TrainConfig` keys; the extra
    attributes here are what the data decided.

    Attributes:
        class_names: the data's classes, in label order.
        positive_index: the positive class of a binary task; with more classes the rarest
            training class (its sensitivity is logged each epoch).
        native_size: the side of array data (MedMNIST), else None.
    """

    size: int
    presize: int
    model: str
    lr: float
    epochs: int
    ordinal: bool
    class_names: tuple[str, ...]
    positive_index: int
    native_size: int | None = None


def new_run_folder(data: str, root: str = "runs") -> str:
    """``runs/<data name>-<date>-<time>``: the run folder when none is named, new each time
    (so a second run never collides with the first)."""
    import time

    stem = Path(str(data).rstrip("/\\")).name.split(".")[0] or "run"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    return f"{root}/{safe}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None, *, new_out: bool = False
) -> TrainConfig:
    """Build a config from a file, then command-line overrides (``None`` values are ignored).

    With ``new_out`` (``train``), a config that names no run folder gets a new one
    (:func:`new_run_folder`), announced in the log.

    Raises:
        ConfigError: an unknown key (with the nearest known one) or a value breaking a rule.
    """
    values: dict[str, Any] = _read_file(path) if path is not None else {}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown config key(s){where}: {', '.join(hints)}")
    if values.get("epochs") is not None and values.get("steps") is not None:
        raise ConfigError(
            f"give either epochs ({values['epochs']}) or steps ({values['steps']}), not both: "
            "steps plans the epochs"
        )
    if "data" not in values:
        raise ConfigError(
            "no data given: pass DATA on the command line or data = '...' in the file"
        )
    if "out" not in values and new_out:
        values["out"] = new_run_folder(str(values["data"]))
        logging.getLogger(__name__).info("no --out given: the run goes to %s", values["out"])
    try:
        return TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from error
