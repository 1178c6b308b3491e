"""The data warnings that hold for a training run: ``Prepared.warnings`` and ``run_warnings``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from _imagegen import save_image, write_split_tree
from conftest import write_npz
from medbalance.data.catalog import load_catalog
from medbalance.data.findings import run_warnings
from medbalance.data.identical import identical_groups, item_digests
from medbalance.data.prepared import Prepared, prepare_data


def _prepare(data: Path, *, for_training: bool = True) -> Prepared:
    return prepare_data(str(data), presize_to=16, for_training=for_training)


def test_a_leak_across_the_given_splits_and_a_tiny_val_are_run_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counts = {"train": {"a": 20, "b": 20}, "val": {"a": 3, "b": 3}, "test": {"a": 5, "b": 5}}
    root = write_split_tree(tmp_path / "data", counts)
    shutil.copy(root / "train" / "a" / "img_0.png", root / "test" / "a" / "copy.png")
    with caplog.at_level(logging.WARNING, logger="medbalance"):
        prepared = _prepare(root)
    tiny, leak = prepared.warnings
    assert tiny.startswith("the val split holds only 6 images (3 a, 3 b)")
    assert tiny.endswith("pass --resplit-val 0.2 to pool train and val and carve a stratified "
                         "val split of 20%")  # fmt: skip
    assert leak.startswith("LEAK: 1 of 1 group(s) of byte-identical files cross splits")
    assert leak.endswith(
        "keep one copy of each; e.g. train/a/img_0.png = test/a/copy.png "
        "[LEAK across train and test]"
    )
    assert caplog.text == ""  # carried, not logged: the run header says them once
    assert run_warnings(prepared.catalog) == list(prepared.warnings)
    assert _prepare(root, for_training=False).warnings == ()


def test_patients_across_splits_and_look_alike_classes_from_a_manifest(tmp_path: Path) -> None:
    rows = ["path,label,split,patient_id"]
    k = 0
    for label in ("Normal", "lesion", "normal"):
        for split, n in (("train", 4), ("val", 2), ("test", 2)):
            for _ in range(n):
                save_image(tmp_path / "images" / f"{k}.png")
                patient = "P1" if k in (0, 6) else f"Q{k}"  # P1: train and test
                rows.append(f"images/{k}.png,{label},{split},{patient}")
                k += 1
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    warnings = _prepare(manifest).warnings
    assert len(warnings) == 3
    assert warnings[0].startswith("the val split holds only 6 images")
    assert warnings[1].startswith("1 patient(s) have images in more than one split")
    assert warnings[1].endswith("; e.g. P1: train 1, test 1")
    assert warnings[2].startswith("class names 'Normal' and 'normal' differ only by letter case")


def test_a_pool_with_patient_ids_in_names_and_copies_medbalance_kept_together(
    tmp_path: Path,
) -> None:
    root = tmp_path / "knees"
    for k, patient in enumerate(range(9003100, 9003140)):
        for j, side in enumerate("LR"):
            save_image(root / "ab"[(k + j) % 2] / f"{patient}{side}.png")
    for k in range(4):  # copies under new ids, in the same class
        shutil.copy(root / "a" / f"{9003100 + 2 * k}L.png", root / "a" / f"{9099990 + k}L.png")
    prepared = _prepare(root)
    tiny, hint = prepared.warnings  # 84 images make a tiny val; the copies make no warning
    assert tiny.startswith("the val split holds only 12 images")
    assert hint.startswith("file names seem to carry a patient or subject id")
    assert "--group-pattern '^(\\d+)' would make 40 group(s) of 2 or more files" in hint
    catalog = prepared.catalog
    groups = identical_groups(item_digests(catalog))
    assert len(groups) == 4
    assert all(len({str(catalog.splits[i]) for i in g}) == 1 for g in groups)


def test_no_val_split_is_a_run_warning_and_a_small_carved_val_gets_the_carved_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_split_tree(tmp_path / "data", {"train": {"a": 30, "b": 30}})
    with caplog.at_level(logging.WARNING, logger="medbalance"):
        no_val, tiny = _prepare(root).warnings
    assert no_val == (
        f"{root} has no val split; carving a stratified, patient-grouped 20% of train as val "
        "(as --resplit-val 0.2 does), identical files kept together"
    )
    assert tiny.startswith("the val split holds only 12 images (6 a, 6 b)")
    assert tiny.endswith("medbalance carved this val split: give it a larger share "
                         "(--resplit-val 0.3) or add images")  # fmt: skip
    assert "pass --resplit-val 0.2" not in tiny
    assert caplog.text == ""  # the run header says it


def test_identical_rows_across_the_splits_of_an_npz(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", {"train": (40, 20), "val": (30, 20), "test": (10, 10)})
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["test_images"][1] = arrays["train_images"][2]
    np.savez(path, **arrays)
    (leak,) = _prepare(path).warnings
    assert leak.startswith("LEAK: 1 of 1 group(s) of pixel-identical images cross splits")
    assert "; e.g. train_images[2] = test_images[1] [LEAK across train and test" in leak


def test_clean_data_has_no_run_warnings(tmp_path: Path) -> None:
    counts = {"train": {"a": 20, "b": 20}, "val": {"a": 25, "b": 25}, "test": {"a": 2, "b": 2}}
    root = write_split_tree(tmp_path / "data", counts, size=(8, 8))
    assert _prepare(root).warnings == ()
    assert run_warnings(load_catalog(root)) == []
    # a Prepared built elsewhere (tests, cv folds) keeps working without warnings
    assert Prepared(load_catalog(root), None, "fp", []).warnings == ()  # type: ignore[arg-type]
