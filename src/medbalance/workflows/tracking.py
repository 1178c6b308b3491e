"""Experiment tracking: a finished run, cv or comparison logged to MLflow (``--track mlflow``).

A run is logged once its files are written, from its run folder, so the tracker holds what the
folder holds: the resolved ``config.json`` as parameters, the data fingerprint, the versions
and the git commit as tags, ``history.csv`` as per-epoch metrics (step = epoch), ``metrics.json``
as the final metrics with their CI bounds, the decision, and the run's files as artifacts.
``cv`` and ``compare`` log a parent run with one child per fold or per remedy x seed.

The store is ``TrainConfig.track_uri``, else ``MLFLOW_TRACKING_URI``, else the local file store
``./mlruns``: nothing needs a server or the network. MLflow (``pip install
'medbalance[mlflow]'``) is imported only here and only when a run is tracked. Tracking never
stops or changes a run: any failure (no MLflow, a store that cannot be written, a server that
does not answer) is one warning, and the run's files are all still there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medbalance.core.run_folder import RunFolder
from medbalance.training.config import TrainConfig
from medbalance.training.names import Track

if TYPE_CHECKING:
    from medbalance.comparison.report import Comparison

__all__ = [
    "DEFAULT_STORE", "EXPERIMENT", "UNTRACKED",
    "metric_key", "track_compare", "track_cv", "track_run", "tracking_uri",
]  # fmt: skip

log = logging.getLogger(__name__)

# what the config of a run inside a cv or comparison holds: its parent logs it, as a child run
UNTRACKED: dict[str, Any] = {"track": Track.NONE.value, "track_uri": None}
DEFAULT_STORE = "mlruns"  # the local file store, relative to the working folder
EXPERIMENT = "medbalance"  # unless MLFLOW_EXPERIMENT_NAME names another
_URI_ENV = "MLFLOW_TRACKING_URI"
_PARENT = "mlflow.parentRunId"
_KIND = "mlflow.experimentKind"
_PROBE_SECONDS = 5.0  # a tracking server that does not answer /health in this is "down"
# the files of a run, cv or comparison folder worth keeping beside the run in the tracker
_ARTIFACTS = (
    RunFolder.REPORT, RunFolder.metrics_name(), RunFolder.predictions_name(), RunFolder.CONFIG,
    RunFolder.BEST, RunFolder.HISTORY, RunFolder.OOF_METRICS, RunFolder.FOLDS, RunFolder.ENSEMBLE,
)  # fmt: skip


def tracking_uri(config: TrainConfig) -> str:
    """Where ``config``'s runs are logged: ``track_uri``, ``MLFLOW_TRACKING_URI`` or
    ``./mlruns``; a plain path becomes a ``file:`` URI."""
    uri = config.track_uri or os.environ.get(_URI_ENV) or DEFAULT_STORE
    return uri if ":" in uri else Path(uri).resolve().as_uri()


def track_run(config: TrainConfig, folder: Path) -> None:
    """Log the finished run in ``folder`` as one MLflow run (nothing when tracking is off)."""
    _safely(config, lambda session: session.log_folder(Path(folder), name=Path(folder).name))


def track_cv(config: TrainConfig, out: Path, folds: Sequence[Path]) -> None:
    """Log a cv folder as a parent run (the ensemble's metrics, the OOF decision) with one
    child run per fold folder."""

    def log_cv(session: _Session) -> None:
        parent = session.log_folder(Path(out), name=Path(out).name, kind="cv")
        for k, fold in enumerate(folds):
            session.log_folder(Path(fold), name=f"fold{k}", parent=parent)

    _safely(config, log_cv)


def track_compare(
    config: TrainConfig, comparison: Comparison, runs: Mapping[str, Mapping[int, Path]]
) -> None:
    """Log a comparison as a parent run (its verdict, metric and files) with one child run per
    remedy x seed (a run or, with ``--folds``, a cv folder).

    Args:
        config: the shared configuration (what decides whether and where to track).
        comparison: the comparison, written to its folder.
        runs: the run folder of each remedy and seed.
    """

    def log_compare(session: _Session) -> None:
        parent = session.start(Path(comparison.out).name, kind="compare")
        session.log_params(parent, {"metric": comparison.metric, "reference": comparison.reference})
        session.client.set_tag(parent, "medbalance.verdict", comparison.verdict)
        for path in comparison.files:
            session.log_file(parent, Path(path))
        for remedy, seeds in runs.items():
            for seed, path in sorted(seeds.items()):
                child = session.log_folder(Path(path), name=f"{remedy}/seed{seed}", parent=parent)
                session.client.set_tag(child, "medbalance.remedy", remedy)

    _safely(config, log_compare)


def _safely(config: TrainConfig, log_all: Callable[[_Session], object]) -> None:
    """Run ``log_all`` in one tracking session when ``config`` tracks; any failure in it is
    one warning, never an error, and closes the runs it opened as failed."""
    if config.track == Track.NONE:
        return
    uri = tracking_uri(config)
    session: _Session | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's own deprecation notes are not the user's
            session = _Session(uri)
            log_all(session)
            session.finish("FINISHED")
    except Exception as error:  # a tracker never stops or loses a run
        if session is not None:
            with contextlib.suppress(Exception):
                session.finish("FAILED")
        log.warning(
            "MLflow tracking to %s failed (%s: %s); the run and its files are complete, "
            "only the tracker lacks it; check --track-uri or MLFLOW_TRACKING_URI",
            uri, type(error).__name__, str(error).splitlines()[0] if str(error) else "",
        )  # fmt: skip


class _Session:
    """The MLflow client of one command, and the runs it has opened (closed at the end)."""

    def __init__(self, uri: str) -> None:
        if uri.startswith("file:"):  # MLflow 3 keeps the file store behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if uri.startswith(("http:", "https:")):
            _probe(uri)  # a server that is down fails now, not after minutes of retries
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise ImportError(
                "MLflow is not installed: pip install 'medbalance[mlflow]'"
            ) from error

        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self._create(name)
        self.opened: list[str] = []

    def _create(self, name: str) -> str:
        """A new experiment, marked as model training (the UI then opens on its runs)."""
        return str(self.client.create_experiment(name, tags={_KIND: "custom_model_development"}))

    def start(self, name: str, *, kind: str = "train", parent: str | None = None) -> str:
        """A new run named ``name``; a child of ``parent`` when given."""
        tags = {"mlflow.runName": name, "mlflow.source.name": "medbalance", "medbalance.kind": kind}
        tags.update(_environment())
        if parent is not None:
            tags[_PARENT] = parent
        run_id = str(self.client.create_run(self.experiment, tags=tags).info.run_id)
        self.opened.append(run_id)
        return run_id

    def finish(self, status: str) -> None:
        """Close every run this session opened, innermost first."""
        while self.opened:
            self.client.set_terminated(self.opened.pop(), status=status)

    def log_folder(
        self, folder: Path, *, name: str, kind: str = "train", parent: str | None = None
    ) -> str:
        """One run for a finished run or cv folder: config, tags, history, metrics, decision,
        files."""
        run = RunFolder(folder)
        run_id = self.start(name, kind=kind, parent=parent)
        self.log_params(run_id, _flat(run.read_config()) if run.config.is_file() else {})
        if run.best.is_file():
            meta = run.read_metadata()
            self.client.set_tag(run_id, "medbalance.data_fingerprint", meta["data_fingerprint"])
            self.log_params(run_id, {"data_fingerprint": meta["data_fingerprint"]})
        if run.history.is_file():
            self.log_metrics(run_id, _history(run.read_history()))
        if run.metrics().is_file():
            result = run.read_metrics()
            self.log_metrics(run_id, _final(result))
            decision = result.get("threshold") or {}
            self.log_params(run_id, _flat(decision, prefix="decision."))
            self.client.log_dict(run_id, decision, "decision.json")
        for file in _ARTIFACTS:
            self.log_file(run_id, folder / file)
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _text(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes 100 params a batch
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, points: Sequence[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), v, now, step) for k, v, step in points]
        for start in range(0, len(items), 1000):  # and 1000 metrics
            self.client.log_batch(run_id, metrics=items[start : start + 1000])

    def log_file(self, run_id: str, path: Path) -> None:
        if path.is_file():
            self.client.log_artifact(run_id, str(path))


def metric_key(name: str) -> str:
    """The tracker's name of a medbalance metric: ``val_sensitivity/0`` (class 0's) becomes
    ``val_sensitivity.0``, since a file store cannot hold both it and ``val_sensitivity``."""
    return name.replace("/", ".")


def _probe(uri: str) -> None:
    """Raise when the tracking server at ``uri`` does not answer its health check."""
    with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_PROBE_SECONDS):
        pass


def _history(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """``history.csv``'s numbers as ``(key, value, step)``, the step being the epoch."""
    return [
        (key, float(value), int(row["epoch"]))
        for row in rows
        for key, value in row.items()
        if key != "epoch" and isinstance(value, float | int) and math.isfinite(value)
    ]


def _final(result: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """``metrics.json``'s metrics as ``<split>_<metric>`` with ``_ci_low`` / ``_ci_high``."""
    split = str(result.get("split", "test"))
    points: list[tuple[str, float, int]] = []
    for key, entry in (result.get("metrics") or {}).items():
        value, ci = (
            (entry.get("value"), entry.get("ci")) if isinstance(entry, dict) else (entry, None)
        )
        named: list[tuple[str, Any]] = [(f"{split}_{key}", value)]
        if isinstance(ci, list | tuple) and len(ci) == 2:
            named += [(f"{split}_{key}_ci_low", ci[0]), (f"{split}_{key}_ci_high", ci[1])]
        points += [(k, float(v), 0) for k, v in named if _finite(v)]
    return points


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: ``loss_options.gamma``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _text(value: Any) -> str:
    """A parameter's value as MLflow stores it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _environment() -> dict[str, str]:
    """The versions of medbalance and torch, and the git commit of the working folder."""
    import torch

    from medbalance import __version__

    tags = {"medbalance.version": __version__, "medbalance.torch_version": torch.__version__}
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _git_commit() -> str | None:
    """The commit checked out in the working folder, or None (no git, not a repository)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
