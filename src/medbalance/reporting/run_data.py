"""Reading an evaluated run folder for the HTML report.

:func:`load_run` gathers what :mod:`medbalance.reporting.report` draws into one :class:`RunFolder`:
``metrics.json`` (required), and when present ``config.json``, ``history.csv``,
``predictions.csv``, ``best.safetensors`` (its metadata only) and ``inspect/summary.json``. An
optional file that cannot be read is not an error: the reason is kept in
:attr:`RunFolder.problems` and shown on the page.

Metrics are stored either as bare numbers or as ``{"value": .., "ci": [low, high]}``;
:func:`metric_entry` reads both, turning anything that is not a finite number into ``None``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunFolder", "chosen_epoch", "load_run", "metric_entry", "number", "split_counts"]


@dataclass(frozen=True)
class RunFolder:
    """What was read from a run folder; missing optional parts are empty or None."""

    path: Path
    result: dict[str, Any]  # metrics.json
    config: dict[str, Any]
    meta: dict[str, Any]  # checkpoint metadata
    history: list[dict[str, Any]] | None
    predictions: tuple[np.ndarray, np.ndarray] | None  # true class index, probabilities
    inspect: dict[str, Any] | None
    problems: dict[str, str]  # file name -> why it could not be read

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


def load_run(run_dir: Path) -> RunFolder:
    """Read ``run_dir``; optional files that cannot be read are listed in ``problems``.

    Raises:
        FileNotFoundError: ``metrics.json`` is missing (evaluate the run first).
        ValueError: ``metrics.json`` is not a JSON object.
    """
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; evaluate the run first (medbalance evaluate {run_dir})"
        )
    result = _read_json(path)
    classes = [str(c) for c in result.get("class_names", [])]
    problems: dict[str, str] = {}

    def optional(name: str, read: Callable[[Path], Any]) -> Any:
        if not (run_dir / name).is_file():
            return None
        try:
            return read(run_dir / name)
        except (OSError, ValueError, KeyError) as error:  # shown on the page instead
            problems[name] = f"{type(error).__name__}: {error}"
            return None

    meta = optional("best.safetensors", _read_metadata) or {}
    return RunFolder(
        path=run_dir,
        result=result,
        config=optional("config.json", _read_json) or meta.get("config") or {},
        meta=meta,
        history=optional("history.csv", _read_history),
        predictions=optional("predictions.csv", lambda p: _read_predictions(p, classes)),
        inspect=optional("inspect/summary.json", _read_json),
        problems=problems,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError

    from medbalance.core.checkpoint import read_metadata

    try:
        return read_metadata(path)
    except SafetensorError as error:  # a damaged file: say so on the page
        raise ValueError(str(error)) from error


def _read_history(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v if k == "phase_name" else _float(v) for k, v in row.items()} for row in rows]


def _read_predictions(path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [f"prob_{c}" for c in classes]
    missing = [c for c in ["true_label", *columns] if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError("no rows" if not rows else f"columns {missing} are missing")
    if unknown := sorted({r["true_label"] for r in rows} - set(classes)):
        raise ValueError(f"true labels {unknown} are not among the classes {classes}")
    labels = np.array([classes.index(r["true_label"]) for r in rows])
    return labels, np.array([[_float(r[c]) for c in columns] for r in rows])


def _float(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


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


def split_counts(run: RunFolder) -> dict[str, dict[str, int]]:
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


def chosen_epoch(run: RunFolder, select: str) -> tuple[int | None, str]:
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
