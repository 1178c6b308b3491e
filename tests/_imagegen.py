"""Write tiny generated images: every file gets its own noise, seeded by its path."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def noise(seed: int, size: tuple[int, int] = (16, 16), mode: str = "L") -> np.ndarray:
    """Random uint8 pixels, ``(H, W)`` for ``L`` and ``(H, W, 3)`` for ``RGB``; size is (W, H)."""
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save_image(
    path: Path,
    pixels: np.ndarray | None = None,
    *,
    size: tuple[int, int] = (16, 16),
    mode: str = "L",
) -> Path:
    """Save ``pixels`` (default: noise seeded by the path) in the format of the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is None:
        pixels = noise(zlib.crc32(str(path).encode()), size, mode)
    Image.fromarray(pixels).save(path)
    return path


def write_images(
    folder: Path, n: int, *, size: tuple[int, int] = (16, 16), mode: str = "L", ext: str = ".png"
) -> list[Path]:
    """Write ``folder/img_0.ext`` ... ``img_{n-1}.ext``, each with different pixels."""
    return [save_image(folder / f"img_{i}{ext}", size=size, mode=mode) for i in range(n)]


def write_split_tree(root: Path, counts: dict[str, dict[str, int]], **kwargs: Any) -> Path:
    """Write ``root/SPLIT/CLASS/img_N.png`` with ``counts[split][class]`` images each."""
    for split, per_class in counts.items():
        for name, n in per_class.items():
            write_images(root / split / name, n, **kwargs)
    return root


def write_ordinal_tree(
    root: Path, counts_per_grade: dict[str, tuple[int, ...]], *, size: int = 16, seed: int = 0
) -> Path:
    """Write ``root/SPLIT/GRADE/*.png``: grades ``0..K-1``, ``counts_per_grade[split][g]`` images
    of grade ``g``; the blob grows with the grade (neighbouring grades overlap). One generator
    serves the tests and the benchmarks: :mod:`medbalance.workflows.synthetic_grades`."""
    from medbalance.workflows.synthetic_grades import make_synthetic_grades

    return make_synthetic_grades(root, counts=counts_per_grade, size=size, seed=seed)
