from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from _imagegen import noise, save_image, write_images, write_split_tree
from medbalance.data.catalog import SPLITS, Catalog, DataError, SourceKind, load_catalog
from medbalance.data.identical import identical_groups, item_digests
from medbalance.data.splits import assign_splits, load_split_catalog, resplit_val, tiny_val_reason


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


def _planted_pool(root: Path) -> Path:
    """A pool of 60 a and 30 b noise PNGs, plus 12 copies under new names: 9 of a's files
    within a, and 3 of a's files filed under b as well (conflicting labels)."""
    write_images(root / "a", 60)
    write_images(root / "b", 30)
    for i in range(9):
        shutil.copy(root / "a" / f"img_{i}.png", root / "a" / f"copy_{i}.png")
    for i in range(9, 12):
        shutil.copy(root / "a" / f"img_{i}.png", root / "b" / f"copy_{i}.png")
    return root


def _splits_of_identical(catalog: Catalog) -> list[set[str]]:
    return [{str(catalog.splits[i]) for i in g} for g in identical_groups(item_digests(catalog))]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_assign_splits_keeps_identical_files_in_one_split(tmp_path: Path, seed: int) -> None:
    catalog = assign_splits(load_catalog(_planted_pool(tmp_path / "pool")), seed=seed)
    groups = _splits_of_identical(catalog)
    assert len(groups) == 12 and all(len(splits) == 1 for splits in groups)
    counts = {s: int((catalog.splits == s).sum()) for s in SPLITS}
    assert counts["test"] == pytest.approx(0.15 * 102, abs=3)  # carved as units: shares hold
    assert counts["val"] == pytest.approx(0.15 * 102, abs=3)
    assert catalog.carved == SPLITS


def test_identical_files_kept_together_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="medbalance"):
        load_split_catalog(str(_planted_pool(tmp_path / "pool")), val_fraction=0.3)
    kept = [r.getMessage() for r in caplog.records if "identical files" in r.getMessage()]
    assert len(kept) == 2  # the assignment, then the val carve
    assert "kept 12 group(s) of identical files in one split each" in kept[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resplit_val_keeps_identical_files_together_and_leaves_test(
    tmp_path: Path, seed: int
) -> None:
    root = write_split_tree(
        tmp_path / "data", {"train": {"a": 40, "b": 20}, "val": {"a": 6, "b": 6}, "test": {"a": 8}}
    )
    for i in range(10):  # train/val copies that a carve could separate
        shutil.copy(root / "train" / "a" / f"img_{i}.png", root / "val" / "a" / f"dup_{i}.png")
    shutil.copy(root / "test" / "a" / "img_0.png", root / "train" / "a" / "from_test.png")
    catalog = load_catalog(root)
    assert catalog.carved == ()  # the user's splits
    carved = resplit_val(catalog, 0.3, seed=seed)
    assert (carved.splits[catalog.splits == "test"] == "test").all()
    groups = _splits_of_identical(carved)
    assert sorted(map(len, groups)).count(1) == 10  # every pool pair in one split
    assert {"test"} < next(g for g in groups if len(g) > 1)  # the test copy was never moved
    assert carved.carved == ("train", "val")


def _array_catalog(images: np.ndarray, labels: np.ndarray, groups: list[str] | None) -> Catalog:
    return Catalog(
        source=Path("mem.npz"),
        kind=SourceKind.NPZ,
        class_names=("a", "b"),
        labels=labels,
        splits=np.full(len(labels), "", dtype="<U5"),
        origins=tuple(f"images[{i}]" for i in range(len(labels))),
        images=images,
        groups=None if groups is None else np.array(groups, dtype=object),
    )


@pytest.mark.parametrize("patients", [False, True])
def test_identical_array_rows_and_patients_form_one_group(patients: bool) -> None:
    labels = np.array([0] * 150 + [1] * 60, dtype=np.int64)
    images = np.stack([noise(i, (8, 8)) for i in range(len(labels))])
    for i in range(0, 40, 2):  # rows 2k+1 repeat rows 2k
        images[i + 1] = images[i]
    # patients of three images each; row 150 repeats row 3, joining patients p1 and p50
    images[150] = images[3]
    groups = [f"p{i // 3}" for i in range(len(labels))] if patients else None
    for seed in range(3):
        catalog = assign_splits(_array_catalog(images, labels, groups), seed=seed)
        assert all(len(splits) == 1 for splits in _splits_of_identical(catalog))
        if patients:
            joined = np.isin(np.asarray(groups), ["p1", "p50"])
            assert len(set(catalog.splits[joined])) == 1


@pytest.mark.realdata
def test_real_blood_cells_keep_their_identical_pairs_together(shared_data: Path) -> None:
    catalog = assign_splits(load_catalog(shared_data / "blood_cells_pbc"), seed=0)
    groups = _splits_of_identical(catalog)
    assert len(groups) == 3 and all(len(splits) == 1 for splits in groups)


def test_all_identical_files_are_one_group_too_few_to_split(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for i in range(6):
            save_image(tmp_path / "d" / name / f"{i}.png", np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(
        DataError, match=r"12 images in 1 group\(s\) .*identical files stay together"
    ):
        assign_splits(load_catalog(tmp_path / "d"))
