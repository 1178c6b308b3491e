"""Score new images with a trained checkpoint, streaming in batches.

Inputs can be image files, folders (searched recursively), CSV manifests (a ``path`` column) and
``.npz`` arrays. Images are decoded and presized exactly as in training, a batch at a time, so
memory stays flat however many images there are. Rows are written as they are scored to a
temporary file that is renamed at the end. An image that cannot be read gets a row with its
reason and no probabilities; it is never silently dropped.

With a conformal level (``predict --conformal 0.9``) each row also gets its conformal set
(:mod:`~medbalance.evaluation.conformal`: the classes that, at that level, cannot be ruled out)
and ``refer``: whether the set is not exactly one class, so the image needs a reader.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.files import atomic_write, spreadsheet_safe
from medbalance.data.cache import PresizeSettings, presize_array
from medbalance.data.images import UnreadableImageError, is_image_file, read_image
from medbalance.evaluation.conformal import (
    SET_SEPARATOR,
    ConformalScores,
    check_level,
    missing_scores,
)
from medbalance.evaluation.ensemble import Scorer, load_model

__all__ = [
    "PredictSummary", "Prediction", "check_calibrated", "iter_inputs", "iter_predictions",
    "predict", "site_prior",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictSummary:
    """How a prediction run went."""

    out: Path
    n_scored: int
    failures: list[tuple[str, str]]
    n_referred: int | None = None  # images whose conformal set is not one class (with a level)
    # with estimate_prevalence: the scored images' class prior (EM, 95% CI), the prior of the
    # cases the calibration was fitted on and the training prior, each {class: share}
    site_prior: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Item:
    id: str
    path: Path | None = None
    array: np.ndarray | None = None
    error: str = ""  # why the item is not scored (set before any decoding)


def iter_inputs(inputs: Sequence[str | Path]) -> Iterator[_Item]:
    """Every image named by the inputs, in a stable order."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            ):
                if is_image_file(file):
                    yield _Item(str(file), file)
        elif path.suffix.lower() == ".csv":
            yield from _manifest_items(path)
        elif path.suffix.lower() == ".npz":
            yield from _npz_items(path)
        else:
            yield _Item(str(path), path)


def _manifest_items(path: Path) -> Iterator[_Item]:
    """The manifest's rows; a path outside the manifest's folder is not read (as in training)."""
    base = path.parent.resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8; save the manifest as UTF-8") from None
    if rows and "path" not in rows[0]:
        raise ValueError(f"{path}: a manifest for predict needs a 'path' column")
    for line, row in enumerate(rows, 2):
        text = (row.get("path") or "").strip()
        file = (base / text).resolve()
        outside = (
            ""
            if file.is_relative_to(base)
            else (f"line {line} of {path} points outside the manifest's folder; not read")
        )
        yield _Item(text, file, error=outside)


def _npz_items(path: Path) -> Iterator[_Item]:
    with np.load(path, allow_pickle=False) as archive:
        keys = [k for k in archive.files if k.endswith("images")] or archive.files
        for key in keys:
            images = archive[key]
            for i in range(len(images)):
                yield _Item(f"{path.name}:{key}[{i}]", array=images[i])


def _load(item: _Item, settings: PresizeSettings, channels: int) -> np.ndarray:
    if item.error:
        raise UnreadableImageError(item.error)
    if item.path is not None and not item.path.exists():
        raise UnreadableImageError(f"{item.path}: no such file")
    if item.path is not None and not is_image_file(item.path):
        raise UnreadableImageError(f"{item.path}: not an image file (by its extension)")
    image = item.array if item.array is not None else read_image(item.path)  # type: ignore[arg-type]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    presized = presize_array(image, settings)
    if presized.shape[0] == channels:
        return presized
    if presized.shape[0] == 1 and channels == 3:
        return np.repeat(presized, 3, axis=0)
    raise UnreadableImageError(
        f"{item.id}: a colour image, but the model was trained on grayscale images"
    )


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Prediction:
    """One input's result: probabilities per class and the decision, or why it was unreadable.

    ``probabilities`` are the model's own (the decision reads them); ``calibrated`` are the same
    at the natural prior and temperature-scaled (:mod:`~medbalance.evaluation.calibration`),
    empty for a checkpoint stored without a calibration. ``set`` is the conformal set (class
    names in the model's order; it may be empty) and ``refer`` whether it is not exactly one
    class; both None without a conformal level or for an unreadable image.
    """

    id: str
    probabilities: dict[str, float]
    label: str | None
    threshold: float | None
    error: str = ""
    calibrated: dict[str, float] = field(default_factory=dict)
    set: tuple[str, ...] | None = None
    refer: bool | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            **{f"prob_{k}": v for k, v in self.probabilities.items()},
            **{f"calibrated_{k}": v for k, v in self.calibrated.items()},
            "predicted_label": self.label,
            "threshold": self.threshold,
            "error": self.error,
            "set": None if self.set is None else list(self.set),
            "refer": self.refer,
        }


def _conformal_scores(trained: Scorer, level: float | None) -> ConformalScores | None:
    """The stored conformal scores for sets at ``level`` (None without a level), checked before
    anything is scored; their too-few-cases warnings are logged.

    Raises:
        ValueError: a bad level, a model stored without conformal scores, or a class name
            holding the set separator.
    """
    if level is None:
        return None
    level = check_level(level)
    scores = trained.conformal
    if scores is None:
        raise missing_scores("the model")
    clashing = [n for n in trained.class_names if SET_SEPARATOR in n]
    if clashing:
        raise ValueError(
            f"class name {clashing[0]!r} holds {SET_SEPARATOR!r}, which joins the class names "
            "of a conformal set; rename the class (folder) and train again"
        )
    for warning in scores.too_few(level):
        log.warning("%s", warning)
    return scores


def iter_predictions(
    trained: Scorer,
    inputs: Sequence[str | Path],
    *,
    batch_size: int = 64,
    workers: int = 2,
    conformal: float | None = None,
) -> Iterator[Prediction]:
    """Score every input image, a batch at a time, with the model's (or ensemble's) stored
    decision; with ``conformal`` (a level in (0, 1)), also each image's conformal set from the
    stored tuning scores (checked here, when called, before any image is read)."""
    scores = _conformal_scores(trained, conformal)
    return _iter_scored(trained, inputs, batch_size, workers, scores, conformal)


def _iter_scored(
    trained: Scorer,
    inputs: Sequence[str | Path],
    batch_size: int,
    workers: int,
    scores: ConformalScores | None,
    level: float | None,
) -> Iterator[Prediction]:
    settings = PresizeSettings(size=trained.presize)
    names = trained.class_names
    decision, calibration = trained.decision, trained.calibration
    with ThreadPoolExecutor(workers) as pool:
        for batch in _batches(iter_inputs(inputs), batch_size):
            loaded = list(pool.map(lambda item: _try_load(item, settings, trained.channels), batch))
            good = [k for k, (array, _) in enumerate(loaded) if array is not None]
            arrays = [a for a, _ in loaded if a is not None]
            probs = _scored_by_dtype(trained, arrays, len(names))
            labels = decision.decide(probs) if len(probs) else np.empty(0, dtype=np.int64)
            calibrated = calibration.apply(probs) if calibration and len(probs) else None
            sets = _sets(scores, level, probs, names)
            row_of = {k: r for r, k in enumerate(good)}
            for k, item in enumerate(batch):
                if k not in row_of:
                    yield Prediction(item.id, {}, None, None, loaded[k][1])
                    continue
                p = probs[row_of[k]]
                cal = calibrated[row_of[k]] if calibrated is not None else ()
                yield Prediction(
                    item.id,
                    {n: float(v) for n, v in zip(names, p, strict=True)},
                    names[labels[row_of[k]]],
                    decision.threshold,
                    calibrated={n: float(v) for n, v in zip(names, cal, strict=False)},
                    set=sets[row_of[k]] if sets is not None else None,
                    refer=len(sets[row_of[k]]) != 1 if sets is not None else None,
                )


def _sets(
    scores: ConformalScores | None, level: float | None, probs: np.ndarray, names: list[str]
) -> list[tuple[str, ...]] | None:
    """Each row's conformal set as class names (None without a level)."""
    if scores is None or level is None:
        return None
    inside = scores.sets(probs, level) if len(probs) else np.empty((0, len(names)), dtype=bool)
    return [tuple(n for n, keep in zip(names, row, strict=True) if keep) for row in inside]


def _scored_by_dtype(trained: Scorer, arrays: list[np.ndarray], n_classes: int) -> np.ndarray:
    """Probabilities of each array, every bit depth scored in its own batch: stacking 8-bit
    with 16-bit images would change the 8-bit ones' numbers, and an image's score must not
    depend on the other files of the call."""
    probs = np.empty((len(arrays), n_classes))
    for dtype in sorted({a.dtype.str for a in arrays}):
        rows = [i for i, a in enumerate(arrays) if a.dtype.str == dtype]
        probs[rows] = trained.probabilities(np.stack([arrays[i] for i in rows]))
    return probs


def predict(
    checkpoint: Path,
    inputs: Sequence[str | Path],
    out: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    workers: int = 2,
    trained: Scorer | None = None,
    overwrite: bool = False,
    conformal: float | None = None,
    estimate_prevalence: bool = False,
    n_bootstrap: int = 1000,
) -> PredictSummary:
    """Score every input image and write one CSV row per image to ``out``.

    ``checkpoint`` is a ``best.safetensors``, a run folder or a CV folder (its ensemble).
    ``out`` must be new unless ``overwrite``, and never a file of a run folder; it, the level
    and the model's stored conformal scores are checked before anything is written.

    The columns, always these in this order (so programs can rely on them): ``id``,
    ``prob_CLASS`` per class (the model's own), ``calibrated_CLASS`` per class (empty for a
    model stored without a calibration), ``predicted_label``, ``threshold`` (binary only),
    ``error`` (why an image was not scored), ``set`` and ``refer``. With ``conformal`` (a level,
    e.g. 0.9), ``set`` is the image's conformal set, its class names joined by ``|`` (empty
    when no class can be kept at that level) and ``refer`` is 1 when the set is not exactly one
    class, else 0; without it (and on an unreadable image's row) both are empty. Text cells are
    spreadsheet-safe (a leading ``= + - @`` gets a ``'``).

    With ``estimate_prevalence``, the summary's ``site_prior`` estimates the scored images'
    class prior from their calibrated probabilities (EM of Saerens et al. on the bias-corrected
    calibration, ``n_bootstrap`` resamples for its 95% CI), beside the prior of the cases the
    calibration was fitted on and the training prior. It assumes the images differ from the
    tuning cases only in how common each class is.
    """
    from medbalance.core.run_folder import check_output_file

    level = None if conformal is None else check_level(conformal)
    check_output_file(Path(out), overwrite=overwrite)
    trained = trained or load_model(checkpoint, device=device)
    names = trained.class_names
    if level is not None and trained.conformal is None:
        raise missing_scores(checkpoint)
    if estimate_prevalence:
        check_calibrated(trained, checkpoint)
    kept: list[dict[str, float]] = []  # the scored images' probabilities, for the estimate
    rows = iter_predictions(
        trained, inputs, batch_size=batch_size, workers=workers, conformal=level
    )  # checks the conformal scores now, before out is written
    failures: list[tuple[str, str]] = []
    scored = referred = 0

    def write(tmp: Path) -> None:
        nonlocal scored, referred
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            calibrated = [f"calibrated_{n}" for n in names]
            writer.writerow(
                ["id", *[f"prob_{n}" for n in names], *calibrated, "predicted_label",
                 "threshold", "error", "set", "refer"]
            )  # fmt: skip
            for row in rows:
                if row.error:
                    failures.append((row.id, row.error))
                    blank = [""] * (2 * len(names))
                    writer.writerow([spreadsheet_safe(row.id), *blank, "", "", row.error, "", ""])
                    continue
                writer.writerow(_csv_row(row, names))
                if estimate_prevalence:
                    kept.append(row.probabilities)
                scored += 1
                referred += bool(row.refer)

    atomic_write(out, write)
    site = site_prior(trained, kept, n_bootstrap) if estimate_prevalence else None
    return PredictSummary(out, scored, failures, None if level is None else referred, site)


def check_calibrated(trained: Scorer, where: object) -> None:
    """The prevalence estimate reads the stored calibration: refuse a model without one."""
    if trained.calibration is None:
        raise ValueError(
            f"{where} was stored without a calibration, which the prevalence estimate reads; "
            "re-choose its decision with medbalance evaluate RUN --threshold POLICY first"
        )


def site_prior(
    trained: Scorer, kept: list[dict[str, float]], n_bootstrap: int
) -> dict[str, Any] | None:
    """The scored images' estimated class prior beside the tuning and the training prior
    (None when no image was scored)."""
    from medbalance.evaluation.prevalence import named_estimate

    names, calibration = trained.class_names, trained.calibration
    if not kept or calibration is None:
        return None
    probs = np.array([[row[n] for n in names] for row in kept])
    corrected = calibration.for_prevalence or calibration
    counts = np.asarray(_train_counts(trained), dtype=float)
    start = corrected.tuning_prior if corrected.tuning_prior is not None else counts
    share = dict(zip(names, (np.asarray(start) / np.sum(start)).tolist(), strict=True))
    return {
        "n": len(kept),
        "estimated_prior": named_estimate(corrected.apply(probs), start, names, n_bootstrap, 0),
        "tuning_prior": share,
        "training_prior": dict(zip(names, (counts / counts.sum()).tolist(), strict=True)),
    }


def _train_counts(trained: Scorer) -> list[int]:
    """The model's training class counts (a binary decision does not carry them)."""
    from medbalance.evaluation.ensemble import Ensemble

    lead = trained.members[0] if isinstance(trained, Ensemble) else trained
    return list(lead.metadata["train_counts"])  # type: ignore[attr-defined]


def _csv_row(row: Prediction, names: list[str]) -> list[str]:
    """A scored image's cells, in the column order of :func:`predict`."""
    threshold = row.threshold
    return [
        spreadsheet_safe(row.id),
        *[f"{row.probabilities[n]:.6f}" for n in names],
        *[f"{row.calibrated[n]:.6f}" if row.calibrated else "" for n in names],
        spreadsheet_safe(row.label or ""),
        "" if threshold is None else f"{threshold:.6f}",
        "",
        "" if row.set is None else spreadsheet_safe(SET_SEPARATOR.join(row.set)),
        "" if row.refer is None else str(int(row.refer)),
    ]


def _try_load(
    item: _Item, settings: PresizeSettings, channels: int
) -> tuple[np.ndarray | None, str]:
    try:
        return _load(item, settings, channels), ""
    except UnreadableImageError as error:
        return None, str(error)
