"""One way from a :class:`TrainConfig` to a run ready to start: :func:`prepare_run`.

It picks the device, fills the "choose for the data" fields (size, presize, model, learning
rate), loads, splits and presizes the data, and checks everything that depends on the data (the
positive class, the decision policy against the number of classes) before the first epoch.
``train``, ``compare``, ``lr-find`` and ``evaluate`` all start here, so they see the same splits.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medbalance.core.device import choose_precision, select_device
from medbalance.core.distributed import DistInfo, barrier
from medbalance.data.cache import default_presize
from medbalance.data.catalog import look_alike_classes, numeric_order, with_class_order
from medbalance.data.prepared import Prepared, default_positive_class, fingerprint, prepare_data
from medbalance.evaluation.decision import policy_for_task
from medbalance.training.budget import Plan, plan_epochs
from medbalance.training.config import (
    GRADES_AS_ORDINAL,
    ConfigError,
    ResolvedConfig,
    TrainConfig,
    default_drw_epoch,
)

__all__ = [
    "PreparedRun", "check_tuning_cases", "native_size", "order_classes", "prepare_run",
    "resolve_sizes",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """A resolved config, its prepared data, the device it runs on and its planned length."""

    config: ResolvedConfig
    data: Prepared
    device: torch.device
    plan: Plan


def native_size(source: str) -> int | None:
    """Side of the square images of an array data set (MedMNIST), else None.

    Only the array headers are read: the data is loaded once, in :func:`prepare_run`. Folders
    and manifests have no native size.
    """
    from medbalance.data._medmnist import MEDMNIST, resolve_medmnist
    from medbalance.data.npz import npz_image_side

    path = Path(source).expanduser()
    if not path.exists() and source.lower() in MEDMNIST:
        path = resolve_medmnist(source)
    return npz_image_side(path) if path.suffix.lower() == ".npz" and path.is_file() else None


def _array_side(data: Prepared) -> int | None:
    images = data.catalog.images
    if images is not None and images.shape[1] == images.shape[2]:
        return int(images.shape[1])
    return None


def resolve_sizes(config: TrainConfig, native: int | None, device: torch.device) -> TrainConfig:
    """Fill size, presize, model and learning rate for data of native side ``native``.

    The presize never exceeds the native side of array data: 28 px data for a 64 px run stays
    28 px in the cache and is resampled once on the device.
    """
    from medbalance.models.backbones import default_model_for

    size = config.size
    if size is None:
        size = min(native, 224) if native else (128 if device.type == "cpu" else 224)
    presize = config.presize if config.presize is not None else default_presize(size, native)
    model = config.model or default_model_for(size, device.type)
    lr = config.lr if config.lr is not None else _default_lr(config.loss)
    changes: dict[str, object] = dict(size=size, presize=presize, model=model, lr=lr)
    if config.precision == "auto":
        precision, channels_last, reason = choose_precision(device)
        changes.update(
            precision=precision,
            channels_last=config.channels_last or channels_last,
            precision_reason=f"auto: {reason}",
        )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _default_lr(loss: str) -> float:
    """The peak learning rate when none is given: 2e-3 for AdamW, 0.1 for ``aucm``'s PESG
    (LibAUC's step; at 2e-3 the loss's variables ``a``, ``b``, ``alpha`` lag the model, and
    the ranking came out inverted: val AUROC 0.30 on PneumoniaMNIST)."""
    return 0.1 if loss == "aucm" else 2e-3


def _positive_index(config: TrainConfig, data: Prepared) -> int:
    names = list(data.class_names)
    if config.positive_class is None:
        return default_positive_class(names, data.train_counts())
    if config.positive_class not in names:
        raise ConfigError(
            f"positive class {config.positive_class!r} is not a class of this data "
            f"({', '.join(names)}); give one of them to --positive-class"
        )
    return names.index(config.positive_class)


def _check_policy(config: TrainConfig, names: tuple[str, ...]) -> None:
    from medbalance.evaluation.decision import is_binary_policy

    if len(names) == 2 and not is_binary_policy(config.threshold):
        raise ConfigError(
            f"threshold {config.threshold!r} is a multi-class rule, but {config.data} has two "
            f"classes ({', '.join(names)}); give a binary policy: youden, f1, "
            "'sensitivity>=0.95', 'specificity>=0.9', 'cost:FN=5,FP=1' or a number"
        )
    if len(names) > 2 and not is_binary_policy(config.threshold):
        from medbalance.evaluation.multiclass_rules import parse_multiclass_rule

        costs = parse_multiclass_rule(config.threshold).costs
        if costs is not None and len(costs) != len(names):
            raise ConfigError(
                f"threshold {config.threshold!r} is a {len(costs)}x{len(costs)} cost matrix, "
                f"but {config.data} has {len(names)} classes ({', '.join(names)}); give one "
                "row (true class) and one column (call) per class, in this order"
            )


def check_tuning_cases(
    config: TrainConfig,
    data: Prepared,
    positive: int,
    *,
    tuning: np.ndarray | None = None,
    split: str = "val",
) -> None:
    """Refuse a guarantee before the first epoch rather than after training: it needs two
    classes and enough tuning cases of the constrained class to reach its bound.

    Args:
        config: the run's config (its ``threshold`` and ``guarantee``).
        data: the prepared data.
        positive: the positive class's index.
        tuning: the indices of the tuning cases (default: the val split; ``cv``: the
            out-of-fold pool).
        split: their name, for the message.

    Raises:
        ConfigError: more than two classes, or too few cases (naming how many are needed).
    """
    from medbalance.evaluation.guarantee import check_guarantee_cases

    if config.guarantee is None:
        return
    names = tuple(data.class_names)
    if len(names) != 2:
        raise ConfigError(
            f"guarantee {config.guarantee!r} bounds a binary sensitivity or specificity, but "
            f"{config.data} has {len(names)} classes ({', '.join(names)}); drop --guarantee"
        )
    cases = data.indices("val") if tuning is None else tuning
    if len(cases):
        try:
            check_guarantee_cases(
                config.threshold, config.guarantee, data.catalog.labels[cases] == positive,
                split=split,
            )  # fmt: skip
        except ValueError as error:
            raise ConfigError(f"{config.data}: {error}") from None


def order_classes(config: TrainConfig, data: Prepared) -> Prepared:
    """The data with its classes indexed in the config's order.

    ``class_order`` gives the order; ``ordinal`` without it orders number names numerically
    (``"10"`` after ``"9"``); otherwise the data keeps its sorted names (and is returned
    unchanged, as it is when already in order). Only the labels are re-indexed, after the
    splits were drawn and the images presized, so the splits and the presize cache stay those
    of an unordered run.

    Raises:
        ConfigError: ``ordinal`` on two classes, or on class names that are not numbers
            without ``class_order``.
        DataError: ``class_order`` is not a permutation of the data's classes.
    """
    names = tuple(data.class_names)
    order = config.class_order
    look_alike = look_alike_classes(names)
    if look_alike and order is None:
        pairs = "; ".join(" and ".join(repr(n) for n in group) for group in look_alike)
        raise ConfigError(
            f"the classes {pairs} of {config.data} differ only by letter case or spaces: merge "
            "their folders if they are one class, or confirm they are different classes with "
            f"--class-order {','.join(names)}"
        )
    if config.ordinal and len(names) < 3:
        raise ConfigError(
            f"--ordinal needs three or more grades, but {config.data} has two classes "
            f"({', '.join(names)}); drop --ordinal: two ordered classes are a binary task, "
            "judged by AUROC and by sensitivity and specificity at the chosen threshold"
        )
    if order is None and config.ordinal:
        order = numeric_order(names)
        if order is None:
            raise ConfigError(
                f"--ordinal needs the grade order, but the classes of {config.data} "
                f"({', '.join(names)}) are not all numbers; give it lowest grade first with "
                f"--class-order (e.g. --class-order {','.join(names)})"
            )
    if order is None or order == names:
        return data
    catalog = with_class_order(data.catalog, order)
    log.debug("class order: %s", ", ".join(order))  # the run header lists the classes in order
    return dataclasses.replace(data, catalog=catalog, fingerprint=fingerprint(catalog))


def _check_auc_margin(config: TrainConfig, names: tuple[str, ...]) -> None:
    """``--loss aucm`` and ``--sampler dual`` rank one class against the other: two classes only;
    the loss also needs MONAI and trains its own variables, so no DRW."""
    import importlib.util

    sampler = config.sampler.partition(":")[0]
    for used, what in (
        (config.loss == "aucm", "--loss aucm"),
        (sampler == "dual", "--sampler dual"),
    ):
        if used and len(names) != 2:
            raise ConfigError(
                f"{what} ranks a positive class against the other and needs two classes, but "
                f"{config.data} has {len(names)} ({', '.join(names)}); use it on binary data, "
                "or another loss/sampler (e.g. 'ce' with 'balanced-batches')"
            )
    if config.loss != "aucm":
        return
    if config.drw:
        raise ConfigError(
            "--loss aucm cannot be combined with deferred re-weighting (drw): the AUC-margin loss "
            "takes no class weights; drop drw"
        )
    if importlib.util.find_spec("monai") is None:
        raise ConfigError(
            "--loss aucm needs MONAI, which is not installed: pip install 'medbalance[monai]'"
        )


def resolve_for_data(
    config: TrainConfig, data: Prepared, native: int | None
) -> tuple[ResolvedConfig, Plan]:
    """The config checked against and completed by the prepared data, and its epoch plan."""
    names = tuple(data.class_names)
    policy = policy_for_task(config.threshold, len(names), ordinal=bool(config.ordinal))
    config = dataclasses.replace(config, threshold=policy)
    _check_policy(config, names)
    _check_auc_margin(config, names)
    positive = _positive_index(config, data)
    check_tuning_cases(config, data, positive)
    values = config.to_dict()
    plan = plan_epochs(config, data.catalog.labels[data.indices("train")])
    values["epochs"] = plan.epochs
    if config.drw and config.drw_epoch is None:
        values["drw_epoch"] = default_drw_epoch(plan.epochs)
    resolved = ResolvedConfig(
        **values,
        class_names=names,
        positive_index=positive,
        native_size=native,
    )
    return resolved, plan


def prepare_run(
    config: TrainConfig,
    *,
    data: Prepared | None = None,
    device: torch.device | None = None,
    dist_info: DistInfo | None = None,
    for_training: bool = True,
) -> PreparedRun:
    """Resolve ``config`` for its data and device and prepare the data (unless given).

    Under DDP rank 0 fills the presize cache first; the other ranks then read it.
    ``for_training=False`` (evaluating other data) accepts data without train or val images.

    Raises:
        ConfigError: a value that the data rules out (a multi-class rule on binary data, an
            unknown positive class).
        ValueError, FileNotFoundError: the data cannot be read.
    """
    info = dist_info or DistInfo()
    device = device or select_device(config.device)
    native = native_size(config.data) if data is None else _array_side(data)
    sized = resolve_sizes(config, native, device)
    if data is None:
        if not info.is_main:
            barrier(info)
        assert sized.presize is not None  # filled by resolve_sizes
        data = prepare_data(
            sized.data,
            presize_to=sized.presize,
            seed=sized.seed,
            resplit_val_fraction=sized.resplit_val,
            group_pattern=sized.group_pattern,
            group_column=sized.group_column,
            skip_unreadable=sized.skip_unreadable,
            for_training=for_training,
        )
        if info.is_main:
            barrier(info)
    sized = resolve_task(sized, tuple(data.class_names))
    data = order_classes(sized, data)
    resolved, plan = resolve_for_data(sized, data, native)
    return PreparedRun(resolved, data, device, plan)


def resolve_task(config: TrainConfig, names: tuple[str, ...]) -> TrainConfig:
    """``ordinal`` when not given: grades when there are three or more classes all named by
    numbers and :data:`GRADES_AS_ORDINAL` says so (the suite's choice), else plain classes; the
    ``auto`` sampler follows the task."""
    if config.ordinal is not None:
        return config
    grades = len(names) > 2 and numeric_order(names) is not None
    return dataclasses.replace(config, ordinal=GRADES_AS_ORDINAL and grades)
