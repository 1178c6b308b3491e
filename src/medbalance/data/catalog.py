"""The data layer: turn any supported source into one in-memory :class:`Catalog`.

Sources:

* class-folder trees, ``ROOT/CLASS/*.ext`` (one pool) or ``ROOT/{train,val,test}/CLASS/*.ext``
  (the Kaggle chest_xray layout; ``valid`` counts as ``val``);
* CSV manifests with ``path,label`` and optional ``split`` and ``patient_id`` (or a named group
  column), read by :mod:`medbalance.data.manifest`;
* MedMNIST ``.npz`` files, or a bare MedMNIST name (see :mod:`medbalance.data._medmnist`), read by
  :mod:`medbalance.data.npz`;
* DICOM files (``.dcm``) inside either of the first two.

In a folder tree, a symbolic link to an image file counts as an image under the link's name (the
group pattern and outputs see that name); links to folders are not followed (no loops) and, with
everything else left out, are listed in ``Catalog.ignored``.

This module scans the folder trees and picks the reader; :class:`Catalog`, :class:`SourceKind`,
:class:`DataError` and ``SPLITS`` are defined in :mod:`medbalance.data.catalog_types` and imported
from here. A catalog never decodes pixels; :mod:`medbalance.data.cache` and
:mod:`medbalance.data.inspection` do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medbalance.data._medmnist import MEDMNIST, resolve_medmnist
from medbalance.data.catalog_types import SPLIT_ALIASES, SPLITS, Catalog, DataError, SourceKind
from medbalance.data.images import IMAGE_EXTENSIONS
from medbalance.data.manifest import read_manifest
from medbalance.data.npz import read_npz

__all__ = [
    "SPLITS",
    "Catalog",
    "DataError",
    "SourceKind",
    "load_catalog",
    "look_alike_classes",
    "numeric_order",
    "patient_ids",
    "with_class_order",
]

_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx"}
_EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)


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
    path = _in_data_folder(Path(source).expanduser())
    if not path.exists():
        if str(source).lower() in MEDMNIST:
            path = resolve_medmnist(str(source), size=medmnist_size)
        elif path.suffix or "/" in str(source) or "\\" in str(source):
            raise FileNotFoundError(f"{source}: no such file or folder; check the path")
        else:
            from medbalance.data._medmnist import medmnist_info

            medmnist_info(str(source))  # raises with "did you mean"
    if path.is_dir():
        catalog = _from_folder(path)
    elif path.suffix.lower() == ".csv":
        catalog = read_manifest(path, group_column=group_column, allow_outside=allow_outside)
    elif path.suffix.lower() == ".npz":
        catalog = read_npz(path)
    else:
        raise DataError(
            f"{path}: unsupported source; give a class-folder tree, a .csv manifest or a .npz file"
        )
    return _with_group_pattern(catalog, group_pattern) if group_pattern else catalog


def look_alike_classes(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Groups of class names that differ only by letter case or surrounding spaces
    (``Normal`` and ``normal``): most often one class split in two by a typo."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.strip().casefold(), []).append(name)
    return [tuple(group) for group in groups.values() if len(group) > 1]


def numeric_order(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The names in numeric order (``"10"`` after ``"9"``) when every one is a number (grades
    such as ``0`` ... ``4``), else None."""
    values = []
    for name in names:
        try:
            value = float(name)
        except ValueError:
            return None
        if not np.isfinite(value):
            return None
        values.append(value)
    return tuple(name for _, name in sorted(zip(values, names, strict=True)))


def with_class_order(catalog: Catalog, order: tuple[str, ...]) -> Catalog:
    """The catalog with its classes indexed in ``order`` (a permutation of its class names):
    the labels are re-indexed, nothing else changes. The same order returns ``catalog``.

    Raises:
        DataError: ``order`` misses a class of the data or names one it does not have.
    """
    if tuple(order) == catalog.class_names:
        return catalog
    missing = [n for n in catalog.class_names if n not in order]
    extra = [n for n in order if n not in catalog.class_names]
    if missing or extra or len(set(order)) != len(order):
        found = "; ".join(
            part
            for part in (
                f"missing {', '.join(map(repr, missing))}" if missing else "",
                f"not in the data {', '.join(map(repr, extra))}" if extra else "",
            )
            if part
        )
        raise DataError(
            f"class order {', '.join(order)} does not list the classes of {catalog.source} "
            f"({', '.join(catalog.class_names)}): {found or 'a name repeats'}; give each of "
            f"them once, e.g. --class-order {','.join(catalog.class_names)}"
        )
    new_index = np.array([order.index(name) for name in catalog.class_names], dtype=np.int64)
    return catalog.replace(class_names=tuple(order), labels=new_index[catalog.labels])


def _with_group_pattern(catalog: Catalog, pattern: str) -> Catalog:
    if catalog.paths is None:
        raise DataError(f"{catalog.source}: --group-pattern needs file names; .npz items have none")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DataError(
            f"group pattern {pattern!r} is not a valid regular expression ({error})"
        ) from error
    names = [path.name for path in catalog.paths]
    found = patient_ids(regex, names)
    unmatched = [name for name, group in zip(names, found, strict=True) if group is None]
    if unmatched:
        raise DataError(
            f"group pattern {pattern!r} finds no patient id in {len(unmatched)} file name(s), "
            f"e.g. {', '.join(unmatched[:3])}; widen the pattern so every file matches"
        )
    return catalog.replace(groups=np.array(found, dtype=object))


def patient_ids(regex: re.Pattern[str], names: Sequence[str]) -> list[str | None]:
    """The patient id ``regex`` finds in each file name: its first non-empty group, else the
    whole match; None where it finds nothing. The one reading of ``--group-pattern``."""
    found: list[str | None] = []
    for name in names:
        match = regex.search(name)
        found.append(
            None if match is None else next((g for g in match.groups() if g), match.group(0))
        )
    return found


# --- class-folder trees -------------------------------------------------------------------


def _in_data_folder(path: Path) -> Path:
    """A relative path that does not exist here but does in ``$MEDBALANCE_DATA`` (any folder or
    file there: ``knee_kl``, ``chest_xray_mini_3class.csv``) is that one."""
    root = os.environ.get("MEDBALANCE_DATA")
    if path.exists() or path.is_absolute() or not root:
        return path
    there = Path(root).expanduser() / path
    return there if there.exists() else path


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def _visible_children(folder: Path, ignored: list[str], root: Path) -> list[Path]:
    children = []
    for child in sorted(folder.iterdir()):
        # a link to a folder is skipped and listed, as everywhere below (no loops, no surprises)
        dangling = child.is_symlink() and not child.is_file()  # a loop or a broken link
        if _is_junk(child.name) or (child.is_symlink() and child.is_dir()) or dangling:
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
        p: SPLIT_ALIASES[p.name.lower()] for p in top_dirs if p.name.lower() in SPLIT_ALIASES
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
            yield prefix + entry.name, _is_regular_file(entry), hidden


def _is_regular_file(entry: os.DirEntry[str]) -> bool:
    """A file, or a link that ends at one; a link loop (ELOOP) or a broken link is not."""
    try:
        return entry.is_file()
    except OSError:  # ELOOP: a link that leads back to itself
        return False
