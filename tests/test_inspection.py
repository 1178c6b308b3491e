from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _imagegen import noise, save_image, write_images, write_ordinal_tree, write_split_tree
from conftest import write_npz
from medbalance.cli.app import app
from medbalance.data.catalog import load_catalog
from medbalance.data.inspection import Inspection, inspect_catalog, write_inspection
from medbalance.data.splits import load_split_catalog

SMALL = {"train": {"a": 6, "b": 2}, "val": {"a": 3, "b": 3}, "test": {"a": 4, "b": 2}}


def inspect(source: Path, *, skip_unreadable: bool = False) -> Inspection:
    return inspect_catalog(load_catalog(source), skip_unreadable=skip_unreadable, workers=1)


def only(inspection: Inspection, code: str) -> str:
    """The one finding with ``code``, as message plus items."""
    found = inspection.with_code(code)
    assert len(found) == 1, [f.code for f in inspection.findings]
    return found[0].message + "\n" + "\n".join(found[0].items)


def test_counts_shares_ratios_and_ranges(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    save_image(root / "train" / "a" / "wide.png", size=(24, 16))
    (root / "train" / "a" / ".DS_Store").write_bytes(b"junk")
    result = inspect(root)
    assert list(result.splits) == ["train", "val", "test"]
    train = result.splits["train"]
    assert (train.count, train.classes["a"].count, train.classes["b"].count) == (9, 7, 2)
    assert train.imbalance_ratio == 3.5
    assert train.classes["a"].share == pytest.approx(7 / 9)
    assert train.classes["a"].width == (16, 24)
    assert train.classes["a"].height == (16, 16)
    assert train.classes["a"].modes == {"L": 7}
    assert train.classes["a"].bit_depths == {8: 7}
    assert result.splits["val"].imbalance_ratio == 1.0
    assert result.imbalance_ratio == pytest.approx(14 / 7)
    assert result.n_items == 21
    assert "train/a/.DS_Store" in only(result, "ignored-files")
    assert not result.with_code("shortcut")
    text = result.format_text()
    assert "train: 9 images, imbalance ratio 3.50" in text
    assert "16–24 × 16" in text


def test_sixteen_bit_images_are_counted_by_mode_and_depth(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    save_image(root / "train" / "b" / "deep.png", (noise(3).astype(np.uint16) * 257))
    b = inspect(root).splits["train"].classes["b"]
    assert (b.modes, b.bit_depths) == ({"L": 2, "I;16": 1}, {8: 2, 16: 1})
    assert "I;16 1, L 2 (8-bit 2, 16-bit 1)" in inspect(root).format_text()


def test_byte_duplicate_across_splits_is_reported_as_a_leak(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    shutil.copy(root / "train" / "a" / "img_0.png", root / "test" / "a" / "copy.png")
    text = only(inspect(root), "duplicate-bytes")
    assert text.startswith("LEAK: 1 of 1 group(s) of byte-identical files cross splits")
    assert "keep one copy of each" in text  # the user's own split separates them
    assert "train/a/img_0.png = test/a/copy.png [LEAK across train and test]" in text
    assert not inspect(root).with_code("duplicate-pixels")


def test_identical_files_in_a_split_medbalance_made_get_no_keep_one_copy_advice(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pool"
    write_images(root / "a", 30)
    write_images(root / "b", 20)
    shutil.copy(root / "a" / "img_0.png", root / "a" / "copy.png")
    shutil.copy(root / "a" / "img_1.png", root / "b" / "copy.png")  # conflicting labels
    for catalog in (load_catalog(root), load_split_catalog(str(root), seed=4)):
        text = only(inspect_catalog(catalog, workers=1), "duplicate-bytes")
        assert text.startswith(
            "2 group(s) of byte-identical files; medbalance keeps each group in one split when "
            "it makes the splits, as it does a patient's images; 1 group(s) carry conflicting "
            "labels; fix the labels"
        )
        assert "LEAK" not in text and "keep one copy" not in text


def test_byte_duplicate_within_a_split_with_conflicting_labels(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    shutil.copy(root / "train" / "a" / "img_0.png", root / "train" / "b" / "copy.png")
    text = only(inspect(root), "duplicate-bytes")
    assert "LEAK" not in text
    assert "each within one split; 1 group(s) carry conflicting labels" in text
    assert "[within train; conflicting labels a/b]" in text


def test_same_pixels_in_png_and_bmp_are_pixel_duplicates(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    pixels = noise(7)
    save_image(root / "train" / "a" / "scan.png", pixels)
    save_image(root / "train" / "a" / "scan.bmp", pixels)
    result = inspect(root)
    text = only(result, "duplicate-pixels")
    assert "pixel-identical images in differently encoded files" in text
    assert "train/a/scan.bmp = train/a/scan.png [within train]" in text
    assert not result.with_code("duplicate-bytes")


def test_patient_in_two_splits_from_a_csv_manifest(tmp_path: Path) -> None:
    rows = ["path,label,split,patient_id"]
    for i, (label, split, patient) in enumerate(
        [
            ("a", "train", "P1"),
            ("a", "test", "P1"),
            ("b", "train", "P2"),
            ("b", "val", "P3"),
            ("a", "val", "P4"),
            ("b", "test", "P5"),
            ("a", "train", "P6"),
            ("b", "train", "P6"),
        ]
    ):
        save_image(tmp_path / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{label},{split},{patient}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    result = inspect(manifest)
    assert result.kind == "csv"
    text = only(result, "patient-leak")
    assert text.startswith("1 patient(s) have images in more than one split")
    assert "P1: train 1, test 1" in text
    assert "P6" not in text


def test_tiny_val_split_is_flagged_with_the_fix(tmp_path: Path) -> None:
    result = inspect(write_split_tree(tmp_path / "small", SMALL))
    text = only(result, "tiny-val")
    assert "the val split holds only 6 images (3 a, 3 b)" in text
    assert "--resplit-val 0.2" in text
    # the classes under 10 are named in the same finding, not in a second one
    assert "val holds 3 a, 3 b images (under 10 per class), so per-class metrics" in text
    assert result.with_code("tiny-val")[0].items == ["a: 3 val images", "b: 3 val images"]
    assert not result.with_code("small-val-class")
    counts = {"train": {"a": 2, "b": 2}, "val": {"a": 25, "b": 25}, "test": {"a": 2, "b": 2}}
    big_val = write_split_tree(tmp_path / "big", counts, size=(8, 8))
    assert not inspect(big_val).with_code("tiny-val")


def test_val_classes_under_ten_images_are_named_in_one_finding(tmp_path: Path) -> None:
    val = {"bacteria": 30, "normal": 6, "tuberculosis": 25, "virus": 4}  # 65 images: not tiny
    counts = {"train": dict.fromkeys(val, 2), "val": val, "test": dict.fromkeys(val, 1)}
    result = inspect(write_split_tree(tmp_path / "four", counts, size=(8, 8)))
    text = only(result, "small-val-class")
    assert text.startswith(
        "val holds 6 normal, 4 virus images (under 10 per class): per-class metrics and the "
        "decision chosen on val are noise; pass --resplit-val 0.2"
    )
    assert result.with_code("small-val-class")[0].items == ["normal: 6 val images",
                                                            "virus: 4 val images"]  # fmt: skip
    assert not result.with_code("tiny-val")
    binary = {"train": {"a": 2, "b": 2}, "val": {"a": 55, "b": 9}, "test": {"a": 1, "b": 1}}
    text = only(inspect(write_split_tree(tmp_path / "two", binary, size=(8, 8))), "small-val-class")
    assert text.startswith("val holds 9 b images (under 10 per class)")


def test_number_named_grades_get_the_ordinal_hint(tmp_path: Path) -> None:
    counts = {"train": (3, 3, 3, 3), "val": (2, 2, 2, 2), "test": (2, 2, 2, 2)}
    result = inspect(write_ordinal_tree(tmp_path / "grades", counts))
    (hint,) = result.with_code("ordinal-classes")
    assert hint.level == "info" and result.findings[-1] is hint  # after every warning
    assert "the 4 classes (0, 1, 2, 3) are all numbers" in hint.message
    assert "--ordinal" in hint.message and "--class-order 0,1,2,3" in hint.message
    assert "INFO ordinal-classes: the 4 classes" in result.format_text(width=300)
    shuffled = {"train": {"10": 2, "9": 2, "2": 2}, "val": {"10": 2, "9": 2, "2": 2}}
    text = only(inspect(write_split_tree(tmp_path / "shuffled", shuffled)), "ordinal-classes")
    assert "(2, 9, 10)" in text and "--class-order 2,9,10" in text  # numeric, not text order
    words = {"train": {"mild": 2, "none": 2, "severe": 2}}
    assert not inspect(write_split_tree(tmp_path / "words", words)).with_code("ordinal-classes")
    binary = {"train": {"0": 2, "1": 2}}
    assert not inspect(write_split_tree(tmp_path / "binary", binary)).with_code("ordinal-classes")


def test_inspect_command_prints_and_stores_the_new_findings(tmp_path: Path) -> None:
    counts = {"train": (3, 3, 3), "val": (25, 25, 5), "test": (2, 2, 2)}
    data = write_ordinal_tree(tmp_path / "grades", counts)
    result = CliRunner().invoke(app, ["inspect", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    levels = {f["code"]: f["level"] for f in summary["findings"]}
    assert levels["small-val-class"] == "warning" and levels["ordinal-classes"] == "info"
    assert "tiny-val" not in levels
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert "val holds 5 2 images (under 10 per class)" in printed
    assert "INFO ordinal-classes" in printed and "--class-order 0,1,2" in printed


def test_class_missing_from_a_split(tmp_path: Path) -> None:
    counts = {"train": {"a": 3, "b": 3}, "val": {"a": 2}, "test": {"b": 2}}
    result = inspect(write_split_tree(tmp_path / "data", counts))
    missing = result.with_code("class-missing")
    assert [(f.level, f.items) for f in missing] == [("warning", ["b"]), ("warning", ["a"])]
    assert "the val split has no images of b" in missing[0].message
    assert result.splits["val"].imbalance_ratio is None
    assert "imbalance ratio n/a" in result.format_text()
    no_train = inspect(write_split_tree(tmp_path / "other", {"train": {"a": 2}, "val": {"b": 2}}))
    assert [f.level for f in no_train.with_code("class-missing")] == ["error", "warning"]


def write_unreadable(root: Path) -> None:
    good = save_image(root / "train" / "a" / "good.png", size=(64, 64)).read_bytes()
    (root / "train" / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "test" / "b" / "notes.png").write_text("not an image\n")


def test_unreadable_files_are_an_error_listing_every_file(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    write_unreadable(root)
    result = inspect(root)
    finding = result.findings[0]  # errors come first
    assert (finding.level, finding.code) == ("error", "unreadable")
    assert finding.message.startswith("2 image(s) cannot be decoded")
    assert "--skip-unreadable" in finding.message
    assert {item.split(":")[0] for item in finding.items} == {
        "train/a/truncated.png",
        "test/b/notes.png",
    }
    assert {Path(p).name for p, _ in result.unreadable} == {"truncated.png", "notes.png"}
    assert result.splits["train"].classes["a"].count == 8  # still counted
    text = result.format_text()
    assert "ERROR unreadable" in text
    assert "truncated.png" in text
    assert "notes.png" in text


def test_skip_unreadable_makes_a_warning_and_leaves_them_out(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    write_unreadable(root)
    result = inspect(root, skip_unreadable=True)
    finding = only(result, "unreadable")
    assert result.with_code("unreadable")[0].level == "warning"
    assert "truncated.png" in finding
    assert "notes.png" in finding
    assert result.splits["train"].classes["a"].count == 7
    assert result.splits["test"].classes["b"].count == 2
    assert result.n_items == 21


def test_size_shortcut_is_found_when_each_class_has_its_own_size(tmp_path: Path) -> None:
    write_images(tmp_path / "data" / "a", 8, size=(64, 64))
    write_images(tmp_path / "data" / "b", 8, size=(32, 32))
    result = inspect(tmp_path / "data")
    assert list(result.splits) == ["unassigned"]
    assert not result.with_code("tiny-val")  # splits are made later
    assert result.feature_auroc["image width"] == {"a": 1.0, "b": 1.0}
    text = only(result, "shortcut")
    assert text.startswith("image width alone separates a from b (AUROC 1.00)")
    assert "this may be a shortcut, which a network can learn instead of what the class " in text
    assert "check whether the classes were imaged or cropped at different sizes" in text
    assert "disease" not in text  # the classes need not be diseases
    assert "presize every image to one square size" in text
    assert "image file size (AUROC 1.00)" in text  # noise PNGs grow with their size
    assert "aspect ratio" not in result.feature_auroc  # constant features are skipped


def test_no_shortcut_when_sizes_are_mixed_evenly(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / "data" / name / "big", 4, size=(64, 64))
        write_images(tmp_path / "data" / name / "small", 4, size=(32, 32))
    result = inspect(tmp_path / "data")
    assert result.feature_auroc["image width"]["a"] == 0.5
    assert not result.with_code("shortcut")


def test_shortcut_names_the_class_among_several(tmp_path: Path) -> None:
    for name, n in (("a", 4), ("b", 4), ("c", 4)):
        write_images(tmp_path / "data" / name, n, size=(16, 16), mode="RGB" if name == "c" else "L")
    text = only(inspect(tmp_path / "data"), "shortcut")
    assert text.startswith(
        "image file size alone separates c from the other classes (AUROC 1.00), "
        "and so do colour mode (1.00): this may be a shortcut"
    )
    assert "check whether the difference follows from what the images show" in text
    assert "disease" not in text and "scanner or the encoder" not in text
    assert "c 4 of 4 colour" in text


def test_write_inspection_writes_three_complete_files(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    save_image(root / "train" / "b" / "colour.png", mode="RGB")
    write_unreadable(root)
    catalog = load_catalog(root)
    result = inspect_catalog(catalog, skip_unreadable=True, workers=1)
    out = tmp_path / "out" / "inspect"
    written = write_inspection(result, catalog, out)
    assert [p.name for p in written] == ["summary.json", "class_counts.png", "samples.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temp
    for png in written[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(written[0].read_text())
    assert summary == result.to_dict()  # plain JSON types round-trip
    assert summary["counts"]["train"] == {"a": 7, "b": 3}
    assert summary["counts"]["overall"] == {"a": 14, "b": 8}
    assert summary["imbalance_ratio"]["train"] == pytest.approx(7 / 3)
    assert summary["splits"]["train"]["classes"]["a"]["width"] == [16, 64]
    assert {f["code"] for f in summary["findings"]} >= {"tiny-val", "unreadable"}
    assert len(summary["unreadable"]) == 2


def test_npz_catalog(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", {"train": (8, 4), "val": (3, 3), "test": (2, 4)})
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["test_images"][1] = arrays["train_images"][2]
    np.savez(path, **arrays)
    catalog = load_catalog(path)
    result = inspect_catalog(catalog)
    assert result.kind == "npz"
    assert {s: (x.classes["0"].count, x.classes["1"].count) for s, x in result.splits.items()} == {
        "train": (8, 4),
        "val": (3, 3),
        "test": (2, 4),
    }
    assert result.splits["train"].classes["0"].file_bytes is None
    assert "train_images[2] = test_images[1] [LEAK" in only(result, "duplicate-pixels")
    assert result.feature_auroc == {}  # every npz image has one size, depth and mode
    assert "file size" not in result.format_text()
    written = write_inspection(result, catalog, tmp_path / "out")
    assert json.loads(written[0].read_text())["counts"]["val"] == {"0": 3, "1": 3}


def test_worker_processes_give_the_same_result(tmp_path: Path) -> None:
    root = write_split_tree(tmp_path / "data", SMALL)
    write_unreadable(root)
    catalog = load_catalog(root)
    serial = inspect_catalog(catalog, workers=1)
    assert inspect_catalog(catalog, workers=2).to_dict() == serial.to_dict()
    with pytest.raises(ValueError, match="workers must be 1 or more, got 0"):
        inspect_catalog(catalog, workers=0)


@pytest.mark.realdata
def test_real_chest_xray_mini(shared_data: Path) -> None:
    result = inspect_catalog(load_catalog(shared_data / "chest_xray_mini"))
    counts = {s: [k.count for k in x.classes.values()] for s, x in result.splits.items()}
    assert counts == {"train": [30, 90], "val": [8, 8], "test": [18, 30]}
    assert result.with_code("tiny-val")
    duplicates = only(result, "duplicate-bytes")
    assert (
        "train/PNEUMONIA/person1430_bacteria_3695.jpeg = "
        "train/PNEUMONIA/person1430_bacteria_3696.jpeg [within train]"
    ) in duplicates
    assert "LEAK" not in duplicates
    assert result.feature_auroc["image file size"]["NORMAL"] > 0.8
    assert "image file size (AUROC" in only(result, "shortcut")
    assert not result.with_code("unreadable")


@pytest.mark.realdata
def test_real_pneumoniamnist(shared_data: Path) -> None:
    result = inspect_catalog(load_catalog(shared_data / "pneumoniamnist.npz"))
    counts = {s: [k.count for k in x.classes.values()] for s, x in result.splits.items()}
    assert counts == {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]}
    assert result.class_names == ("normal", "pneumonia")


def test_class_names_differing_only_by_case_are_warned_and_refused_by_train(
    tmp_path: Path,
) -> None:
    import medbalance as mb
    from conftest import write_tree
    from medbalance.training.config import ConfigError

    data = write_tree(tmp_path / "data", {"Normal": 8, "normal": 8, "lesion": 8})
    result = mb.inspect(data)
    found = [f for f in result.findings if f.code == "look-alike-classes"]
    assert found and "'Normal' and 'normal'" in found[0].message
    with pytest.raises(ConfigError, match="differ only by letter case.*--class-order"):
        mb.train(data, out=tmp_path / "run", epochs=1, device="cpu")
    assert not (tmp_path / "run").exists()


def _knee_like(root: Path, ids: range, sides: str = "LR") -> Path:
    """Two knees (or ``sides``) of each patient id, their grades (a, b) alternating."""
    for k, patient in enumerate(ids):
        for j, side in enumerate(sides):
            save_image(root / "ab"[(k + j) % 2] / f"{patient}{side}.png", size=(8, 8))
    return root


def test_patient_ids_in_file_names_get_a_group_pattern_hint_that_works(tmp_path: Path) -> None:
    root = _knee_like(tmp_path / "knees", range(9003170, 9003182))
    save_image(root / "a" / "9003999.png", size=(8, 8))  # no side: still read by the pattern
    result = inspect(root)
    (hint,) = result.with_code("group-pattern")
    assert hint.level == "info"
    assert "(9003170L.png and 9003170R.png)" in hint.message
    assert "--group-pattern '^(\\d+)' would make 12 group(s) of 2 or more files (24 of 25" in (
        hint.message
    )
    assert hint.items[0] == "9003170: 9003170L.png, 9003170R.png"
    grouped = load_catalog(root, group_pattern=r"^(\d+)")  # the pattern the hint gives works
    assert grouped.groups is not None and len(set(grouped.groups.tolist())) == 13
    assert not inspect_catalog(grouped, workers=1).with_code("group-pattern")  # given: no hint


@pytest.mark.parametrize(
    ("names", "pattern"),
    [
        (["case7a", "case7b", "case8a", "case8b", "case9a"], r"^(.*\d)[A-Za-z]\."),
        (["P01_L", "P01_R", "P02_L", "P02_R", "P03_L"], r"^(.+)[_-][A-Za-z0-9]{1,2}\."),
    ],
)
def test_other_suffix_styles_get_their_own_pattern(
    tmp_path: Path, names: list[str], pattern: str
) -> None:
    for k, name in enumerate(names):
        save_image(tmp_path / "d" / "ab"[k % 2] / f"{name}.png", size=(8, 8))
    (hint,) = inspect(tmp_path / "d").with_code("group-pattern")
    assert f"--group-pattern '{pattern}' would make 2 group(s)" in hint.message
    grouped = load_catalog(tmp_path / "d", group_pattern=pattern)
    assert grouped.groups is not None
    assert sorted(grouped.groups.tolist()) == sorted(name[:-1].rstrip("_") for name in names)


@pytest.mark.parametrize(
    "names",
    [
        [f"img_{i:04d}" for i in range(12)],  # a counter, no patient
        [f"{i:04d}" for i in range(12)],  # numbers alone
        [f"img_{i}" for i in range(12)],  # a shared word and a short counter: one big group
        [f"BA_{100000 + i}" for i in range(12)],  # blood-cell style ids
        ["scan_1", "scan_2", "other"],  # too few pairs
    ],
)
def test_names_without_patient_ids_get_no_group_pattern_hint(
    tmp_path: Path, names: list[str]
) -> None:
    for k, name in enumerate(names):
        save_image(tmp_path / "d" / "ab"[k % 2] / f"{name}.png", size=(8, 8))
    assert not inspect(tmp_path / "d").with_code("group-pattern")


@pytest.mark.realdata
def test_real_file_names_hint_only_where_they_carry_patient_ids(shared_data: Path) -> None:
    from medbalance.data.findings import catalog_findings

    knee = catalog_findings(load_catalog(shared_data / "knee_kl"))
    (hint,) = [f for f in knee if f.code == "group-pattern"]
    assert "--group-pattern '^(\\d+)' would make 2175 group(s)" in hint.message
    for name in ("blood_cells_pbc", "chest_xray_mini"):
        codes = [f.code for f in catalog_findings(load_catalog(shared_data / name))]
        assert "group-pattern" not in codes, name
