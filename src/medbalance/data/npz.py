"""Read a MedMNIST-style ``.npz`` archive into a :class:`~medbalance.data.catalog.Catalog`.

The archive holds ``{split}_images`` and ``{split}_labels`` for any of the splits ``train``, ``val``
and ``test``; images are ``(N, H, W)`` or ``(N, H, W, 1 or 3)``, labels ``(N,)`` or ``(N, 1)``
class indices. Class names come from the MedMNIST table when the file name starts with a known
data set, else they are the indices. Call it through :func:`medbalance.data.catalog.load_catalog`,
which picks the reader from the source (and resolves a bare MedMNIST name to its file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from medbalance.data._medmnist import MEDMNIST
from medbalance.data.catalog_types import SPLITS, Catalog, DataError, SourceKind

__all__ = ["npz_image_side", "read_npz"]


def read_npz(path: Path) -> Catalog:
    """Read the archive at ``path``, pixels included, into one catalog of all its splits.

    Raises:
        DataError: the archive cannot be read, or a key, shape or label breaks a rule.
    """
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DataError(f"{path}: cannot be opened ({error.strerror or error})") from None
    with handle:
        images, labels, splits, origins = _read_arrays(path, handle)
    all_labels = np.concatenate(labels)
    if len(np.unique(all_labels)) < 2:
        raise DataError(
            f"{path}: every image has label {all_labels[0]}; a classifier needs two classes"
        )
    return Catalog(
        source=path.resolve(),
        kind=SourceKind.NPZ,
        class_names=_npz_class_names(path, int(all_labels.max()) + 1),
        labels=all_labels,
        splits=np.concatenate(splits),
        origins=tuple(origins),
        images=np.concatenate(images),
    )


def _read_arrays(
    path: Path, handle: BinaryIO
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    """The arrays of every split present, checked (the file stays open only in here)."""
    try:
        archive = np.load(handle, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an archive")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        why = " ".join(str(error).split())[:120] or type(error).__name__
        raise DataError(
            f"{path}: not a readable .npz archive ({why}); give a MedMNIST-style .npz "
            "(np.savez with train_images, train_labels, ...)"
        ) from None
    with archive:
        keys = set(archive.files)
        present = [s for s in SPLITS if f"{s}_images" in keys or f"{s}_labels" in keys]
        if not present:
            raise DataError(
                f"{path}: no MedMNIST keys (found {', '.join(sorted(keys)) or 'none'}); expected "
                "train_images, train_labels, val_images, val_labels, test_images, test_labels"
            )
        missing = [
            f"{s}_{k}" for s in present for k in ("images", "labels") if f"{s}_{k}" not in keys
        ]
        if missing:
            raise DataError(
                f"{path}: missing key(s) {', '.join(missing)}; each split needs images and labels"
            )
        images: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        splits: list[np.ndarray] = []
        origins: list[str] = []
        for split in present:
            try:
                x, y = archive[f"{split}_images"], archive[f"{split}_labels"]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise DataError(
                    f"{path}: {split} arrays cannot be read ({error}); the archive is damaged"
                ) from None
            _check_npz_split(path, split, x, y)
            images.append(x)
            labels.append(y.reshape(len(y), -1)[:, 0].astype(np.int64))
            splits.append(np.full(len(y), split, dtype="<U5"))
            origins.extend(f"{split}_images[{i}]" for i in range(len(y)))
    return images, labels, splits, origins


def npz_image_side(path: Path) -> int | None:
    """Side of the square images in a MedMNIST-style ``.npz``, read from the array headers only.

    Returns None when the archive holds no ``*_images`` array of square images; loading the
    pixels (and every check on them) is left to :func:`load_catalog`.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("_images.npy")]
            if not names:
                return None
            with archive.open(sorted(names)[0]) as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape = read_header(member)[0]
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return int(shape[1]) if len(shape) >= 3 and shape[1] == shape[2] else None


def _check_npz_split(path: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(
            f"{path}: {split}_images holds {len(x)} images but {split}_labels {len(y)} labels; "
            "they must match one to one"
        )
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(
            f"{path}: {split}_labels has shape {y.shape}, i.e. multi-label (like ChestMNIST); "
            "medbalance supports binary and multi-class labels only for now"
        )
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise DataError(
            f"{path}: {split}_images has shape {x.shape}; expected (N, H, W) or (N, H, W, 3)"
        )
    if not len(x):
        raise DataError(f"{path}: {split}_images holds no images; drop the split or add images")
    if x.shape[1] != x.shape[2]:
        raise DataError(
            f"{path}: {split}_images are {x.shape[1]} x {x.shape[2]}; MedMNIST-style arrays are "
            "square (N, S, S); pad or crop them, or use a folder of image files"
        )
    if x.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: {split}_images are {x.dtype}; expected uint8 or uint16 pixels")
    if not np.issubdtype(y.dtype, np.integer) and not _whole_numbers(y):
        raise DataError(
            f"{path}: {split}_labels must be whole numbers (class indices 0..C-1), got {y.dtype} "
            "values that are not; labels are never rounded silently"
        )
    if len(y) and y.min() < 0:
        raise DataError(
            f"{path}: {split}_labels holds negative labels; labels are class indices 0..C-1"
        )


def _whole_numbers(y: np.ndarray) -> bool:
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        return False
    values = y.astype(np.float64)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _npz_class_names(path: Path, n_classes: int) -> tuple[str, ...]:
    stem = path.stem.lower()
    for size in ("_64", "_128", "_224"):
        stem = stem.removesuffix(size)
    for name, info in MEDMNIST.items():
        if stem.startswith(name) and len(info.labels) >= n_classes:
            return info.labels
    return tuple(str(i) for i in range(n_classes))
