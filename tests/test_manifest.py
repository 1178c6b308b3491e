"""Tests for medbalance.data.manifest: CSV manifests read through load_catalog, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from medbalance.data.catalog import DataError, SourceKind, load_catalog


def _manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("x1.png", "x2.png", "x3.png"):
        Image.new("L", (8, 8)).save(folder / name)
    path = folder / "manifest.csv"
    path.write_text(text)
    return path


def test_csv_manifest_with_split_and_patient(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path / "m",
        "path,label,split,patient_id\nx1.png,yes,train,p1\nx2.png,no,train,p2\nx3.png,no,test,p3\n",
    )
    catalog = load_catalog(path)
    assert catalog.kind is SourceKind.CSV
    assert catalog.class_names == ("no", "yes")
    assert catalog.labels.tolist() == [1, 0, 0]
    assert catalog.splits.tolist() == ["train", "train", "test"]
    assert catalog.groups is not None and catalog.groups.tolist() == ["p1", "p2", "p3"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("file,label\nx1.png,a\n", "missing column\\(s\\) path .* 'path,label'"),
        ("path,label\nx1.png,a\nx1.png,b\n", "duplicate path.*x1.png \\(lines 2 and 3\\)"),
        (
            "path,label\n../x1.png,a\nx2.png,b\n",
            "points outside the manifest's folder.*inspect --allow-outside",
        ),
        ("path,label\nx1.png,a\nx2.png,a\n", "only one label"),
        ("path,label\nx1.png,a\nx2.png,\n", "empty label on line\\(s\\) 3"),
        ("path,label,split\nx1.png,a,train\nx2.png,b,dev\n", "unknown split 'dev' on line 3"),
        ("path,label,split\nx1.png,a,train\nx2.png,b,\n", "split is empty on line\\(s\\) 3"),
        ("path,label\n", "header but no rows"),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_catalog(_manifest(tmp_path / "m", text))
