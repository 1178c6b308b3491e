from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from conftest import write_npz, write_tree
from medbalance.data.catalog import DataError, SourceKind, load_catalog


def test_split_tree_counts_and_classes(tiny_tree: Path) -> None:
    catalog = load_catalog(tiny_tree)
    assert catalog.kind is SourceKind.FOLDER
    assert catalog.class_names == ("normal", "pneumonia")
    assert catalog.class_counts("train").tolist() == [40, 10]
    assert catalog.class_counts("val").tolist() == [12, 12]
    assert catalog.class_counts("test").tolist() == [10, 10]
    assert catalog.paths is not None and all(p.is_absolute() for p in catalog.paths)
    assert catalog.origins[0].startswith("test/normal/")


def test_pool_tree_is_unassigned_and_valid_counts_as_val(tmp_path: Path) -> None:
    pool = load_catalog(write_tree(tmp_path / "pool", {"a": 3, "b": 2}))
    assert set(pool.splits.tolist()) == {""}
    tree = write_tree(tmp_path / "kaggle", {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    assert load_catalog(tree).class_counts("val").tolist() == [1, 1]


def test_extensions_case_insensitive_and_junk_reported(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a": 2, "b": 2}, ext=".PNG")
    (root / "a" / ".DS_Store").write_bytes(b"junk")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._img.png").write_bytes(b"junk")
    (root / "b" / "notes.txt").write_text("not an image")
    catalog = load_catalog(root)
    assert len(catalog) == 4
    assert sorted(catalog.ignored) == ["__MACOSX", "a/.DS_Store", "b/notes.txt"]


def test_missing_path_and_unknown_name() -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_catalog("does/not/exist")
    with pytest.raises(ValueError, match="did you mean 'pneumoniamnist'"):
        load_catalog("pneumonimnist")


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({"only": 3}, "found only class 'only'"),
        ({"a": 3, "b": 0}, "class folder 'b' .* holds 0 images .* remove the folder or add images"),
    ],
)
def test_bad_trees(tmp_path: Path, counts: dict[str, int], match: str) -> None:
    root = write_tree(tmp_path / "d", counts)
    (root / "b").mkdir(exist_ok=True)
    if "b" not in counts:
        (root / "b").rmdir()
    with pytest.raises(DataError, match=match):
        load_catalog(root)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders and no images"):
        load_catalog(tmp_path / "empty")


def test_group_pattern(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for name, files in {"a": ["p1_x.png", "p1_y.png", "p2_x.png"], "b": ["p3_x.png"]}.items():
        (root / name).mkdir(parents=True)
        for f in files:
            Image.new("L", (8, 8)).save(root / name / f)
    catalog = load_catalog(root, group_pattern=r"^(p\d+)_")
    assert catalog.groups is not None and catalog.groups.tolist() == ["p1", "p1", "p2", "p3"]
    with pytest.raises(DataError, match="finds no patient id in 4 file name"):
        load_catalog(root, group_pattern=r"^q\d")


def test_medmnist_name_resolves_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_npz(tmp_path / "breastmnist.npz", {"train": (5, 5)})
    monkeypatch.setenv("MEDBALANCE_DATA", str(tmp_path))
    catalog = load_catalog("breastmnist")
    assert catalog.class_names == ("malignant", "normal, benign")


def test_medmnist_offline_fails_fast_with_where_to_put(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(
        FileNotFoundError, match="pneumoniamnist.npz was not found in .*MEDBALANCE_DATA"
    ):
        load_catalog("pneumoniamnist")


def test_chestmnist_refused() -> None:
    with pytest.raises(ValueError, match="chestmnist is multi-label"):
        load_catalog("chestmnist")


@pytest.mark.realdata
def test_real_chest_xray_mini(shared_data: Path) -> None:
    catalog = load_catalog(shared_data / "chest_xray_mini")
    counts = {s: catalog.class_counts(s).tolist() for s in ("train", "val", "test")}
    assert counts == {"train": [30, 90], "val": [8, 8], "test": [18, 30]}
    assert catalog.class_names == ("NORMAL", "PNEUMONIA")


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("pneumoniamnist", {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]}),
        ("breastmnist", {"train": [147, 399], "val": [21, 57], "test": [42, 114]}),
    ],
)
def test_real_medmnist(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch, name: str, counts: dict[str, list[int]]
) -> None:
    monkeypatch.setenv("MEDBALANCE_DATA", str(shared_data))
    catalog = load_catalog(name)
    assert {s: catalog.class_counts(s).tolist() for s in counts} == counts


def test_folder_walk_order_links_and_ignored_entries(tmp_path: Path) -> None:
    import os

    root = write_tree(tmp_path / "data", {"a": 2, "b": 2})
    nested = root / "a" / "sub"
    nested.mkdir()
    Image.new("L", (8, 8)).save(nested / "deep.png")
    Image.new("L", (8, 8)).save(root / "a" / "sub.png")  # sorts after the folder "sub"
    (root / "a" / ".hidden").mkdir()
    Image.new("L", (8, 8)).save(root / "a" / ".hidden" / "x.png")
    outside = tmp_path / "outside.png"
    Image.new("L", (8, 8)).save(outside)
    os.symlink(outside, root / "b" / "linked.png")
    os.symlink(tmp_path / "missing.png", root / "b" / "broken.png")
    os.symlink(nested, root / "b" / "loop")
    catalog = load_catalog(root)
    a_files = [o for o in catalog.origins if o.startswith("a/")]
    assert a_files[-2:] == ["a/sub/deep.png", "a/sub.png"]  # sorted(rglob) order
    assert "b/linked.png" in catalog.origins
    assert catalog.paths is not None and root / "b" / "linked.png" in catalog.paths
    assert {"a/.hidden/x.png", "b/broken.png", "b/loop"} <= set(catalog.ignored)
    assert not any(o.startswith("a/.hidden") for o in catalog.origins)


def test_link_loops_are_skipped_and_listed(tmp_path: Path) -> None:
    from conftest import write_tree
    from medbalance.data.catalog import load_catalog

    data = write_tree(tmp_path / "data", {"a": 4, "b": 4})
    (data / "a" / "self").symlink_to("self")  # ELOOP
    (data / "a" / "x1.png").symlink_to("x2")
    (data / "a" / "x2").symlink_to("x1.png")
    (data / "loop").symlink_to("loop")  # beside the class folders
    catalog = load_catalog(str(data))
    assert len(catalog) == 8
    assert {"a/self", "a/x1.png", "a/x2", "loop"} <= set(catalog.ignored)


def test_medbalance_data_resolves_any_folder_or_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import write_tree
    from medbalance.data.catalog import load_catalog

    write_tree(tmp_path / "shared" / "knee_like", {"0": 4, "1": 4, "2": 4})
    monkeypatch.setenv("MEDBALANCE_DATA", str(tmp_path / "shared"))
    monkeypatch.chdir(tmp_path)
    catalog = load_catalog("knee_like")
    assert catalog.class_names == ("0", "1", "2") and len(catalog) == 12
    with pytest.raises((FileNotFoundError, ValueError)):
        load_catalog("no_such_set")
