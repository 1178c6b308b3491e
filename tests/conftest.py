"""Shared fixtures: tiny generated imbalanced data, an isolated cache, the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDBALANCE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MEDBALANCE_DATA", raising=False)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def xray_like(rng: np.random.Generator, size: int, lesion: bool) -> np.ndarray:
    """A small grayscale 'radiograph': a bright blob, plus a faint spot for the rare class."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.45) ** 2))
    image = 120 * body + rng.normal(0, 12, (size, size))
    if lesion:
        cy, cx = rng.uniform(0.3, 0.7, 2)
        image += 70 * np.exp(-(((xx - cx) / 0.08) ** 2 + ((yy - cy) / 0.08) ** 2))
    return np.clip(image + 40, 0, 255).astype(np.uint8)


def write_tree(
    root: Path,
    counts: dict[str, dict[str, int]] | dict[str, int],
    *,
    size: int = 32,
    seed: int = 0,
    ext: str = ".png",
) -> Path:
    """Write ROOT/[SPLIT/]CLASS/img_N.ext; the second class (sorted) carries the lesion."""
    rng = np.random.default_rng(seed)
    nested = {"": counts} if all(isinstance(v, int) for v in counts.values()) else counts
    for split, per_class in nested.items():
        for k, (name, n) in enumerate(sorted(per_class.items())):  # type: ignore[union-attr]
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(xray_like(rng, size, lesion=k == 1)).save(folder / f"img_{i}{ext}")
    return root


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    """train 40/10, val 12/12, test 10/10 — a 4:1 imbalanced split tree of 32 px PNGs."""
    counts = {
        "train": {"normal": 40, "pneumonia": 10},
        "val": {"normal": 12, "pneumonia": 12},
        "test": {"normal": 10, "pneumonia": 10},
    }
    return write_tree(tmp_path / "data", counts)


def write_npz(
    path: Path, counts: dict[str, tuple[int, int]], size: int = 28, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, (n0, n1) in counts.items():
        labels = np.array([0] * n0 + [1] * n1, dtype=np.uint8)
        rng.shuffle(labels)
        arrays[f"{split}_images"] = np.stack([xray_like(rng, size, bool(y)) for y in labels])
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez(path, **arrays)
    return path


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "tiny.npz", {"train": (80, 20), "val": (20, 20), "test": (20, 20)})


def scored(n_neg: int, n_pos: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping binary scores: logistic of normal with the positives shifted up."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    logit = rng.normal(size=len(y)) + shift * y - 0.5
    return y, np.round(1 / (1 + np.exp(-logit)), 3)  # rounding makes ties


def multiclass_data(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(
        n_classes, size=n, p=np.linspace(3, 1, n_classes) / np.linspace(3, 1, n_classes).sum()
    )
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), labels] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs
