"""Look at a data set before training on it: counts, imbalance, sizes, duplicates, leaks, shortcuts.

:func:`inspect_catalog` decodes every image file once (in worker processes when there are many)
and hashes its bytes and its pixels; ``.npz`` images are hashed from the array. From those
records it counts the classes of each split and raises :class:`Finding` s: a tiny val split, a
class missing from a split, byte- or pixel-identical images (and whether they leak across
splits), a patient in several splits, unreadable files, and image properties (size, file size,
bit depth, colour mode) that alone separate the classes, which a network can learn instead of
the disease. :func:`write_inspection` writes ``summary.json``, ``class_counts.png`` and
``samples.png``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medbalance.cache import file_digest
from medbalance.catalog import SPLITS, Catalog
from medbalance.figures import new_figure, save_png
from medbalance.files import atomic_write_text
from medbalance.images import IMAGE_EXTENSIONS, UnreadableImageError, probe_image, read_image
from medbalance.splits import tiny_val_reason

if TYPE_CHECKING:
    from matplotlib.figure import Figure
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

SHORTCUT_AUROC = 0.8  # one image property separating a class better than this is a likely shortcut
UNASSIGNED = "unassigned"  # the split name of items that have no split yet
_PARALLEL_FROM = 64  # with workers=None, fewer files than this are decoded in this process
_SHOWN_ITEMS = 10
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "MONOCHROME1", "MONOCHROME2"}
_SIZE_FEATURES = {"image width", "image height", "aspect ratio"}
_REMEDIES = {
    "size": "presize every image to one square size (letterbox padding still shows the aspect "
    "ratio, a squish fit hides it)",
    "source": "check whether the classes come from different scanners, sites or export settings, "
    "and test on data where they do not",
}


@dataclass(frozen=True)
class Finding:
    """Something about the data to fix or to know; ``items`` names every case."""

    level: Literal["warning", "error"]
    code: str
    message: str
    items: list[str] = field(default_factory=list)


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
class _Record:
    """What one decoded image tells about itself."""

    width: int
    height: int
    mode: str
    bit_depth: int
    n_bytes: int | None
    byte_hash: str | None
    pixel_hash: str


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
        findings: errors first, then warnings.
        unreadable: ``(absolute path, reason)`` of each file that cannot be decoded.
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
                    "file size": _span(k.file_bytes, _bytes),
                    "modes": _modes(k),
                }
                table.add_row(*(Text(cells[c]) for c in columns))
            console.print(table)
        for finding in self.findings:
            style = "bold red" if finding.level == "error" else "bold yellow"
            label = (f"{finding.level.upper()} ", style), (f"{finding.code}: ", "bold")
            console.print(Text.assemble(*label, finding.message))
            items = [f"- {item}" for item in finding.items[:_SHOWN_ITEMS]]
            if len(finding.items) > _SHOWN_ITEMS:
                items.append(f"... and {len(finding.items) - _SHOWN_ITEMS} more (summary.json)")
            for item in items:
                console.print(Padding(Text(item), (0, 0, 0, 2)))
        if not self.findings:
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


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit == "MiB" else f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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


def _pixel_hash(pixels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{pixels.shape}|{pixels.dtype.str}|".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _record_file(path: str) -> _Record | str:
    """One file's record, or why it cannot be decoded (runs in worker processes)."""
    try:
        probe = probe_image(Path(path))
        pixels = read_image(Path(path))
        byte_hash = file_digest(Path(path))
    except (UnreadableImageError, OSError) as error:
        return str(error).removeprefix(f"{path}: ")
    height, width = pixels.shape[:2]
    pixel_hash = _pixel_hash(pixels)
    return _Record(width, height, probe.mode, probe.bit_depth, probe.n_bytes, byte_hash, pixel_hash)


def _record_files(paths: Sequence[Path], workers: int | None) -> list[_Record | str]:
    jobs = [str(p) for p in paths]
    if workers is None:
        workers = min(len(jobs) // _PARALLEL_FROM + 1, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 2:
        return [_record_file(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_record_file, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _record_arrays(images: np.ndarray) -> list[_Record | str]:
    height, width = images.shape[1:3]
    mode = "L" if images.ndim == 3 or images.shape[-1] == 1 else "RGB"
    bits = images.dtype.itemsize * 8
    return [_Record(width, height, mode, bits, None, None, _pixel_hash(im)) for im in images]


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
    readable = np.array([isinstance(r, _Record) for r in raw], dtype=bool)
    bad = np.flatnonzero(~readable)
    unreadable = [(str(catalog.paths[i]), str(raw[i])) for i in bad if catalog.paths]
    keep = readable if skip_unreadable else np.ones(len(raw), dtype=bool)
    counted = catalog if keep.all() else catalog.subset(keep)
    records = [r if isinstance(r, _Record) else None for r, k in zip(raw, keep, strict=True) if k]
    good = catalog if readable.all() else catalog.subset(readable)  # no copy of .npz images
    good_records = [r for r in raw if isinstance(r, _Record)]

    findings = []
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
    findings += _split_findings(counted) + _patient_findings(counted)
    findings += _duplicate_findings(good, good_records)
    features = _features(good, good_records)
    feature_auroc = _feature_auroc(good, features)
    findings += _shortcut_findings(good, features, feature_auroc)
    if catalog.ignored:
        message = (
            f"{len(catalog.ignored)} file(s) were ignored as hidden, OS files or not images "
            f"(images end in {' '.join(IMAGE_EXTENSIONS)}); check that none is an image"
        )
        findings.append(Finding("warning", "ignored-files", message, list(catalog.ignored)))
    findings.sort(key=lambda f: f.level != "error")
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
        feature_auroc=feature_auroc,
    )


def _summarise(
    name: str, catalog: Catalog, mask: np.ndarray, records: Sequence[_Record | None]
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


def _split_findings(catalog: Catalog) -> list[Finding]:
    if not (catalog.splits != "").any():
        return []  # one unassigned pool: the splits are made later
    findings = []
    reason = tiny_val_reason(catalog)
    if reason is not None:
        hint = "pass --resplit-val 0.2 to pool train and val and carve a stratified val split"
        findings.append(Finding("warning", "tiny-val", f"{reason}; {hint} of 20%"))
    for split in (s for s in SPLITS if (catalog.splits == s).any()):
        counts = catalog.class_counts(split)
        missing = [n for n, k in zip(catalog.class_names, counts, strict=True) if k == 0]
        if not missing:
            continue
        why = (
            "the model cannot learn a class it never sees; add images of it to train"
            if split == "train"
            else f"its recall cannot be measured there; move some of its images into {split}"
        )
        message = f"the {split} split has no images of {', '.join(missing)}; {why}"
        level: Literal["warning", "error"] = "error" if split == "train" else "warning"
        findings.append(Finding(level, "class-missing", message, missing))
    return findings


def _patient_findings(catalog: Catalog) -> list[Finding]:
    if catalog.groups is None:
        return []
    where: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for group, split in zip(catalog.groups, catalog.splits, strict=True):
        if split and str(group):
            where[str(group)][str(split)] += 1
    leaks = sorted((g, c) for g, c in where.items() if len(c) > 1)
    if not leaks:
        return []
    items = [f"{g}: " + ", ".join(f"{s} {c[s]}" for s in SPLITS if s in c) for g, c in leaks]
    message = (
        f"{len(leaks)} patient(s) have images in more than one split: images of one patient "
        "look alike, so val and test scores come out too high; split by patient "
        "(--resplit-val keeps each patient in one split)"
    )
    return [Finding("warning", "patient-leak", message, items)]


def _hash_groups(hashes: Sequence[str | None]) -> list[list[int]]:
    by_hash: defaultdict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is not None:
            by_hash[h].append(i)
    return [g for g in by_hash.values() if len(g) > 1]


def _duplicate_findings(catalog: Catalog, records: list[_Record]) -> list[Finding]:
    pixel_groups = [
        g
        for g in _hash_groups([r.pixel_hash for r in records])
        if records[g[0]].byte_hash is None or len({records[i].byte_hash for i in g}) > 1
    ]
    encoded = " in differently encoded files" if catalog.paths is not None else ""
    findings = []
    for code, groups, what in (
        ("duplicate-bytes", _hash_groups([r.byte_hash for r in records]), "byte-identical files"),
        ("duplicate-pixels", pixel_groups, "pixel-identical images" + encoded),
    ):
        if not groups:
            continue
        described = sorted((_describe_group(catalog, g) for g in groups), key=lambda d: not d[1])
        n_leak = sum(leak for _, leak, _ in described)
        n_conflict = sum(conflict for _, _, conflict in described)
        if n_leak:
            parts = [
                f"LEAK: {n_leak} of {len(groups)} group(s) of {what} cross splits, so the model "
                "is evaluated on images it was trained on and scores come out too high"
            ]
        else:
            parts = [f"{len(groups)} group(s) of {what}, each within one split"]
        if n_conflict:
            parts.append(f"{n_conflict} group(s) carry conflicting labels")
        parts.append("keep one copy of each" + (" and fix the labels" if n_conflict else ""))
        findings.append(Finding("warning", code, "; ".join(parts), [d[0] for d in described]))
    return findings


def _describe_group(catalog: Catalog, group: list[int]) -> tuple[str, bool, bool]:
    present = {str(catalog.splits[i]) for i in group}
    splits = [s or UNASSIGNED for s in (*SPLITS, "") if s in present]
    labels = sorted({int(catalog.labels[i]) for i in group})
    leak = len(present - {""}) > 1
    tags = [f"LEAK across {' and '.join(splits)}" if leak else f"within {splits[0]}"]
    if len(labels) > 1:
        tags.append("conflicting labels " + "/".join(catalog.class_names[c] for c in labels))
    rank = {s: k for k, s in enumerate((*SPLITS, ""))}
    group = sorted(group, key=lambda i: (rank[str(catalog.splits[i])], i))
    names = [catalog.origins[i] for i in group]
    shown = " = ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
    return f"{shown} [{'; '.join(tags)}]", leak, len(labels) > 1


def _features(catalog: Catalog, records: list[_Record]) -> dict[str, np.ndarray]:
    """The image properties that vary, one value per item."""
    width = np.array([r.width for r in records], dtype=float)
    height = np.array([r.height for r in records], dtype=float)
    features = {"image width": width, "image height": height, "aspect ratio": width / height}
    if catalog.paths is not None:
        features["image file size"] = np.array([r.n_bytes or 0 for r in records], dtype=float)
    features["bit depth"] = np.array([r.bit_depth for r in records], dtype=float)
    features["colour mode"] = np.array([r.mode not in _GRAY_MODES for r in records], dtype=float)
    return {name: values for name, values in features.items() if len(values) and np.ptp(values)}


def _feature_auroc(
    catalog: Catalog, features: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    from sklearn.metrics import roc_auc_score

    out: dict[str, dict[str, float]] = {}
    for feature, values in features.items():
        for c, name in enumerate(catalog.class_names):
            target = catalog.labels == c
            if target.any() and not target.all():
                auc = float(roc_auc_score(target, values))
                out.setdefault(feature, {})[name] = max(auc, 1.0 - auc)
    return out


def _shortcut_findings(
    catalog: Catalog, features: dict[str, np.ndarray], auroc: dict[str, dict[str, float]]
) -> list[Finding]:
    """One warning naming every image property that alone separates a class, strongest first."""
    names = catalog.class_names
    hits = []  # (AUROC, feature, which classes it separates)
    for feature, per_class in auroc.items():
        strong = {c: a for c, a in per_class.items() if a > SHORTCUT_AUROC}
        if strong and catalog.n_classes == 2:
            hits.append((max(strong.values()), feature, f"{names[0]} from {names[1]}"))
        elif strong:
            what = f"{' and '.join(strong)} from the other classes"
            hits.append((max(strong.values()), feature, what))
    if not hits:
        return []
    hits.sort(key=lambda hit: -hit[0])  # stable: ties keep the feature order
    auc, feature, what = hits[0]
    message = f"{feature} alone separates {what} (AUROC {auc:.2f})"
    if len(hits) > 1:
        message += ", and so do " + ", ".join(f"{f} ({a:.2f})" for a, f, _ in hits[1:])
    kinds = {"size" if f in _SIZE_FEATURES else "source" for _, f, _ in hits}
    message += ": a network may learn the scanner or the encoder instead of the disease; "
    message += "; ".join(_REMEDIES[k] for k in ("size", "source") if k in kinds)
    items = [f"{f} (AUROC {a:.2f}): {_describe(catalog, f, features[f])}" for a, f, _ in hits]
    return [Finding("warning", "shortcut", message, items)]


def _describe(catalog: Catalog, feature: str, values: np.ndarray) -> str:
    def fmt(value: float) -> str:
        if feature == "image file size":
            return _bytes(value)
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"

    parts = []
    for c, name in enumerate(catalog.class_names):
        v = values[catalog.labels == c]
        if feature == "colour mode":
            parts.append(f"{name} {int(v.sum())} of {len(v)} colour")
        elif len(v):
            parts.append(f"{name} median {fmt(np.median(v))} ({fmt(v.min())}–{fmt(v.max())})")
    return ", ".join(parts)


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
    counts, samples = _plot_counts(inspection), _plot_samples(inspection, catalog)
    return [
        atomic_write_text(out_dir / "summary.json", text),
        save_png(counts, out_dir / "class_counts.png"),
        save_png(samples, out_dir / "samples.png"),
    ]


def _plot_counts(inspection: Inspection) -> Figure:
    splits = list(inspection.splits.values())
    n_classes = len(inspection.class_names)
    figure, (ax,) = new_figure(max(4.5, 1.5 + 0.45 * n_classes * len(splits)), 3.6)
    x, width = np.arange(len(splits)), 0.8 / n_classes
    for c, name in enumerate(inspection.class_names):
        counts = [s.classes[name].count for s in splits]
        bars = ax.bar(x + (c - (n_classes - 1) / 2) * width, counts, width, label=name)
        ax.bar_label(bars, fontsize=7, padding=1)
    ratios = ["n/a" if s.imbalance_ratio is None else f"{s.imbalance_ratio:.2f}" for s in splits]
    ax.set_xticks(x, [f"{s.name}\nratio {r}" for s, r in zip(splits, ratios, strict=True)])
    ax.set_ylabel("images")
    ax.set_xlabel("ratio: largest / smallest class count", fontsize=8)
    ax.set_title("images per class and split", fontsize=10)
    ax.margins(y=0.12)
    ax.legend(fontsize=8)
    return figure


def _plot_samples(inspection: Inspection, catalog: Catalog, per_class: int = 8) -> Figure:
    ok = np.ones(len(catalog), dtype=bool)
    if catalog.paths is not None:
        bad = {path for path, _ in inspection.unreadable}
        ok = np.array([str(p) not in bad for p in catalog.paths], dtype=bool)
    train = catalog.splits == "train"
    rng = np.random.default_rng(0)
    rows = []
    for c in range(catalog.n_classes):
        pool = np.flatnonzero(ok & (catalog.labels == c) & train)
        if len(pool) == 0:  # no train images of this class: take them from any split
            pool = np.flatnonzero(ok & (catalog.labels == c))
        rows.append(np.sort(rng.choice(pool, min(per_class, len(pool)), replace=False)))
    cols = max(1, *(len(row) for row in rows))
    figure, flat = new_figure(1.4 * cols + 0.6, 1.5 * len(rows) + 0.5, ncols=cols, nrows=len(rows))
    axes = np.array(flat, dtype=object).reshape(len(rows), cols)
    for r, row in enumerate(rows):
        axes[r][0].set_ylabel(catalog.class_names[r], fontsize=9, fontweight="bold")
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(row):
                ax.set_frame_on(False)
                continue
            pixels = _thumbnail(catalog, int(row[k]))
            if pixels.ndim == 2:
                ax.imshow(pixels, cmap="gray")
            else:
                ax.imshow(pixels / np.iinfo(pixels.dtype).max)
            ax.set_title(Path(catalog.origins[row[k]]).name[:24], fontsize=6)
    where = "train split" if train.any() else "all images"
    figure.suptitle(f"{where}: up to {per_class} random images per class", fontsize=10)
    return figure


def _thumbnail(catalog: Catalog, index: int, side: int = 256) -> np.ndarray:
    """An image of the catalog, strided down to at most about ``side`` pixels."""
    if catalog.images is not None:
        pixels = catalog.images[index]
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    elif catalog.paths is not None:
        pixels = read_image(catalog.paths[index])
    else:
        raise ValueError(f"{catalog.source}: the catalog has neither image paths nor images")
    step = max(1, -(-max(pixels.shape[:2]) // side))
    return np.asarray(pixels[::step, ::step])
