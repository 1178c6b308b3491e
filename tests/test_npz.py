"""Tests for medbalance.data.npz: MedMNIST-style archives, their errors, and the header-only
size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_npz
from medbalance.data.catalog import DataError, SourceKind, load_catalog
from medbalance.data.npz import npz_image_side


def test_npz_source(tiny_npz: Path) -> None:
    catalog = load_catalog(tiny_npz)
    assert catalog.kind is SourceKind.NPZ
    assert catalog.images is not None and catalog.images.shape == (180, 28, 28)
    assert catalog.class_counts("train").tolist() == [80, 20]
    assert catalog.origins[0] == "train_images[0]"


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"train_images": np.zeros((3, 8, 8))}, "missing key\\(s\\) train_labels"),
        (
            {"train_images": np.zeros((3, 8, 8)), "train_labels": np.zeros((2, 1))},
            "3 images but train_labels 2 labels",
        ),
        ({"x": np.zeros(3)}, "no MedMNIST keys"),
        (
            {"train_images": np.zeros((2, 8, 8)), "train_labels": np.zeros((2, 14))},
            "multi-label",
        ),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=match):
        load_catalog(tmp_path / "bad.npz")


def test_npz_image_side_reads_headers_only(tmp_path: Path) -> None:
    square = write_npz(tmp_path / "sq.npz", {"train": (3, 2)}, size=20)
    assert npz_image_side(square) == 20
    np.savez_compressed(tmp_path / "wide.npz", train_images=np.zeros((2, 8, 12), np.uint8))
    assert npz_image_side(tmp_path / "wide.npz") is None
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 8, 8), np.uint8))
    assert npz_image_side(tmp_path / "other.npz") is None
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert npz_image_side(tmp_path / "broken.npz") is None
