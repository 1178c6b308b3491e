"""Read a CSV manifest into a :class:`~medbalance.data.catalog.Catalog`.

A manifest has a header row and one row per image. ``path`` (relative to the manifest's folder)
and ``label`` are required; ``split`` (``train``, ``val`` or ``test``, any case, ``valid`` counting
as ``val``; in every row or in none) and a patient/group column (``patient_id`` by default) are
optional. Call it through :func:`medbalance.data.catalog.load_catalog`, which picks the reader from
the source.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medbalance.data.catalog_types import SPLIT_ALIASES, Catalog, DataError, SourceKind

__all__ = ["read_manifest"]


def read_manifest(path: Path, *, group_column: str | None, allow_outside: bool) -> Catalog:
    """Read the manifest at ``path``; see :func:`medbalance.data.catalog.load_catalog` for the
    options.

    Raises:
        DataError: a column, row, path, label or split breaks a rule; the message names the line.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [
                {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            ]
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 (byte 0x{error.object[error.start]:02x}); save the "
            "manifest as UTF-8 (e.g. from a spreadsheet: CSV UTF-8)"
        ) from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV ({error}); check its quoting") from None
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
            "move the images under it (inspect --allow-outside looks at them where they are)"
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
    bad = [(line, v) for line, v in enumerate(values, 2) if v and v not in SPLIT_ALIASES]
    if bad:
        line, value = bad[0]
        raise DataError(
            f"{manifest}: unknown split {value!r} on line {line} ({len(bad)} such row(s)); "
            "use train, val or test, or leave it empty to let medbalance split"
        )
    splits = np.array([SPLIT_ALIASES.get(v, "") for v in values], dtype="<U5")
    if (splits == "").any() and (splits != "").any():
        lines = [line for line, v in enumerate(splits, 2) if not v]
        raise DataError(
            f"{manifest}: split is empty on line(s) {_lines(lines)} but set elsewhere; give "
            "every row a split, or none"
        )
    return splits
