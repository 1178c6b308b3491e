from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medbalance.data.catalog import Catalog, SourceKind
from medbalance.data.splits import assign_splits, resplit_val, tiny_val_reason


def _catalog(n0: int, n1: int, *, groups: bool, splits: list[str] | None = None) -> Catalog:
    labels = np.array([0] * n0 + [1] * n1, dtype=np.int64)
    n = len(labels)
    return Catalog(
        source=Path("mem"),
        kind=SourceKind.NPZ,
        class_names=("a", "b"),
        labels=labels,
        splits=np.array(splits or [""] * n, dtype="<U5"),
        origins=tuple(str(i) for i in range(n)),
        groups=np.array([f"p{i // 3}" for i in range(n)], dtype=object) if groups else None,
    )


@pytest.mark.parametrize("groups", [False, True])
def test_assign_splits_stratified_and_grouped(groups: bool) -> None:
    catalog = assign_splits(_catalog(300, 60, groups=groups), seed=3)
    shares = {s: catalog.class_counts(s) for s in ("train", "val", "test")}
    for split, share in (("val", 0.15), ("test", 0.15), ("train", 0.70)):
        assert shares[split].sum() == pytest.approx(360 * share, abs=12)
        assert shares[split][1] / shares[split].sum() == pytest.approx(60 / 360, abs=0.04)
    if groups:
        assert catalog.groups is not None
        for patient in np.unique(catalog.groups):
            assert len(set(catalog.splits[catalog.groups == patient])) == 1


def test_assign_splits_is_seeded() -> None:
    a = assign_splits(_catalog(100, 20, groups=False), seed=1).splits
    b = assign_splits(_catalog(100, 20, groups=False), seed=1).splits
    c = assign_splits(_catalog(100, 20, groups=False), seed=2).splits
    assert (a == b).all() and not (a == c).all()


def test_tiny_val_and_resplit_never_moves_test() -> None:
    splits = (
        ["train"] * 100 + ["val"] * 8 + ["test"] * 30 + ["train"] * 30 + ["val"] * 8 + ["test"] * 20
    )
    catalog = _catalog(138, 58, groups=True, splits=splits)
    reason = tiny_val_reason(catalog)
    assert reason is not None and "only 16 images (8 a, 8 b)" in reason
    carved = resplit_val(catalog, 0.4, seed=0)
    assert (carved.splits[catalog.splits == "test"] == "test").all()
    assert (carved.splits[catalog.splits != "test"] != "test").all()
    assert tiny_val_reason(carved) is None
    assert carved.groups is not None
    pool = carved.splits != "test"
    for patient in np.unique(carved.groups[pool]):
        assert len(set(carved.splits[pool & (carved.groups == patient)])) == 1


def test_bad_fraction() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        resplit_val(_catalog(10, 10, groups=False, splits=["train"] * 20), 1.5)
