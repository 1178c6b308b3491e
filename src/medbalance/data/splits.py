"""Train/val/test splits: keep the given ones, make missing ones, carve a bigger val split.

Every split made here is stratified by class and grouped: the images of one patient (when the
catalog has patient ids) and byte-identical files (or identical rows of an array) land in the same
split, so that neither a patient nor an image is trained on and scored. Test images are never
moved. The catalog records which splits were made here (``Catalog.carved``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from medbalance.data.catalog import SPLITS, Catalog, DataError
from medbalance.data.identical import (
    identical_groups,
    item_digests,
    split_groups,
    with_digests,
)

__all__ = [
    "TINY_VAL_CLASS",
    "TINY_VAL_TOTAL",
    "assign_splits",
    "load_split_catalog",
    "resplit_val",
    "tiny_val_reason",
]

log = logging.getLogger(__name__)
TINY_VAL_TOTAL = 50
TINY_VAL_CLASS = 10


def _carve_for(
    catalog: Catalog, items: np.ndarray, digests: Sequence[str | None], fraction: float, seed: int
) -> np.ndarray:
    """A stratified, grouped share ``fraction`` of ``items`` (a boolean mask over them), with a
    too-small data set refused in words that name the data."""
    groups, _ = split_groups(catalog, items, digests)
    labels = catalog.labels[items]
    try:
        return _carve(labels, groups, fraction, seed, patients=catalog.groups is not None)
    except ValueError as error:  # scikit-learn's: too few items (or groups) to stratify
        grouped = (
            ""
            if groups is None
            else f" in {len(set(groups.tolist()))} group(s) (a patient's images and identical "
            "files stay together)"
        )
        raise DataError(
            f"{catalog.source}: {len(labels)} images{grouped} are too few to carve a stratified "
            f"{fraction:.0%} split holding every class ({error}); add images, or give the "
            "splits yourself (ROOT/train, ROOT/val, ROOT/test or a split column)"
        ) from None


def _carve(
    labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int, *, patients: bool
) -> np.ndarray:
    """Boolean mask of a stratified share ``fraction`` of the items, whole groups at a time.

    Patient groups go through scikit-learn's ``StratifiedGroupKFold`` (one fold); groups of
    identical content alone (nearly all of one item) are carved as units, which keeps the share
    exact and costs no more than an ungrouped carve.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(labels)
    if groups is None:
        return _carve_units(labels, fraction, seed)
    if not patients:
        _, first, unit = np.unique(groups, return_index=True, return_inverse=True)
        return _carve_units(labels[first], fraction, seed)[unit]
    mask = np.zeros(n, dtype=bool)
    n_folds = max(2, round(1.0 / fraction))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, chosen = next(folds.split(np.zeros(n), labels, groups=groups))
    mask[chosen] = True
    return mask


def _carve_units(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a share ``fraction`` of the units, stratified by ``labels`` when every
    class has two units or more."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    mask = np.zeros(n, dtype=bool)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    _, chosen = train_test_split(
        np.arange(n), test_size=fraction, stratify=stratify, random_state=seed
    )
    mask[chosen] = True
    return mask


def _say_kept(catalog: Catalog, items: np.ndarray, digests: Sequence[str | None]) -> None:
    """Log how many groups of identical items the splits just made kept together."""
    n_identical = len(identical_groups([digests[i] for i in items]))
    if n_identical:
        what = "files" if catalog.paths is not None else "images"
        log.info(
            "%s: kept %d group(s) of identical %s in one split each, as a patient's images are",
            catalog.source,
            n_identical,
            what,
        )


def assign_splits(
    catalog: Catalog, *, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> Catalog:
    """Give unassigned items a split; a catalog whose items all have one is returned as is.

    The splits are stratified by class and keep each patient's images and each group of
    identical files together (files are hashed here unless ``catalog.digests`` holds them).
    """
    if not (catalog.splits == "").any():
        return catalog
    if (catalog.splits != "").any():
        raise DataError(f"{catalog.source}: some items have a split and some do not")
    catalog = with_digests(catalog)
    digests = item_digests(catalog)
    everything = np.arange(len(catalog))
    splits = np.full(len(catalog), "train", dtype="<U5")
    test = _carve_for(catalog, everything, digests, test_fraction, seed)
    splits[test] = "test"
    rest = np.flatnonzero(~test)
    val = _carve_for(catalog, rest, digests, val_fraction / (1.0 - test_fraction), seed + 1)
    splits[rest[val]] = "val"
    _say_kept(catalog, everything, digests)
    return catalog.replace(splits=splits, carved=SPLITS)


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
    """Pool train and val, then carve a stratified val split of ``fraction`` that keeps each
    patient's images and each group of identical files together.

    ``fraction`` is the share of the pooled train+val images that becomes val. Test images keep
    their split; a patient who has test images is never moved into val or train from test.
    """
    pool = np.flatnonzero(np.isin(catalog.splits, ("train", "val")))
    if len(pool) == 0:
        raise DataError(f"{catalog.source}: no train or val images to carve a val split from")
    catalog = with_digests(catalog)
    digests = item_digests(catalog)
    val = _carve_for(catalog, pool, digests, fraction, seed)
    splits = catalog.splits.copy()
    splits[pool] = np.where(val, "val", "train")
    _say_kept(catalog, pool, digests)
    carved = tuple(s for s in SPLITS if s in {*catalog.carved, "train", "val"})
    return catalog.replace(splits=splits, carved=carved)


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
