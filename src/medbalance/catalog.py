"""The data layer: turn any supported source into one in-memory :class:`Catalog`.

Sources:

* class-folder trees, ``ROOT/CLASS/*.ext`` (one pool) or ``ROOT/{train,val,test}/CLASS/*.ext``
  (the Kaggle chest_xray layout; ``valid`` counts as ``val``);
* CSV manifests with ``path,label`` and optional ``split`` and ``patient_id`` (or a named group
  column);
* MedMNIST ``.npz`` files, or a bare MedMNIST name (see :mod:`medbalance._medmnist`);
* DICOM files (``.dcm``) inside either of the first two.

A catalog never decodes pixels; :mod:`medbalance.cache` and :mod:`medbalance.inspection` do.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from medbalance._medmnist import MEDMNIST, resolve_medmnist
from medbalance.images import IMAGE_EXTENSIONS

__all__ = [
    "SPLITS",
    "Catalog",
    "DataError",
    "SourceKind",
    "load_catalog",
    "npz_image_side",
]

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx"}
_EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)


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
        ignored: files that were skipped as OS junk or hidden files, relative to the source.
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

    def __post_init__(self) -> None:
        n = len(self.labels)
        lengths = {"splits": len(self.splits), "origins": len(self.origins)}
        if self.paths is not None:
            lengths["paths"] = len(self.paths)
        if self.images is not None:
            lengths["images"] = len(self.images)
        if self.groups is not None:
            lengths["groups"] = len(self.groups)
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
        )


def load_catalog(
    source: str | Path,
    *,
    group_column: str | None = None,
    group_pattern: str | None = None,
    allow_outside: bool = False,
    medmnist_size: int = 28,
) -> Catalog:
    """Read a folder tree, CSV manifest, ``.npz`` file or MedMNIST name into a :class:`Catalog`.

    Args:
        source: a folder, a ``.csv`` or ``.npz`` file, or a MedMNIST name such as
            ``pneumoniamnist`` (found in ``$MEDBALANCE_DATA``, the user cache, or downloaded).
        group_column: CSV column that holds the patient/group id (default ``patient_id`` when
            present).
        group_pattern: regular expression that finds the patient id in a file name (its first
            group, else the whole match), e.g. ``(person\\d+|IM-\\d+)`` for the Kermany X-rays.
        allow_outside: let CSV paths point outside the CSV's folder.
        medmnist_size: image size of a MedMNIST name (28, 64, 128 or 224).

    Raises:
        DataError: the source breaks a rule; the message says which and how to fix it.
        FileNotFoundError: the path does not exist and is not a MedMNIST name.
    """
    path = Path(source).expanduser()
    if not path.exists():
        if str(source).lower() in MEDMNIST:
            path = resolve_medmnist(str(source), size=medmnist_size)
        elif path.suffix or "/" in str(source) or "\\" in str(source):
            raise FileNotFoundError(f"{source}: no such file or folder; check the path")
        else:
            from medbalance._medmnist import medmnist_info

            medmnist_info(str(source))  # raises with "did you mean"
    if path.is_dir():
        catalog = _from_folder(path)
    elif path.suffix.lower() == ".csv":
        catalog = _from_csv(path, group_column=group_column, allow_outside=allow_outside)
    elif path.suffix.lower() == ".npz":
        catalog = _from_npz(path)
    else:
        raise DataError(
            f"{path}: unsupported source; give a class-folder tree, a .csv manifest or a .npz file"
        )
    return _with_group_pattern(catalog, group_pattern) if group_pattern else catalog


def _with_group_pattern(catalog: Catalog, pattern: str) -> Catalog:
    if catalog.paths is None:
        raise DataError(f"{catalog.source}: --group-pattern needs file names; .npz items have none")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DataError(
            f"group pattern {pattern!r} is not a valid regular expression ({error})"
        ) from error
    groups, unmatched = [], []
    for path in catalog.paths:
        match = regex.search(path.name)
        if match is None:
            unmatched.append(path.name)
            continue
        groups.append(next((g for g in match.groups() if g), match.group(0)))
    if unmatched:
        raise DataError(
            f"group pattern {pattern!r} finds no patient id in {len(unmatched)} file name(s), "
            f"e.g. {', '.join(unmatched[:3])}; widen the pattern so every file matches"
        )
    return catalog.replace(groups=np.array(groups, dtype=object))


# --- class-folder trees -------------------------------------------------------------------


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def _visible_children(folder: Path, ignored: list[str], root: Path) -> list[Path]:
    children = []
    for child in sorted(folder.iterdir()):
        if _is_junk(child.name):
            ignored.append(str(child.relative_to(root)))
        else:
            children.append(child)
    return children


def _from_folder(root: Path) -> Catalog:
    root = root.resolve()  # once: resolving each of 100k files costs seconds
    ignored: list[str] = []
    top = _visible_children(root, ignored, root)
    top_dirs = [p for p in top if p.is_dir()]
    split_dirs = {
        p: _SPLIT_ALIASES[p.name.lower()] for p in top_dirs if p.name.lower() in _SPLIT_ALIASES
    }
    if split_dirs and len(split_dirs) != len(top_dirs):
        others = sorted(p.name for p in top_dirs if p not in split_dirs)
        raise DataError(
            f"{root}: mixes split folders ({', '.join(sorted(p.name for p in split_dirs))}) with "
            f"other folders ({', '.join(others)}); use either ROOT/CLASS/ or ROOT/SPLIT/CLASS/"
        )
    pools = list(split_dirs.items()) if split_dirs else [(root, "")]
    entries: list[tuple[str, str, str]] = []  # (class name, path relative to root, split)
    for folder, split in pools:
        entries.extend(_scan_class_folders(folder, split, root, ignored))
    class_names = tuple(sorted({name for name, _, _ in entries}))
    if len(class_names) < 2:
        found = f"only class {class_names[0]!r}" if class_names else "no class folders"
        raise DataError(
            f"{root}: found {found}; a classifier needs at least two class folders, each "
            "holding images (ROOT/CLASS/*.png or ROOT/train/CLASS/*.png)"
        )
    index = {name: i for i, name in enumerate(class_names)}
    return Catalog(
        source=root,
        kind=SourceKind.FOLDER,
        class_names=class_names,
        labels=np.array([index[name] for name, _, _ in entries], dtype=np.int64),
        splits=np.array([s for _, _, s in entries], dtype="<U5"),
        origins=tuple(rel for _, rel, _ in entries),
        paths=tuple(root / rel for _, rel, _ in entries),
        ignored=tuple(dict.fromkeys(ignored)),
    )


def _scan_class_folders(
    folder: Path, split: str, root: Path, ignored: list[str]
) -> list[tuple[str, str, str]]:
    entries: list[tuple[str, str, str]] = []
    children = _visible_children(folder, ignored, root)
    stray = [p for p in children if p.is_file()]
    if stray:
        raise DataError(
            f"{folder}: holds files outside any class folder "
            f"({', '.join(p.name for p in stray[:3])}{', ...' if len(stray) > 3 else ''}); "
            "move each image into a folder named after its class"
        )
    class_dirs = [p for p in children if p.is_dir()]
    if not class_dirs:
        raise DataError(
            f"{folder}: no class folders and no images (looked for {_EXTENSIONS_TEXT}); "
            "expected ROOT/CLASS/*.png or ROOT/train/CLASS/*.png"
        )
    for class_dir in class_dirs:
        prefix = str(class_dir.relative_to(root)) + os.sep
        files = []
        for rel, is_file, junk in _walk(str(class_dir), prefix, junk=False):
            if is_file and not junk and rel.lower().endswith(IMAGE_EXTENSIONS):
                files.append(rel)
            else:
                ignored.append(rel)
        if not files:
            raise DataError(
                f"class folder {class_dir.name!r} under {folder} holds 0 images (looked for "
                f"{_EXTENSIONS_TEXT}, any case); remove the folder or add images"
            )
        entries.extend((class_dir.name, rel, split) for rel in files)
    return entries


def _walk(folder: str, prefix: str, *, junk: bool) -> Iterator[tuple[str, bool, bool]]:
    """Yield ``(path relative to the root, is a regular file, inside a hidden or junk entry)``
    for every non-directory entry below ``folder``, depth first in name order (the order of
    ``sorted(Path.rglob("*"))``). Symbolic links to folders are not followed (no loops)."""
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda entry: entry.name)
    for entry in children:
        hidden = junk or _is_junk(entry.name)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, prefix + entry.name + os.sep, junk=hidden)
        else:
            yield prefix + entry.name, entry.is_file(), hidden


# --- CSV manifests ------------------------------------------------------------------------


def _from_csv(path: Path, *, group_column: str | None, allow_outside: bool) -> Catalog:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'}); a manifest needs at least "
            "'path,label' and may add 'split' and 'patient_id'"
        )
    if group_column is None and "patient_id" in columns:
        group_column = "patient_id"
    if group_column is not None and group_column not in columns:
        raise DataError(
            f"{path}: group column {group_column!r} not found (found: {', '.join(columns)})"
        )
    if not rows:
        raise DataError(f"{path}: the manifest has a header but no rows; add one row per image")
    base = path.parent.resolve()
    paths = [
        _manifest_path(row["path"], base, path, line, allow_outside)
        for line, row in enumerate(rows, 2)
    ]
    _refuse_duplicates(paths, path)
    labels_text = [row["label"] for row in rows]
    empty = [line for line, text in enumerate(labels_text, 2) if not text]
    if empty:
        raise DataError(f"{path}: empty label on line(s) {_lines(empty)}; every row needs a label")
    class_names = tuple(sorted(set(labels_text)))
    if len(class_names) < 2:
        raise DataError(
            f"{path}: only one label ({class_names[0]!r}); a classifier needs two or more"
        )
    splits = _manifest_splits(rows, path) if "split" in columns else np.full(len(rows), "", "<U5")
    groups = None
    if group_column is not None:
        groups = np.array([row[group_column] for row in rows], dtype=object)
    index = {name: i for i, name in enumerate(class_names)}
    return Catalog(
        source=path.resolve(),
        kind=SourceKind.CSV,
        class_names=class_names,
        labels=np.array([index[t] for t in labels_text], dtype=np.int64),
        splits=splits,
        origins=tuple(row["path"] for row in rows),
        paths=tuple(paths),
        groups=groups,
    )


def _lines(lines: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:10])
    return shown + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")


def _manifest_path(text: str, base: Path, manifest: Path, line: int, allow_outside: bool) -> Path:
    if not text:
        raise DataError(f"{manifest}: empty path on line {line}; every row needs an image path")
    resolved = (base / text).resolve()
    if not allow_outside and not resolved.is_relative_to(base):
        raise DataError(
            f"{manifest}: line {line} path {text!r} points outside the manifest's folder {base}; "
            "move the images under it, or pass --allow-outside if that is intended"
        )
    return resolved


def _refuse_duplicates(paths: Sequence[Path], manifest: Path) -> None:
    seen: dict[Path, int] = {}
    duplicates = []
    for line, p in enumerate(paths, 2):
        if p in seen:
            duplicates.append(f"{p.name} (lines {seen[p]} and {line})")
        seen.setdefault(p, line)
    if duplicates:
        raise DataError(
            f"{manifest}: {len(duplicates)} duplicate path(s): {'; '.join(duplicates[:5])}; "
            "list each image once"
        )


def _manifest_splits(rows: list[dict[str, str]], manifest: Path) -> np.ndarray:
    values = [row["split"].lower() for row in rows]
    bad = [(line, v) for line, v in enumerate(values, 2) if v and v not in _SPLIT_ALIASES]
    if bad:
        line, value = bad[0]
        raise DataError(
            f"{manifest}: unknown split {value!r} on line {line} ({len(bad)} such row(s)); "
            "use train, val or test, or leave it empty to let medbalance split"
        )
    splits = np.array([_SPLIT_ALIASES.get(v, "") for v in values], dtype="<U5")
    if (splits == "").any() and (splits != "").any():
        lines = [line for line, v in enumerate(splits, 2) if not v]
        raise DataError(
            f"{manifest}: split is empty on line(s) {_lines(lines)} but set elsewhere; give "
            "every row a split, or none"
        )
    return splits


# --- MedMNIST .npz ------------------------------------------------------------------------


def _from_npz(path: Path) -> Catalog:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as a .npz archive ({error})") from error
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
            x, y = archive[f"{split}_images"], archive[f"{split}_labels"]
            _check_npz_split(path, split, x, y)
            images.append(x)
            labels.append(y.reshape(len(y), -1)[:, 0].astype(np.int64))
            splits.append(np.full(len(y), split, dtype="<U5"))
            origins.extend(f"{split}_images[{i}]" for i in range(len(y)))
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
    if len(y) and y.min() < 0:
        raise DataError(
            f"{path}: {split}_labels holds negative labels; labels are class indices 0..C-1"
        )


def _npz_class_names(path: Path, n_classes: int) -> tuple[str, ...]:
    stem = path.stem.lower()
    for size in ("_64", "_128", "_224"):
        stem = stem.removesuffix(size)
    for name, info in MEDMNIST.items():
        if stem.startswith(name) and len(info.labels) >= n_classes:
            return info.labels
    return tuple(str(i) for i in range(n_classes))
