"""The :class:`Catalog` record and the names every catalog reader shares.

Import these from :mod:`medbalance.data.catalog`; they live here so that the readers
(:mod:`medbalance.data.catalog` for folders, :mod:`medbalance.data.manifest` for CSV manifests,
:mod:`medbalance.data.npz` for ``.npz`` arrays) can build a catalog without importing each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

__all__ = ["SPLITS", "SPLIT_ALIASES", "Catalog", "DataError", "SourceKind"]

SPLITS = ("train", "val", "test")
# split names accepted in folder names and manifests, and the split each one means
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


class DataError(ValueError):
    """Bad input data: the message names the file or value, the rule and the fix."""


class SourceKind(StrEnum):
    FOLDER = "folder"
    CSV = "csv"
    NPZ = "npz"


@dataclass(frozen=True, eq=False)
class Catalog:
    """Every item of a data set with its label, split, group and origin.

    Attributes:
        source: the folder, CSV or ``.npz`` file the catalog was read from.
        kind: which kind of source.
        class_names: class names; a label is an index into this tuple.
        labels: ``int64`` array, one label per item.
        splits: ``str`` array, ``train``/``val``/``test`` or ``""`` (unassigned).
        origins: where each item came from (path relative to the source, or ``test_images[12]``).
        paths: absolute image paths (file sources), else ``None``.
        images: the pixel array ``(N, H, W[, C])`` (``.npz`` sources), else ``None``.
        groups: patient (group) id per item, or ``None``.
        digests: the content hash of each item's file (set when the splits are made or the
            images presized), so the data fingerprint changes when a file's pixels do and the
            splits keep identical files together; ``None`` for arrays.
        carved: the splits medbalance made itself (``train``, ``val`` and ``test`` when it
            assigned them all, ``train`` and ``val`` when it carved a val split); the others
            came with the data. Advice about a split is for the user only when it is theirs.
        ignored: entries that were left out, relative to the source: OS junk and hidden
            files, files without an image extension, and below a class folder anything that
            is not a regular file or folder (links to folders, broken links, devices).
    """

    source: Path
    kind: SourceKind
    class_names: tuple[str, ...]
    labels: np.ndarray
    splits: np.ndarray
    origins: tuple[str, ...]
    paths: tuple[Path, ...] | None = None
    images: np.ndarray | None = field(default=None, repr=False)
    groups: np.ndarray | None = None
    ignored: tuple[str, ...] = ()
    digests: tuple[str, ...] | None = None
    carved: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.labels)
        lengths = {"splits": len(self.splits), "origins": len(self.origins)}
        if self.paths is not None:
            lengths["paths"] = len(self.paths)
        if self.images is not None:
            lengths["images"] = len(self.images)
        if self.groups is not None:
            lengths["groups"] = len(self.groups)
        if self.digests is not None:
            lengths["digests"] = len(self.digests)
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            raise DataError(f"{self.source}: {n} labels but {wrong}; every field needs one entry")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: str) -> np.ndarray:
        """Positions of the items in one split."""
        return np.flatnonzero(self.splits == split)

    def split_names(self) -> list[str]:
        """The splits present, in train/val/test order."""
        present = set(self.splits.tolist())
        return [s for s in (*SPLITS, "") if s in present]

    def class_counts(self, split: str | None = None) -> np.ndarray:
        """Items per class, in one split or overall."""
        labels = self.labels if split is None else self.labels[self.splits == split]
        return np.bincount(labels, minlength=self.n_classes)

    def replace(self, **changes: object) -> Catalog:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def subset(self, keep: np.ndarray) -> Catalog:
        """A catalog of the items where the boolean mask ``keep`` is true."""
        idx = np.flatnonzero(keep)
        return self.replace(
            labels=self.labels[idx],
            splits=self.splits[idx],
            origins=tuple(self.origins[i] for i in idx),
            paths=None if self.paths is None else tuple(self.paths[i] for i in idx),
            images=None if self.images is None else self.images[idx],
            groups=None if self.groups is None else self.groups[idx],
            digests=None if self.digests is None else tuple(self.digests[i] for i in idx),
        )
