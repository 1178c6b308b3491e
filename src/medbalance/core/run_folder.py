"""The run folder: one type that owns its file names and reads and writes them.

A training run leaves ``config.json``, ``history.csv``, ``best.safetensors``, ``last.pt``,
``metrics.json``, ``predictions.csv`` and ``report.html`` (an evaluation of the val split writes
``metrics_val.json`` and ``predictions_val.csv``). Every layer that touches a run folder goes
through :class:`RunFolder`, so each name is spelled once and each file is read one way.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.files import PART_SUFFIX, atomic_write_text, from_spreadsheet_safe

__all__ = [
    "Predictions",
    "RunFolder",
    "check_output_file",
    "is_run_file",
    "read_json_object",
    "strict_json",
]


def is_run_file(path: Path) -> bool:
    """Whether ``path`` (or what a link at it points to) is one of the files of a medbalance
    run, cv, ensemble or comparison folder."""
    for candidate in {Path(path).absolute(), Path(path).resolve()}:
        folder = RunFolder(candidate.parent)
        if not any((folder.path / marker).is_file() for marker in RunFolder.MARKERS):
            continue
        owned = {p.name for p in folder.owned_names()} | set(RunFolder.FOLDER_FILES)
        if candidate.name in owned or candidate.name.endswith(PART_SUFFIX):
            return True
    return False


def check_output_file(path: Path, *, overwrite: bool, option: str = "--out") -> None:
    """The rule for a file a command writes where the user said: checked before any work.

    A folder is refused; a file of a run folder is refused even with ``overwrite`` (a run's
    checkpoint, predictions or training state is never replaced by another command's output);
    an existing file is replaced only with ``overwrite``.

    Raises:
        ValueError: naming the path, the rule and the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name, e.g. {path / 'out.csv'}")
    if is_run_file(path):
        raise ValueError(
            f"{option} {path} is a file of the medbalance folder {path.parent}, which no other "
            f"command may replace (not even with --overwrite); give another {option}"
        )
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ValueError(
            f"{option} {path} already exists; give another {option}, or --overwrite to replace it"
        )


@dataclass(frozen=True)
class Predictions:
    """The rows of a ``predictions.csv``: item ids, true and predicted class indices and the
    probability of every class."""

    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray
    preds: np.ndarray


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk (it need not exist yet)."""

    path: Path

    CONFIG = "config.json"
    HISTORY = "history.csv"
    BEST = "best.safetensors"
    LAST = "last.pt"
    REPORT = "report.html"
    INSPECT_SUMMARY = "inspect/summary.json"
    OOF_METRICS = "oof_metrics.json"  # a cv folder's out-of-fold evaluation
    OOF_PREDICTIONS = "oof_predictions.csv"
    FOLDS = "folds.csv"  # a cv folder's per-fold table
    ENSEMBLE = "ensemble.json"  # a cv or ensemble folder's members and decision
    COMPARISON = "comparison.json"  # a comparison folder's results
    # a folder holding one of these is a medbalance run, cv, ensemble or comparison folder
    MARKERS = (CONFIG, BEST, LAST, ENSEMBLE, COMPARISON)
    # what such a folder owns besides a run's own files (owned_names): never written by a
    # command that writes a path the user names
    FOLDER_FILES = (
        ENSEMBLE, FOLDS, OOF_METRICS, OOF_PREDICTIONS, COMPARISON, "comparison.csv",
        "comparison.md", "comparison.html",
    )  # fmt: skip

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # --- paths ---------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def inspect_summary(self) -> Path:
        return self.path / self.INSPECT_SUMMARY

    @staticmethod
    def metrics_name(split: str = "test") -> str:
        return "metrics.json" if split == "test" else f"metrics_{split}.json"

    @staticmethod
    def predictions_name(split: str = "test") -> str:
        return "predictions.csv" if split == "test" else f"predictions_{split}.csv"

    def metrics(self, split: str = "test") -> Path:
        return self.path / self.metrics_name(split)

    def predictions(self, split: str = "test") -> Path:
        return self.path / self.predictions_name(split)

    def owned_names(self) -> list[Path]:
        """Every file name a run folder may hold (present or not)."""
        names = {self.CONFIG, self.HISTORY, self.BEST, self.LAST, self.REPORT}
        names |= {self.metrics_name(s) for s in ("test", "val")}
        names |= {self.predictions_name(s) for s in ("test", "val")}
        return [self.path / n for n in sorted(names)]

    def run_files(self) -> list[Path]:
        """The files of a run present in the folder (and orphaned temporary files of them)."""
        if not self.path.is_dir():
            return []
        names = {p.name for p in self.owned_names()}
        found = [self.path / n for n in sorted(names) if (self.path / n).is_file()]
        orphans = [
            p
            for p in sorted(self.path.glob(".*" + PART_SUFFIX))
            if p.name[1:].split(".", 1)[0] in {n.split(".", 1)[0] for n in names}
        ]
        return found + orphans

    def remove_orphans(self) -> list[Path]:
        """Remove temporary files that killed writes left behind (a run's own folder only)."""
        orphans = [p for p in self.run_files() if p.name.endswith(PART_SUFFIX)]
        for path in orphans:
            path.unlink(missing_ok=True)
        return orphans

    def is_evaluated(self) -> bool:
        """Whether the run was trained and evaluated (metrics and predictions written)."""
        return self.metrics().is_file() and self.predictions().is_file()

    # --- reading -------------------------------------------------------------------------

    def read_config(self) -> dict[str, Any]:
        return read_json_object(self.config)

    def read_metrics(self, split: str = "test") -> dict[str, Any]:
        return read_json_object(self.metrics(split))

    def read_metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata (class names, normalisation, decision, config ...)."""
        from medbalance.core.checkpoint import read_metadata

        return read_metadata(self.best)

    def read_history(self) -> list[dict[str, Any]]:
        """``history.csv`` as rows of floats (``phase_name`` stays text)."""
        with self.history.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [{k: v if k == "phase_name" else _float(v) for k, v in r.items()} for r in rows]

    def train_seconds(self) -> float:
        """Sum of the epochs' ``seconds`` in ``history.csv`` (NaN without one)."""
        if not self.history.is_file():
            return math.nan
        return sum(_float(row.get("seconds")) for row in self.read_history())

    def read_predictions(
        self, classes: Sequence[str], split: str = "test", *, file: Path | None = None
    ) -> Predictions:
        """The rows of ``predictions.csv`` (or of ``file`` in the same format) for a model with
        ``classes``.

        Raises:
            ValueError: a probability column is missing or a label is not one of ``classes``.
        """
        path = file if file is not None else self.predictions(split)
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        missing = [f"prob_{c}" for c in classes if rows and f"prob_{c}" not in rows[0]]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]}; re-evaluate the run")
        index = {str(c): i for i, c in enumerate(classes)}

        def label(row: Mapping[str, str], key: str) -> int:
            name = from_spreadsheet_safe(row.get(key) or "")
            if name not in index:
                raise ValueError(f"{path}: {key} {name!r} is not one of {list(classes)}")
            return index[name]

        probs = np.array([[_float(r[f"prob_{c}"]) for c in classes] for r in rows])
        return Predictions(
            ids=[from_spreadsheet_safe(r.get("id", "")) for r in rows],
            labels=np.array([label(r, "true_label") for r in rows], dtype=np.int64),
            probs=probs.reshape(len(rows), len(classes)),
            preds=np.array([label(r, "predicted_label") for r in rows], dtype=np.int64),
        )

    # --- writing (atomically) --------------------------------------------------------------

    def write_json(self, path: Path, content: Mapping[str, Any]) -> Path:
        """Strict JSON (NaN and infinities become null), written atomically."""
        text = json.dumps(strict_json(content), indent=2, allow_nan=False) + "\n"
        return atomic_write_text(path, text)

    def write_metrics(self, result: Mapping[str, Any], split: str = "test") -> Path:
        return self.write_json(self.metrics(split), result)

    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_text(self.history, buffer.getvalue())


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, or not an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def strict_json(value: Any) -> Any:
    """Plain Python values for strict JSON: NumPy scalars and arrays unpacked, NaN -> None."""
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
