"""Reading an evaluated run folder for the HTML report.

:func:`load_run` gathers what :mod:`medbalance.reporting.report` draws into one :class:`LoadedRun`:
``metrics.json`` (required), and when present ``config.json``, ``history.csv``,
``predictions.csv``, ``best.safetensors`` (its metadata only) and ``inspect/summary.json``. An
optional file that cannot be read is not an error: the reason is kept in
:attr:`LoadedRun.problems` and shown on the page.

Metrics are stored either as bare numbers or as ``{"value": .., "ci": [low, high]}``;
:func:`metric_entry` reads both, turning anything that is not a finite number into ``None``.

A data folder that says it is synthetic (its ``README.txt`` starts with
:data:`SYNTHETIC_MARKER`, as the demo's and the synthetic grades' do) marks every run trained on
it: :attr:`LoadedRun.synthetic` holds that first line, and the page says so at the top.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.run_folder import Predictions, RunFolder, read_json_object

__all__ = [
    "SYNTHETIC_MARKER",
    "LoadedRun",
    "chosen_epoch",
    "data_name",
    "load_run",
    "metric_entry",
    "number",
    "run_name",
    "split_counts",
    "synthetic_marker",
]

SYNTHETIC_MARKER = "SYNTHETIC DATA"  # how a synthetic data folder's README.txt begins
_GENERIC = re.compile(r"(seed|fold)\d+")  # run folder names that need their parent's name


@dataclass(frozen=True)
class LoadedRun:
    """What was read from a run folder; missing optional parts are empty or None."""

    path: Path
    result: dict[str, Any]  # metrics.json
    config: dict[str, Any]
    meta: dict[str, Any]  # checkpoint metadata
    history: list[dict[str, Any]] | None
    predictions: tuple[np.ndarray, np.ndarray] | None  # true class index, probabilities
    inspect: dict[str, Any] | None
    problems: dict[str, str]  # file name -> why it could not be read
    decided: np.ndarray | None = None  # the decision's class per row of predictions.csv
    synthetic: str | None = None  # the data folder's README line saying it is synthetic

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.result.get("class_names", [])]

    @property
    def positive(self) -> int | None:
        pos = self.result.get("positive_class")
        return self.classes.index(pos) if len(self.classes) == 2 and pos in self.classes else None

    @property
    def pos_name(self) -> str:
        return self.classes[self.positive] if self.positive is not None else "the class"

    @property
    def point(self) -> dict[str, Any]:
        return dict(self.result.get("threshold") or {})

    @property
    def split(self) -> str:
        return str(self.result.get("split", "test"))


def load_run(run_dir: Path) -> LoadedRun:
    """Read ``run_dir``; optional files that cannot be read are listed in ``problems``.

    Raises:
        FileNotFoundError: ``metrics.json`` is missing (evaluate the run first).
        ValueError: ``metrics.json`` is not a JSON object.
    """
    folder = RunFolder(Path(run_dir))
    if not folder.metrics().is_file():
        raise FileNotFoundError(
            f"{folder.metrics()} not found; evaluate the run first (medbalance evaluate {run_dir})"
        )
    result = folder.read_metrics()
    classes = [str(c) for c in result.get("class_names", [])]
    problems: dict[str, str] = {}

    def optional(name: str, read: Callable[[], Any]) -> Any:
        if not (folder.path / name).is_file():
            return None
        try:
            return read()
        except (OSError, ValueError, KeyError) as error:  # shown on the page instead
            problems[name] = f"{type(error).__name__}: {error}"
            return None

    meta = optional(folder.BEST, lambda: _read_metadata(folder)) or {}
    ids = {result.get("run_id"), meta.get("run_id")} - {None}
    if len(ids) > 1:
        raise ValueError(
            f"{folder.path} mixes two runs: metrics.json is of run {result.get('run_id')}, "
            f"best.safetensors of run {meta.get('run_id')}; evaluate the run again "
            f"(medbalance evaluate {folder.path}) or train into an empty folder"
        )
    rows = optional(folder.predictions_name(), lambda: _predictions(folder, classes))
    config = optional(folder.CONFIG, folder.read_config) or meta.get("config") or {}
    return LoadedRun(
        path=folder.path,
        result=result,
        config=config,
        meta=meta,
        history=optional(folder.HISTORY, folder.read_history),
        predictions=None if rows is None else (rows.labels, rows.probs),
        inspect=optional(folder.INSPECT_SUMMARY, lambda: read_json_object(folder.inspect_summary)),
        problems=problems,
        decided=None if rows is None else rows.preds,
        synthetic=synthetic_marker(config.get("data")),
    )


def _read_metadata(folder: RunFolder) -> dict[str, Any]:
    from safetensors import SafetensorError

    try:
        return folder.read_metadata()
    except SafetensorError as error:  # a damaged file: say so on the page
        raise ValueError(str(error)) from error


def _predictions(folder: RunFolder, classes: list[str]) -> Predictions:
    rows = folder.read_predictions(classes)
    if not len(rows.ids):
        raise ValueError("no rows")
    return rows


def synthetic_marker(data: Any) -> str | None:
    """The first line of ``DATA/README.txt`` when it says the data are synthetic, else None.

    ``data`` is the run config's ``data``: a folder (checked), or anything else (a file, a
    MedMNIST name, a folder that moved), which gives None.
    """
    if not isinstance(data, str) or not data:
        return None
    readme = Path(data) / "README.txt"
    try:
        with readme.open("rb") as handle:
            first = handle.read(200).decode("utf-8", errors="replace").splitlines()
    except OSError:  # no such folder or file: not marked
        return None
    return first[0].strip() if first and first[0].startswith(SYNTHETIC_MARKER) else None


def run_name(path: Path) -> str:
    """The run's name for titles: its folder's name, with the remedy or cross-validation
    folder in front of a ``seedK`` / ``foldK`` folder (``baseline/seed0``, ``cv-knee/fold2``)."""
    path = Path(path).resolve()
    name = path.name
    if _GENERIC.fullmatch(name):
        parent = path.parent.parent if path.parent.name == "folds" else path.parent
        name = f"{parent.name}/{name}" if parent.name else name
    return name


def data_name(data: Any) -> str:
    """The data set's short name: a folder's or MedMNIST name, or ``folder/file`` for a file."""
    if not isinstance(data, str) or not data.strip():
        return "unknown data"
    path = Path(data.rstrip("/\\"))
    if path.suffix and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or data


def number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def metric_entry(entry: Any) -> tuple[float | None, tuple[float | None, float | None] | None]:
    """``(value, ci)`` of a metric stored as a number or as ``{"value": .., "ci": [..]}``."""
    if not isinstance(entry, dict):
        return number(entry), None
    ci = entry.get("ci")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return number(entry.get("value")), (number(ci[0]), number(ci[1]))
    return number(entry.get("value")), None


def split_counts(run: LoadedRun) -> dict[str, dict[str, int]]:
    """Images per split and class: from metrics.json, else the inspection, else the checkpoint."""
    counts = run.result.get("counts") or (run.inspect or {}).get("counts") or {}
    if not counts and run.meta.get("train_counts") is not None:
        counts = {"train": run.meta["train_counts"]}
    tables = {}
    for split, per_class in counts.items():
        if isinstance(per_class, list) and len(per_class) == len(run.classes):
            per_class = dict(zip(run.classes, per_class, strict=True))  # counts in class order
        if split != "overall" and isinstance(per_class, dict):
            tables[split] = {str(c): int(n) for c, n in per_class.items()}
    return tables


def chosen_epoch(run: LoadedRun, select: str) -> tuple[int | None, str]:
    """The epoch of the evaluated checkpoint and where that was read."""
    for value, where in (
        (run.meta.get("epoch"), "the checkpoint"),
        (run.result.get("checkpoint_epoch"), "metrics.json"),
    ):
        if isinstance(value, int):
            return value, where
    scores = [row.get(f"val_{select}", math.nan) for row in run.history or []]
    if not scores or all(math.isnan(s) for s in scores):
        return None, ""
    best = np.nanargmin(scores) if select == "loss" else np.nanargmax(scores)
    return int((run.history or [])[best].get("epoch", best)), "the best epoch in history.csv"
