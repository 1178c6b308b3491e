"""Look at a data set before training on it: counts, imbalance, sizes, duplicates, leaks, shortcuts.

:func:`inspect_catalog` decodes every image file once (in worker processes when there are many)
and hashes its bytes and its pixels; ``.npz`` images are hashed from the array. From those
records it counts the classes of each split and raises :class:`Finding` s: a tiny val split, a
class missing from a split, byte- or pixel-identical images (and whether they leak across
splits), a patient in several splits, file names that carry patient ids, unreadable files, and
image properties (size, file size, bit depth, colour mode) that alone separate the classes, which
a network may learn instead of what the classes stand for. :func:`write_inspection` writes
``summary.json``, ``class_counts.png`` and ``samples.png``.

The checks behind the findings live in :mod:`medbalance.data.findings`, the figures in
:mod:`medbalance.data.inspection_plots`; this module decodes, counts and writes.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.core.figures import save_png
from medbalance.core.files import atomic_write_text
from medbalance.data.cache import file_digest
from medbalance.data.catalog import Catalog
from medbalance.data.findings import (
    SHORTCUT_AUROC,
    UNASSIGNED,
    Finding,
    ImageRecord,
    catalog_findings,
    format_bytes,
    image_findings,
)
from medbalance.data.identical import array_digest
from medbalance.data.images import (
    IMAGE_EXTENSIONS,
    NOT_AN_IMAGE,
    UnreadableImageError,
    probe_image,
    read_image,
)
from medbalance.data.inspection_plots import plot_counts, plot_samples

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "SHORTCUT_AUROC",
    "UNASSIGNED",
    "ClassSummary",
    "Finding",
    "Inspection",
    "SplitSummary",
    "inspect_catalog",
    "write_inspection",
]

_LEVEL_ORDER = {"error": 0, "warning": 1, "info": 2}
_LEVEL_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "bold cyan"}
_PARALLEL_FROM = 64  # with workers=None, fewer files than this are decoded in this process
_SHOWN_ITEMS = 10


@dataclass(frozen=True)
class ClassSummary:
    """One class in one split; ranges are ``(min, max)`` over its readable images, else None."""

    count: int
    share: float
    width: tuple[int, int] | None
    height: tuple[int, int] | None
    file_bytes: tuple[int, int] | None
    modes: dict[str, int]
    bit_depths: dict[int, int]


@dataclass(frozen=True)
class SplitSummary:
    """The classes of one split; ``imbalance_ratio`` is None when a class has no images."""

    name: str
    count: int
    imbalance_ratio: float | None
    classes: dict[str, ClassSummary]


@dataclass(frozen=True)
class Inspection:
    """The result of :func:`inspect_catalog`.

    Attributes:
        source: the folder, CSV or ``.npz`` file inspected.
        kind: ``folder``, ``csv`` or ``npz``.
        class_names: the classes, in label order.
        n_items: items counted (without the unreadable ones when they were skipped).
        splits: per split, in train/val/test order (``unassigned`` when there are no splits).
        overall: all splits together.
        findings: errors first, then warnings, then hints (level ``info``).
        unreadable: ``(absolute path, reason)`` of each file that cannot be decoded.
        not_images: ``(absolute path, reason)`` of each file that holds no image (left out).
        ignored: files the catalog skipped (hidden, OS junk, not images).
        feature_auroc: one-vs-rest AUROC, ``max(auc, 1 - auc)``, of each image property that
            varies, per class: how well the property alone tells that class apart.
    """

    source: Path
    kind: str
    class_names: tuple[str, ...]
    n_items: int
    splits: dict[str, SplitSummary]
    overall: SplitSummary
    findings: list[Finding]
    unreadable: list[tuple[str, str]]
    ignored: tuple[str, ...] = ()
    feature_auroc: dict[str, dict[str, float]] = field(default_factory=dict)
    not_images: list[tuple[str, str]] = field(default_factory=list)

    @property
    def imbalance_ratio(self) -> float | None:
        """Largest over smallest class count, all splits together."""
        return self.overall.imbalance_ratio

    def with_code(self, code: str) -> list[Finding]:
        """The findings with one code, e.g. ``"duplicate-bytes"``."""
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        """The numbers and findings as plain JSON types (what ``summary.json`` holds)."""
        every = {**self.splits, "overall": self.overall}
        return _plain(
            {
                "source": str(self.source),
                "kind": self.kind,
                "n_items": self.n_items,
                "class_names": self.class_names,
                "counts": {n: {c: k.count for c, k in s.classes.items()} for n, s in every.items()},
                "imbalance_ratio": {n: s.imbalance_ratio for n, s in every.items()},
                "splits": {n: asdict(s) for n, s in every.items()},
                "findings": [asdict(f) for f in self.findings],
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
                "not_images": [{"path": p, "reason": r} for p, r in self.not_images],
                "ignored": self.ignored,
                "feature_auroc": self.feature_auroc,
            }
        )

    def render(self, console: Console) -> None:
        """Print a table per split (class, count, share, sizes, modes), then the findings."""
        from rich import box
        from rich.padding import Padding
        from rich.table import Table
        from rich.text import Text

        head = f"{self.source} ({self.kind}): {self.n_items} images, {len(self.class_names)} "
        console.print(Text(head + f"classes, imbalance ratio {_ratio(self.overall)}", "bold"))
        columns = ["class", "count", "share", "size (px)", "file size", "modes"]
        if self.kind == "npz":
            columns.remove("file size")
        for split in self.splits.values():
            title = f"{split.name}: {split.count} images, imbalance ratio {_ratio(split)}"
            table = Table(
                title=title, box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 0, 0, 1)
            )
            for column in columns:
                table.add_column(
                    column, justify="left" if column in ("class", "modes") else "right"
                )
            for name, k in split.classes.items():
                cells = {
                    "class": name,
                    "count": str(k.count),
                    "share": f"{k.share:.0%}",
                    "size (px)": f"{_span(k.width)} × {_span(k.height)}",
                    "file size": _span(k.file_bytes, format_bytes),
                    "modes": _modes(k),
                }
                table.add_row(*(Text(cells[c]) for c in columns))
            console.print(table)
        for finding in self.findings:
            style = _LEVEL_STYLE[finding.level]
            label = (f"{finding.level.upper()} ", style), (f"{finding.code}: ", "bold")
            console.print(Text.assemble(*label, finding.message))
            items = [f"- {item}" for item in finding.items[:_SHOWN_ITEMS]]
            if len(finding.items) > _SHOWN_ITEMS:
                items.append(f"... and {len(finding.items) - _SHOWN_ITEMS} more (summary.json)")
            for item in items:
                console.print(Padding(Text(item), (0, 0, 0, 2)))
        if all(f.level == "info" for f in self.findings):
            console.print(Text("no warnings", "green"))

    def format_text(self, width: int = 100) -> str:
        """:meth:`render` as plain text."""
        from rich.console import Console

        buffer = io.StringIO()
        self.render(Console(file=buffer, width=width, color_system=None, soft_wrap=False))
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _plain(value: Any) -> Any:
    """Dicts with string keys, lists for tuples: what JSON round-trips unchanged."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _ratio(split: SplitSummary) -> str:
    ratio = split.imbalance_ratio
    return "n/a (a class has no images)" if ratio is None else f"{ratio:.2f}"


def _span(extent: tuple[int, int] | None, fmt: Callable[[int], str] = str) -> str:
    if extent is None:
        return "-"
    low, high = extent
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def _modes(k: ClassSummary) -> str:
    text = ", ".join(f"{m} {n}" for m, n in sorted(k.modes.items()))
    if set(k.bit_depths) - {8}:
        text += " (" + ", ".join(f"{b}-bit {n}" for b, n in sorted(k.bit_depths.items())) + ")"
    return text or "-"


# --- decoding and hashing -----------------------------------------------------------------


def _record_file(path: str) -> ImageRecord | str:
    """One file's record, or why it cannot be decoded (runs in worker processes)."""
    try:
        probe = probe_image(Path(path))
        pixels = read_image(Path(path))
        byte_hash = file_digest(Path(path))
    except (UnreadableImageError, OSError) as error:
        return str(error).removeprefix(f"{path}: ")
    height, width = pixels.shape[:2]
    pixel_hash = array_digest(pixels)
    return ImageRecord(
        width, height, probe.mode, probe.bit_depth, probe.n_bytes, byte_hash, pixel_hash
    )


def _record_files(paths: Sequence[Path], workers: int | None) -> list[ImageRecord | str]:
    jobs = [str(p) for p in paths]
    if workers is None:
        workers = min(len(jobs) // _PARALLEL_FROM + 1, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 2:
        return [_record_file(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_record_file, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _record_arrays(images: np.ndarray) -> list[ImageRecord | str]:
    height, width = images.shape[1:3]
    mode = "L" if images.ndim == 3 or images.shape[-1] == 1 else "RGB"
    bits = images.dtype.itemsize * 8
    return [ImageRecord(width, height, mode, bits, None, None, array_digest(im)) for im in images]


# --- the inspection -----------------------------------------------------------------------


def inspect_catalog(
    catalog: Catalog, *, skip_unreadable: bool = False, workers: int | None = None
) -> Inspection:
    """Decode and hash every image of a catalog once, count the classes, and look for trouble.

    Args:
        catalog: the data set; its splits are taken as they are.
        skip_unreadable: leave files that cannot be decoded out of the counts and report them
            as a warning; otherwise they are counted and reported as an error.
        workers: processes that decode files (default: one per 64 files, at most one per CPU;
            1 decodes in this process). ``.npz`` images are hashed in this process.

    Raises:
        ValueError: ``workers`` is below 1, or the catalog has neither paths nor images.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    if catalog.images is not None:
        raw = _record_arrays(catalog.images)
    elif catalog.paths is not None:
        raw = _record_files(catalog.paths, workers)
    else:
        raise ValueError(f"{catalog.source}: the catalog has neither image paths nor images")
    readable = np.array([isinstance(r, ImageRecord) for r in raw], dtype=bool)
    not_image = np.array([isinstance(r, str) and r.startswith(NOT_AN_IMAGE) for r in raw])
    bad = np.flatnonzero(~readable & ~not_image)
    unreadable = [(str(catalog.paths[i]), str(raw[i])) for i in bad if catalog.paths]
    keep = (readable if skip_unreadable else np.ones(len(raw), dtype=bool)) & ~not_image
    counted = catalog if keep.all() else catalog.subset(keep)
    records = [
        r if isinstance(r, ImageRecord) else None for r, k in zip(raw, keep, strict=True) if k
    ]
    good = catalog if readable.all() else catalog.subset(readable)  # no copy of .npz images
    good_records = [r for r in raw if isinstance(r, ImageRecord)]

    findings = []
    if not_image.any():
        items = [f"{catalog.origins[i]}: {raw[i]}" for i in np.flatnonzero(not_image)]
        message = (
            f"{int(not_image.sum())} file(s) hold no image (DICOM without pixel data); they are "
            "left out of the counts and of training"
        )
        findings.append(Finding("warning", "not-images", message, items))
    if len(bad):
        items = [f"{catalog.origins[i]}: {raw[i]}" for i in bad]
        message = f"{len(bad)} image(s) cannot be decoded; " + (
            "they are left out of the counts and of training (--skip-unreadable)"
            if skip_unreadable
            else "fix or remove them, or pass --skip-unreadable to leave them out everywhere"
        )
        findings.append(
            Finding("warning" if skip_unreadable else "error", "unreadable", message, items)
        )
    findings += catalog_findings(counted)
    found, feature_auroc = image_findings(good, good_records)
    findings += found
    if catalog.ignored:
        message = (
            f"{len(catalog.ignored)} file(s) were ignored as hidden, OS files or not images "
            f"(images end in {' '.join(IMAGE_EXTENSIONS)}); check that none is an image"
        )
        findings.append(Finding("warning", "ignored-files", message, list(catalog.ignored)))
    findings.sort(key=lambda f: _LEVEL_ORDER[f.level])
    everything = np.ones(len(counted), dtype=bool)
    return Inspection(
        source=catalog.source,
        kind=str(catalog.kind),
        class_names=catalog.class_names,
        n_items=len(counted),
        splits={
            s or UNASSIGNED: _summarise(s or UNASSIGNED, counted, counted.splits == s, records)
            for s in counted.split_names()
        },
        overall=_summarise("overall", counted, everything, records),
        findings=findings,
        unreadable=unreadable,
        ignored=catalog.ignored,
        not_images=[
            (str(catalog.paths[i]), str(raw[i])) for i in np.flatnonzero(not_image) if catalog.paths
        ],
        feature_auroc=feature_auroc,
    )


def _summarise(
    name: str, catalog: Catalog, mask: np.ndarray, records: Sequence[ImageRecord | None]
) -> SplitSummary:
    def extent(values: list[int]) -> tuple[int, int] | None:
        return (min(values), max(values)) if values else None

    counts = np.bincount(catalog.labels[mask], minlength=catalog.n_classes)
    total = int(counts.sum())
    classes = {}
    for c, class_name in enumerate(catalog.class_names):
        rows = [r for i in np.flatnonzero(mask & (catalog.labels == c)) if (r := records[int(i)])]
        classes[class_name] = ClassSummary(
            count=int(counts[c]),
            share=float(counts[c] / total) if total else 0.0,
            width=extent([r.width for r in rows]),
            height=extent([r.height for r in rows]),
            file_bytes=extent([r.n_bytes for r in rows if r.n_bytes is not None]),
            modes=dict(Counter(r.mode for r in rows)),
            bit_depths=dict(Counter(r.bit_depth for r in rows)),
        )
    ratio = float(counts.max() / counts.min()) if counts.min() > 0 else None
    return SplitSummary(name=name, count=total, imbalance_ratio=ratio, classes=classes)


# --- files --------------------------------------------------------------------------------


def write_inspection(inspection: Inspection, catalog: Catalog, out_dir: Path) -> list[Path]:
    """Write ``summary.json``, ``class_counts.png`` and ``samples.png`` into ``out_dir``.

    Each file is written under a temporary name in ``out_dir`` and then renamed, so no reader
    ever sees half a file.

    Args:
        inspection: what :func:`inspect_catalog` returned for ``catalog``.
        catalog: the catalog inspected (its images are drawn in ``samples.png``).
        out_dir: the folder to write to; created when missing.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(inspection.to_dict(), indent=2) + "\n"
    counts, samples = plot_counts(inspection), plot_samples(inspection, catalog)
    return [
        atomic_write_text(out_dir / "summary.json", text),
        save_png(counts, out_dir / "class_counts.png"),
        save_png(samples, out_dir / "samples.png"),
    ]
