"""The checks of :func:`medbalance.data.inspection.inspect_catalog`: what is wrong with a data set.

Each check reads the catalog (labels, splits, patients) and, for the image checks, one
:class:`ImageRecord` per readable image, and returns :class:`Finding` s:

- ``tiny-val``, ``small-val-class`` and ``class-missing``: a val split with too few images to
  select on (fewer than :data:`~medbalance.data.splits.TINY_VAL_TOTAL`), classes with fewer
  than :data:`VAL_PER_CLASS` val images each (one finding naming them all; folded into
  ``tiny-val`` when both hold), a class absent from a split;
- ``ordinal-classes`` (info): more than two classes, all named by numbers (grades), which
  ``--ordinal`` can train as ordered grades;
- ``patient-leak``: a patient with images in more than one split;
- ``group-pattern`` (info): file names that carry a patient id (``9003175L.png`` and
  ``9003175R.png``, two knees of one person) when no patient ids were given, with the
  ``--group-pattern`` that would read them;
- ``duplicate-bytes`` and ``duplicate-pixels``: groups of byte-identical files, or of
  pixel-identical images in differently encoded files, each marked as a leak when it crosses
  splits and as a conflict when its labels differ; "keep one copy" is advised only where the
  user's own splits hold them, as medbalance keeps identical files together in the splits it
  makes;
- ``shortcut``: image properties (width, height, aspect ratio, file size, bit depth, colour
  mode) that alone separate a class with a one-vs-rest AUROC above :data:`SHORTCUT_AUROC`.

:func:`run_warnings` gives the findings that hold for a training run, one line each, cheap
enough for every run (no decoding): the split, patient, class-name and identical-file checks and
the group-pattern hint.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from medbalance.data.catalog import SPLITS, Catalog, look_alike_classes, numeric_order
from medbalance.data.identical import identical_groups, item_digests
from medbalance.data.name_groups import suggest_group_pattern
from medbalance.data.splits import TINY_VAL_CLASS, TINY_VAL_TOTAL, tiny_val_reason

__all__ = [
    "SHORTCUT_AUROC",
    "UNASSIGNED",
    "VAL_PER_CLASS",
    "Finding",
    "ImageRecord",
    "catalog_findings",
    "format_bytes",
    "image_findings",
    "run_findings",
    "run_warnings",
]

SHORTCUT_AUROC = 0.8  # one image property separating a class better than this is a likely shortcut
UNASSIGNED = "unassigned"  # the split name of items that have no split yet
VAL_PER_CLASS = TINY_VAL_CLASS  # fewer val images of a class make its metrics noise
_RESPLIT_HINT = (
    "pass --resplit-val 0.2 to pool train and val and carve a stratified val split of 20%"
)
_CARVED_HINT = (
    "medbalance carved this val split: give it a larger share (--resplit-val 0.3) or add images"
)
_EXAMPLE_CODES = ("duplicate-bytes", "duplicate-pixels", "patient-leak")  # one example per line
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "MONOCHROME1", "MONOCHROME2"}
_SIZE_FEATURES = {"image width", "image height", "aspect ratio"}
_REMEDIES = {
    "size": "check whether the classes were imaged or cropped at different sizes; if so, presize "
    "every image to one square size (letterbox padding still shows the aspect ratio, a squish "
    "fit hides it)",
    "source": "check whether the difference follows from what the images show (a small object "
    "on plain background compresses to a small file) or from different scanners, sites or "
    "export settings, and if the latter, test on data where they do not differ",
}


@dataclass(frozen=True)
class Finding:
    """Something about the data to fix or to know; ``items`` names every case."""

    level: Literal["info", "warning", "error"]
    code: str
    message: str
    items: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The finding in one line: the message, and the first item as an example where the
        message only counts the cases (duplicates, patients in two splits)."""
        if self.code in _EXAMPLE_CODES and self.items:
            return f"{self.message}; e.g. {self.items[0]}"
        return self.message


@dataclass(frozen=True)
class ImageRecord:
    """What one decoded image tells about itself; ``.npz`` images have no file, so no bytes."""

    width: int
    height: int
    mode: str
    bit_depth: int
    n_bytes: int | None
    byte_hash: str | None
    pixel_hash: str


def catalog_findings(catalog: Catalog) -> list[Finding]:
    """The split findings (tiny val, small val classes, missing classes), the patient leaks,
    look-alike class names, then the hints: patient ids in file names, number-named classes
    that may be grades."""
    return (
        _split_findings(catalog)
        + _patient_findings(catalog)
        + _look_alike_findings(catalog)
        + _group_pattern_findings(catalog)
        + _ordinal_findings(catalog)
    )


def run_findings(catalog: Catalog) -> list[Finding]:
    """The findings that hold for a training run on ``catalog`` (its final splits), cheap
    enough for every run: no image is decoded, files are hashed only when ``catalog.digests``
    does not hold their hashes.

    They are the split, patient and class-name warnings of :func:`catalog_findings`, identical
    files that cross the user's own splits or carry conflicting labels, and the
    ``group-pattern`` hint.
    """
    found = [f for f in catalog_findings(catalog) if f.level != "info" or f.code == "group-pattern"]
    code, what = (
        ("duplicate-bytes", "byte-identical files")
        if catalog.images is None
        else ("duplicate-pixels", "pixel-identical images")
    )
    groups = identical_groups(item_digests(catalog))
    return found + _identical_findings(catalog, groups, code, what, run=True)


def run_warnings(catalog: Catalog) -> list[str]:
    """:func:`run_findings`, one line each (what ``Prepared.warnings`` holds)."""
    return [finding.line() for finding in run_findings(catalog)]


def image_findings(
    catalog: Catalog, records: list[ImageRecord]
) -> tuple[list[Finding], dict[str, dict[str, float]]]:
    """The duplicate findings, then the shortcut finding, of a catalog whose images all decoded.

    Returns:
        The findings, and the one-vs-rest AUROC, ``max(auc, 1 - auc)``, of each image property
        that varies, per class (``Inspection.feature_auroc``).
    """
    findings = _duplicate_findings(catalog, records)
    features = _features(catalog, records)
    feature_auroc = _feature_auroc(catalog, features)
    return findings + _shortcut_findings(catalog, features, feature_auroc), feature_auroc


def _split_findings(catalog: Catalog) -> list[Finding]:
    if not (catalog.splits != "").any():
        return []  # one unassigned pool: the splits are made later
    findings = _val_findings(catalog)
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


def _val_findings(catalog: Catalog) -> list[Finding]:
    """``tiny-val`` when val holds too few images in all, ``small-val-class`` when it holds
    fewer than :data:`VAL_PER_CLASS` of some classes; one ``tiny-val`` naming those classes too
    when both hold. Together they fire exactly when :func:`tiny_val_reason` does."""
    counts = catalog.class_counts("val")
    total = int(counts.sum())
    named = zip(catalog.class_names, counts.tolist(), strict=True)
    small = [(n, int(k)) for n, k in named if k < VAL_PER_CLASS] if total else []
    items = [f"{n}: {k} val image{'' if k == 1 else 's'}" for n, k in small]
    under = (
        f"val holds {', '.join(f'{k} {n}' for n, k in small)} images "
        f"(under {VAL_PER_CLASS} per class)"
    )
    reason = tiny_val_reason(catalog)
    hint = _CARVED_HINT if "val" in catalog.carved else _RESPLIT_HINT
    if reason is not None and total < TINY_VAL_TOTAL:
        if small:
            reason += f"; {under}, so per-class metrics are noise too"
        return [Finding("warning", "tiny-val", f"{reason}; {hint}", items)]
    if small:
        why = "per-class metrics and the decision chosen on val are noise"
        return [Finding("warning", "small-val-class", f"{under}: {why}; {hint}", items)]
    return []


def _look_alike_findings(catalog: Catalog) -> list[Finding]:
    """A warning for class names that differ only by case or surrounding spaces."""
    found = look_alike_classes(catalog.class_names)
    if not found:
        return []
    pairs = "; ".join(" and ".join(repr(n) for n in group) for group in found)
    message = (
        f"class names {pairs} differ only by letter case or spaces, so they train as different "
        "classes: merge the folders if they are one class (train refuses them unless "
        "--class-order lists them all)"
    )
    return [Finding("warning", "look-alike-classes", message, [", ".join(g) for g in found])]


def _group_pattern_findings(catalog: Catalog) -> list[Finding]:
    """An info finding when no patient ids were given but the file names seem to carry them:
    the ``--group-pattern`` that reads them and the groups it would make."""
    if catalog.groups is not None or catalog.paths is None:
        return []
    names = [path.name for path in catalog.paths]
    suggested = suggest_group_pattern(names)
    if suggested is None:
        return []
    pattern, groups = suggested
    n_files = sum(len(files) for files in groups.values())
    example = " and ".join(sorted(next(iter(groups.values())))[:3])
    message = (
        f"file names seem to carry a patient or subject id ({example}) but no patient ids were "
        f"given: --group-pattern '{pattern}' would make {len(groups)} group(s) of 2 or more "
        f"files ({n_files} of {len(names)} files); if each group is one patient, pass it, so "
        "that splits keep a patient's images together and inspect looks for patients in two "
        "splits"
    )
    items = [f"{key}: {', '.join(files)}" for key, files in groups.items()]
    return [Finding("info", "group-pattern", message, items)]


def _ordinal_findings(catalog: Catalog) -> list[Finding]:
    """An info finding when more than two classes are all numbers: they may be grades."""
    order = numeric_order(catalog.class_names)
    if order is None or catalog.n_classes <= 2:
        return []
    message = (
        f"the {catalog.n_classes} classes ({', '.join(order)}) are all numbers: if they are "
        "ordered grades, train with --ordinal (a CORN head, and quadratic kappa, mean absolute "
        "error and within-one accuracy on test), which takes them in numeric order; give "
        f"another order, lowest grade first, with --class-order {','.join(order)}"
    )
    return [Finding("info", "ordinal-classes", message)]


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


def _duplicate_findings(catalog: Catalog, records: list[ImageRecord]) -> list[Finding]:
    pixel_groups = [
        g
        for g in identical_groups([r.pixel_hash for r in records])
        if records[g[0]].byte_hash is None or len({records[i].byte_hash for i in g}) > 1
    ]
    encoded = " in differently encoded files" if catalog.paths is not None else ""
    byte_groups = identical_groups([r.byte_hash for r in records])
    return _identical_findings(
        catalog, byte_groups, "duplicate-bytes", "byte-identical files"
    ) + _identical_findings(
        catalog, pixel_groups, "duplicate-pixels", "pixel-identical images" + encoded
    )


def _identical_findings(
    catalog: Catalog, groups: list[list[int]], code: str, what: str, *, run: bool = False
) -> list[Finding]:
    """One finding about ``groups`` of identical items; with ``run`` only when one crosses
    splits or carries conflicting labels (what matters for a training run).

    "Keep one copy" is advised when a group crosses splits or lies in a split the user gave;
    groups in splits medbalance made (or will make) are kept in one split there already.
    """
    if not groups:
        return []
    described = sorted((_describe_group(catalog, g) for g in groups), key=lambda d: not d[1])
    n_leak = sum(leak for _, leak, _ in described)
    n_conflict = sum(conflict for _, _, conflict in described)
    if run and not (n_leak or n_conflict):
        return []
    made_here = {*catalog.carved, ""}
    ours = all({str(catalog.splits[i]) for i in g} <= made_here for g in groups)
    if n_leak:
        parts = [
            f"LEAK: {n_leak} of {len(groups)} group(s) of {what} cross splits, so the model "
            "is evaluated on images it was trained on and scores come out too high"
        ]
    elif ours:
        parts = [
            f"{len(groups)} group(s) of {what}; medbalance keeps each group in one split when "
            "it makes the splits, as it does a patient's images"
        ]
    else:
        parts = [f"{len(groups)} group(s) of {what}, each within one split"]
    if n_conflict:
        parts.append(f"{n_conflict} group(s) carry conflicting labels")
    if n_leak or not ours:
        parts.append("keep one copy of each" + (" and fix the labels" if n_conflict else ""))
    elif n_conflict:
        parts.append("fix the labels")
    return [Finding("warning", code, "; ".join(parts), [d[0] for d in described])]


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


def _features(catalog: Catalog, records: list[ImageRecord]) -> dict[str, np.ndarray]:
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
    message += (
        ": this may be a shortcut, which a network can learn instead of what the class stands for; "
    )
    message += "; ".join(_REMEDIES[k] for k in ("size", "source") if k in kinds)
    items = [f"{f} (AUROC {a:.2f}): {_describe(catalog, f, features[f])}" for a, f, _ in hits]
    return [Finding("warning", "shortcut", message, items)]


def _describe(catalog: Catalog, feature: str, values: np.ndarray) -> str:
    def fmt(value: float) -> str:
        if feature == "image file size":
            return format_bytes(value)
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"

    parts = []
    for c, name in enumerate(catalog.class_names):
        v = values[catalog.labels == c]
        if feature == "colour mode":
            parts.append(f"{name} {int(v.sum())} of {len(v)} colour")
        elif len(v):
            parts.append(f"{name} median {fmt(np.median(v))} ({fmt(v.min())}–{fmt(v.max())})")
    return ", ".join(parts)


def format_bytes(n: float) -> str:
    """A byte count for people: ``"812 B"``, ``"34 KiB"``, ``"2.5 MiB"``, ``"1.2 GiB"``."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit == "MiB" else f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
