"""Train/val/test splits: keep the given ones, make missing ones, carve a bigger val split.

Every split made here is stratified by class and, when the catalog has group (patient) ids,
grouped, so that no patient lands in two splits. Test images are never moved.
"""

from __future__ import annotations

import numpy as np

from medbalance.data.catalog import Catalog, DataError

__all__ = [
    "TINY_VAL_CLASS",
    "TINY_VAL_TOTAL",
    "assign_splits",
    "load_split_catalog",
    "resplit_val",
    "tiny_val_reason",
]

TINY_VAL_TOTAL = 50
TINY_VAL_CLASS = 10


def _carve_for(
    catalog: Catalog, labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int
) -> np.ndarray:
    """:func:`_carve`, with a too-small data set refused in words that name the data."""
    try:
        return _carve(labels, groups, fraction, seed)
    except ValueError as error:  # scikit-learn's: too few items (or groups) to stratify
        raise DataError(
            f"{catalog.source}: {len(labels)} images are too few to carve a stratified "
            f"{fraction:.0%} split holding every class ({error}); add images, or give the "
            "splits yourself (ROOT/train, ROOT/val, ROOT/test or a split column)"
        ) from None


def _carve(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified (and grouped) share ``fraction`` of the items."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(labels)
    mask = np.zeros(n, dtype=bool)
    if groups is None:
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 else None
        _, chosen = train_test_split(
            np.arange(n), test_size=fraction, stratify=stratify, random_state=seed
        )
        mask[chosen] = True
        return mask
    n_folds = max(2, round(1.0 / fraction))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, chosen = next(folds.split(np.zeros(n), labels, groups=groups))
    mask[chosen] = True
    return mask


def assign_splits(
    catalog: Catalog, *, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> Catalog:
    """Give unassigned items a split; a catalog whose items all have one is returned as is."""
    if not (catalog.splits == "").any():
        return catalog
    if (catalog.splits != "").any():
        raise DataError(f"{catalog.source}: some items have a split and some do not")
    splits = np.full(len(catalog), "train", dtype="<U5")
    test = _carve_for(catalog, catalog.labels, catalog.groups, test_fraction, seed)
    splits[test] = "test"
    rest = np.flatnonzero(~test)
    groups = None if catalog.groups is None else catalog.groups[rest]
    val = _carve_for(
        catalog, catalog.labels[rest], groups, val_fraction / (1.0 - test_fraction), seed + 1
    )
    splits[rest[val]] = "val"
    return catalog.replace(splits=splits)


def tiny_val_reason(catalog: Catalog) -> str | None:
    """Why the validation split is too small to choose checkpoints or thresholds, or None."""
    counts = catalog.class_counts("val")
    total = int(counts.sum())
    if total == 0:
        return "there is no val split"
    if total < TINY_VAL_TOTAL or counts.min() < TINY_VAL_CLASS:
        per_class = ", ".join(f"{n} {c}" for c, n in zip(catalog.class_names, counts, strict=True))
        return (
            f"the val split holds only {total} images ({per_class}); fewer than "
            f"{TINY_VAL_TOTAL} images or {TINY_VAL_CLASS} of a class make checkpoint and "
            "threshold choice noise"
        )
    return None


def resplit_val(catalog: Catalog, fraction: float, *, seed: int = 0) -> Catalog:
    """Pool train and val, then carve a stratified, patient-grouped val split of ``fraction``.

    ``fraction`` is the share of the pooled train+val images that becomes val. Test images keep
    their split; a patient who has test images is never moved into val or train from test.
    """
    pool = np.flatnonzero(np.isin(catalog.splits, ("train", "val")))
    if len(pool) == 0:
        raise DataError(f"{catalog.source}: no train or val images to carve a val split from")
    groups = None if catalog.groups is None else catalog.groups[pool]
    val = _carve_for(catalog, catalog.labels[pool], groups, fraction, seed)
    splits = catalog.splits.copy()
    splits[pool] = np.where(val, "val", "train")
    return catalog.replace(splits=splits)


def load_split_catalog(
    data: str,
    *,
    group_pattern: str | None = None,
    group_column: str | None = None,
    allow_outside: bool = False,
    val_fraction: float | None = None,
    seed: int = 0,
) -> Catalog:
    """Load ``data``, assign its splits and, with ``val_fraction``, carve a new val split (as
    ``--resplit-val`` does): what ``inspect`` looks at."""
    from medbalance.data.catalog import load_catalog

    catalog = load_catalog(
        data, group_pattern=group_pattern, group_column=group_column, allow_outside=allow_outside
    )
    catalog = assign_splits(catalog, seed=seed)
    if val_fraction is not None:
        catalog = resplit_val(catalog, val_fraction, seed=seed)
    return catalog
