"""Compare imbalance remedies on the same data, splits, model, augmentation, epochs and seeds.

:func:`compare` trains every remedy with every seed, each as a normal ``train`` run folder
``OUT/runs/<remedy>/seed<k>/``, so the remedy is the only thing that differs; :func:`collect`
gathers such folders without training. Both write ``comparison.csv``, ``comparison.md``,
``comparison.html`` and ``comparison.json`` to ``OUT`` (atomically) and return a
:class:`Comparison`.

Remedies are named presets (:data:`REMEDIES`) or TOML/YAML/JSON files whose keys override the
``baseline`` preset (the file's stem names the remedy). Three keys exist only in remedies:
``drw = true`` (deferred re-weighting from epoch ``max(1, 2 * epochs // 3)``), ``crt = true``
(classifier re-training for ``max(1, epochs // 4)`` epochs) and ``fn_cost = 5`` (a cost matrix
with 1 for every error and ``fn_cost`` for missing the positive class, built for the data's
classes). A remedy file may not set ``data``, ``out``, ``seed`` or ``epochs``; other keys it sets
beyond the remedy (a model, say) are listed as "not controlled" in the outputs.

Decisions, stated in the outputs too:

- **Seeds.** Seed ``k`` is the run's ``seed``; as in ``train``, it also seeds splits that
  medbalance makes, so every remedy at seed ``k`` sees the same splits and test cases.
- **Resuming.** A run whose ``metrics.json``, ``predictions.csv`` and ``best.safetensors`` exist
  and whose ``config.json`` equals the planned config (``out`` aside) and data fingerprint match
  is not redone; one with ``last.pt`` resumes; a folder holding another config is an error.
- **Budget.** With ``budget_minutes`` a run is started only if, by the mean duration of the runs
  trained so far in this invocation, it would end within the budget (the first always starts).
  Every run keeps the same epochs; runs not started are listed and a re-invocation finishes them.
  Runs go seed-major (every remedy at seed 0 first), so a cut comparison stays balanced.
- **Numbers.** Metrics are the test metrics at each run's stored operating point (chosen on its
  validation split) from its ``metrics.json``: mean ± sd over seeds; the 95% CI is the stratified
  bootstrap interval stored by the lowest seed's run (test-case uncertainty of one run; the sd
  shows the seed-to-seed spread). Train time is the sum of the per-epoch times in
  ``history.csv`` (training and validation, not the final evaluation), so it reads the same
  for collected runs.
- **Paired comparison.** Each remedy against ``baseline`` (or the first remedy when baseline is
  absent), seed ``k`` with seed ``k``, on the same test cases: :func:`metrics.paired_bootstrap`
  of the AUROC and balanced-accuracy difference (remedy − reference), each model at its own
  threshold, using ``predictions.csv``. A lead is "outside the noise" when the 95% CI of the
  difference excludes 0, on the same side, for every seed pair.

SLURM job array (one ``train`` per task, then ``--collect``)::

    #!/bin/bash
    #SBATCH --array=0-8            # 3 remedies x 3 seeds
    #SBATCH --cpus-per-task=4 --time=02:00:00
    REMEDIES=(baseline oversample weighted-ce)
    r=${REMEDIES[$((SLURM_ARRAY_TASK_ID / 3))]}; k=$((SLURM_ARRAY_TASK_ID % 3))
    case $r in
      baseline)    flags="--sampler none --loss ce" ;;
      oversample)  flags="--sampler oversample --loss ce" ;;
      weighted-ce) flags="--sampler none --loss weighted-ce" ;;
    esac
    medbalance train data/ $flags --epochs 20 --seed $k --out cmp/runs/$r/seed$k --resume \\
      || medbalance train data/ $flags --epochs 20 --seed $k --out cmp/runs/$r/seed$k

    # then, once:  sbatch --dependency=afterok:$JOBID --wrap "medbalance compare --collect cmp"

Give every task the same shared options (model, size, batch size); ``--collect`` flags any that
differ. ``ldam-drw`` is ``--sampler none --loss ldam --drw``, ``crt`` is ``--sampler none
--loss ce --crt N`` and ``cost-ce`` is ``--sampler none --loss cost-ce --loss-option
'cost_matrix=[[0,1],[5,0]]'`` when the positive class is class 1.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.config import ConfigError, TrainConfig
from medbalance.figures import figure_img, new_figure
from medbalance.files import atomic_write

if TYPE_CHECKING:
    from medbalance.data import Prepared

__all__ = [
    "METRICS",
    "REMEDIES",
    "Comparison",
    "Remedy",
    "RemedyName",
    "collect",
    "compare",
    "parse_remedies",
    "remedy_config",
]

log = logging.getLogger(__name__)

REMEDIES: dict[str, dict[str, Any]] = {
    "baseline": {"sampler": "none", "loss": "ce"},
    "oversample": {"sampler": "oversample", "loss": "ce"},
    "undersample": {"sampler": "undersample", "loss": "ce"},
    "balanced-batches": {"sampler": "balanced-batches", "loss": "ce"},
    "weighted-ce": {"sampler": "none", "loss": "weighted-ce"},
    "cb-focal": {"sampler": "none", "loss": "cb-focal"},
    "cost-ce": {"sampler": "none", "loss": "cost-ce", "fn_cost": 5.0},
    "ldam-drw": {"sampler": "none", "loss": "ldam", "drw": True},
    "logit-adjusted": {"sampler": "none", "loss": "logit-adjusted"},
    "crt": {"sampler": "none", "loss": "ce", "crt": True},
}


class RemedyName(StrEnum):
    """Names of the presets in :data:`REMEDIES`, for the command line."""

    BASELINE = "baseline"
    OVERSAMPLE = "oversample"
    UNDERSAMPLE = "undersample"
    BALANCED_BATCHES = "balanced-batches"
    WEIGHTED_CE = "weighted-ce"
    CB_FOCAL = "cb-focal"
    COST_CE = "cost-ce"
    LDAM_DRW = "ldam-drw"
    LOGIT_ADJUSTED = "logit-adjusted"
    CRT = "crt"


# metric key: (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "auroc": ("AUROC", True),
    "balanced_accuracy": ("Balanced accuracy", True),
    "sensitivity": ("Sensitivity", True),
    "specificity": ("Specificity", True),
    "ppv": ("PPV", True),
    "f1": ("F1", True),
    "macro_f1": ("Macro F1", True),
    "ece": ("ECE", False),
}
_PAIRED = ("auroc", "balanced_accuracy")
_SPECIAL = ("drw", "crt", "fn_cost")
_REMEDY_KEYS = ("sampler", "loss", "loss_options", "drw_epoch", "crt_epochs")
_SET_BY_COMPARE = ("data", "out", "seed", "epochs")
_RESULT_FILES = ("metrics.json", "predictions.csv", "best.safetensors")


@dataclass(frozen=True)
class Remedy:
    """A remedy: its name and the config keys it sets (plus ``drw``, ``crt``, ``fn_cost``)."""

    name: str
    overrides: dict[str, Any]
    source: str = "preset"


def parse_remedies(spec: str | Sequence[str]) -> list[Remedy]:
    """Remedies from ``"baseline,oversample"``, ``"all"`` or a list of names and file paths.

    Raises:
        ConfigError: an unknown name (with the nearest preset), a duplicate, or a bad file.
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [s for s in items if s]
    if items == ["all"]:
        items = list(REMEDIES)
    if not items:
        raise ConfigError("no remedies given; e.g. --remedies baseline,oversample (or all)")
    remedies = []
    for item in items:
        if item in REMEDIES:
            remedies.append(Remedy(item, dict(REMEDIES[item])))
        elif Path(item).suffix.lower() in (".toml", ".yaml", ".yml", ".json") or os.sep in item:
            remedies.append(_remedy_file(Path(item)))
        else:
            near = difflib.get_close_matches(item, list(REMEDIES), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(
                f"unknown remedy {item!r}; choose from {', '.join(REMEDIES)} or 'all', or give "
                f"a .toml/.yaml config file{hint}"
            )
    names = [r.name for r in remedies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"remedy {', '.join(twice)} given twice; each name needs its own folder")
    return remedies


def _remedy_file(path: Path) -> Remedy:
    if not path.is_file():
        raise ConfigError(f"{path}: remedy config file not found")
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        import tomllib

        values = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        values = json.loads(text)
    else:
        import yaml

        values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a remedy file is a table of key = value")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in fields(TrainConfig)} | set(_SPECIAL)
    for key in values:
        if key in _SET_BY_COMPARE:
            raise ConfigError(
                f"{path}: {key!r} is set by compare for every remedy alike; remove it from the file"
            )
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    return Remedy(path.stem, {**REMEDIES["baseline"], **values}, source=str(path))


def cost_matrix(n_classes: int, positive: int, fn_cost: float) -> list[list[float]]:
    """1 for every error, ``fn_cost`` for calling a positive anything else."""
    return [
        [0.0 if i == j else (float(fn_cost) if i == positive else 1.0) for j in range(n_classes)]
        for i in range(n_classes)
    ]


def remedy_config(
    remedy: Remedy, base: TrainConfig, *, seed: int, out: Path, n_classes: int, positive: int
) -> TrainConfig:
    """The config of one run: ``base`` with the remedy's keys, ``seed`` and ``out``.

    Raises:
        ConfigError: a value breaks a rule, e.g. DRW with fewer than 2 epochs.
    """
    values = base.to_dict()
    values.update(sampler="none", loss="ce", loss_options={}, drw_epoch=None, crt_epochs=0)
    values.update({k: v for k, v in remedy.overrides.items() if k not in _SPECIAL})
    values.update(seed=seed, out=str(out))
    epochs = int(values["epochs"])
    if remedy.overrides.get("drw"):
        if epochs < 2:
            raise ConfigError(
                f"remedy {remedy.name!r} uses deferred re-weighting, which needs at least 2 "
                f"epochs; got --epochs {epochs}"
            )
        values["drw_epoch"] = max(1, 2 * epochs // 3)
    if remedy.overrides.get("crt"):
        values["crt_epochs"] = max(1, epochs // 4)
    if "fn_cost" in remedy.overrides:
        matrix = cost_matrix(n_classes, positive, float(remedy.overrides["fn_cost"]))
        values["loss_options"] = {**values["loss_options"], "cost_matrix": matrix}
    try:
        return TrainConfig(**values)
    except (TypeError, ConfigError) as error:
        raise ConfigError(f"remedy {remedy.name!r}: {error}") from error


# --- running ----------------------------------------------------------------------------------


@dataclass
class _Job:
    remedy: str
    seed: int
    config: TrainConfig
    state: str  # "done", "resume" or "new"


def _resolve_base(base: TrainConfig) -> TrainConfig:
    """Fill model, size, presize and lr once, exactly as ``fit`` would for this data."""
    from medbalance.catalog import load_catalog
    from medbalance.engine import resolve, select_device

    catalog = load_catalog(
        base.data, group_pattern=base.group_pattern, group_column=base.group_column
    )
    native = None
    if catalog.images is not None and catalog.images.shape[1] == catalog.images.shape[2]:
        native = int(catalog.images.shape[1])
    return resolve(base, native, select_device(base.device))


def _prepare(config: TrainConfig) -> Prepared:
    from medbalance.data import prepare_data

    assert config.presize is not None  # resolved
    return prepare_data(
        config.data,
        presize_to=config.presize,
        seed=config.seed,
        resplit_val_fraction=config.resplit_val,
        group_pattern=config.group_pattern,
        group_column=config.group_column,
        skip_unreadable=config.skip_unreadable,
    )


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _config_diff(planned: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(planned) | set(stored)) - {"out"})
    return [
        f"{k} {planned.get(k)!r} planned vs {stored.get(k)!r} stored"
        for k in keys
        if planned.get(k) != stored.get(k)
    ]


def _state(config: TrainConfig, fingerprint: str) -> str:
    """Whether the run folder holds this finished run, a run to resume, or nothing yet."""
    from medbalance.checkpoint import read_metadata

    run = Path(config.out)
    finished = all((run / name).is_file() for name in _RESULT_FILES)
    if not finished and not (run / "last.pt").is_file():
        return "new"
    if not (run / "config.json").is_file():
        raise ValueError(f"{run} holds run files but no config.json; delete the folder to retrain")
    diff = _config_diff(_plain(config.to_dict()), json.loads((run / "config.json").read_text()))
    if diff:
        raise ValueError(
            f"{run} holds a run with another config ({'; '.join(diff[:3])}); delete the folder "
            "or compare into another --out"
        )
    if not finished:
        return "resume"
    stored = read_metadata(run / "best.safetensors").get("data_fingerprint")
    if stored != fingerprint:
        raise ValueError(
            f"{run} was trained on other data (fingerprint {stored}, now {fingerprint}); "
            "delete the folder or compare into another --out"
        )
    return "done"


def _train_in_process(config: TrainConfig, resume: bool, threads: int) -> float:
    """Worker of the process pool: one ``fit`` (it prepares the data from the disk cache)."""
    import torch

    from medbalance.engine import fit

    torch.set_num_threads(threads)
    started = time.perf_counter()
    fit(config, resume=resume)
    return time.perf_counter() - started


def compare(
    base: TrainConfig,
    remedies: Sequence[Remedy] | str,
    out: Path,
    *,
    seeds: int = 3,
    jobs: int = 1,
    budget_minutes: float | None = None,
    metric: str = "auroc",
    note: str | None = None,
) -> Comparison:
    """Train every remedy with seeds ``0..seeds-1`` and write the comparison to ``out``.

    Args:
        base: what every run shares (data, model, epochs, augmentation...); its remedy keys
            (sampler, loss, loss options, DRW, cRT) are replaced by each remedy's.
        remedies: :class:`Remedy` objects, or a spec for :func:`parse_remedies`.
        out: the comparison folder; runs go to ``out/runs/<remedy>/seed<k>``.
        seeds: seeds per remedy.
        jobs: runs trained at a time, each in its own process (1: in this process).
        budget_minutes: do not start a run that would end after this (module docstring).
        metric: the metric of the verdict (a key of :data:`METRICS`).
        note: a line shown at the top of every output (e.g. that the data is synthetic).

    Raises:
        ConfigError: a bad remedy, metric or count.
        ValueError: a run folder holds another config or was trained on other data.
    """
    _check_metric(metric)
    if seeds < 1 or jobs < 1:
        raise ConfigError(f"seeds and jobs must be 1 or more, got seeds={seeds}, jobs={jobs}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise ConfigError(f"budget_minutes must be positive, got {budget_minutes}")
    chosen = parse_remedies(remedies) if isinstance(remedies, str) else list(remedies)
    if not chosen:
        raise ConfigError("no remedies given")
    out = Path(out)
    base = _resolve_base(base)
    from medbalance.data import default_positive_class

    prepared: dict[int, Prepared] = {}
    plan: list[_Job] = []
    for seed in range(seeds):  # seed-major: a cut comparison still has every remedy at seed 0
        data = prepared[seed] = _prepare(replace(base, seed=seed))
        if base.positive_class is not None and base.positive_class in data.class_names:
            positive = data.class_names.index(base.positive_class)
        else:
            positive = default_positive_class(data.class_names, data.train_counts())
        for remedy in chosen:
            run = out / "runs" / remedy.name / f"seed{seed}"
            config = remedy_config(
                remedy,
                base,
                seed=seed,
                out=run,
                n_classes=len(data.class_names),
                positive=positive,
            )
            plan.append(_Job(remedy.name, seed, config, _state(config, data.fingerprint)))
    todo = [job for job in plan if job.state != "done"]
    log.info(
        "compare: %d remedies x %d seeds = %d runs; %d already finished, %d to train",
        len(chosen),
        seeds,
        len(plan),
        len(plan) - len(todo),
        len(todo),
    )
    budget = None if budget_minutes is None else 60.0 * budget_minutes
    skipped = _train_here(todo, prepared, budget) if jobs == 1 else _train_pool(todo, jobs, budget)
    notes = []
    if skipped:
        assert budget_minutes is not None
        left = ", ".join(f"{j.remedy}/seed{j.seed}" for j in skipped)
        notes.append(
            f"budget of {budget_minutes:g} min reached: {len(skipped)} run(s) not started "
            f"({left}); run the same command again to finish them"
        )
    names = [r.name for r in chosen if (out / "runs" / r.name).is_dir()]
    return collect(out, metric=metric, remedies=names, note=note, extra_notes=notes)


def _fits(budget: float | None, started: float, durations: list[float]) -> bool:
    if budget is None or not durations:
        return True
    return time.perf_counter() - started + sum(durations) / len(durations) <= budget


def _train_here(
    todo: list[_Job], prepared: dict[int, Prepared], budget: float | None
) -> list[_Job]:
    """Train one run after the other in this process, on the data prepared once per seed."""
    from medbalance.engine import fit

    started, durations = time.perf_counter(), list[float]()
    for k, job in enumerate(todo):
        if not _fits(budget, started, durations):
            return todo[k:]
        log.info("[%d/%d] %s seed %d (%s)", k + 1, len(todo), job.remedy, job.seed, job.state)
        began = time.perf_counter()
        fit(job.config, resume=job.state == "resume", data=prepared[job.seed])
        durations.append(time.perf_counter() - began)
        log.info("%s seed %d done in %.1f s", job.remedy, job.seed, durations[-1])
    return []


def _train_pool(todo: list[_Job], jobs: int, budget: float | None) -> list[_Job]:
    """Train ``jobs`` runs at a time, each in a fresh process (the presize cache is on disk)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # torch is not fork-safe
    started, durations = time.perf_counter(), list[float]()
    pending = list(todo)
    running: dict[Future[float], _Job] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        while pending or running:
            while pending and len(running) < jobs and _fits(budget, started, durations):
                job = pending.pop(0)
                log.info("start %s seed %d (%s)", job.remedy, job.seed, job.state)
                future = pool.submit(_train_in_process, job.config, job.state == "resume", threads)
                running[future] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                durations.append(future.result())
                log.info("%s seed %d done in %.1f s", job.remedy, job.seed, durations[-1])
    return pending


# --- collecting -------------------------------------------------------------------------------


@dataclass
class _Run:
    remedy: str
    seed: int
    path: Path
    result: dict[str, Any]  # metrics.json
    config: dict[str, Any]
    seconds: float
    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray
    preds: np.ndarray

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.result["class_names"]]

    @property
    def positive(self) -> int | None:
        pos = self.result.get("positive_class")
        return self.classes.index(pos) if len(self.classes) == 2 and pos in self.classes else None

    @property
    def threshold(self) -> float | None:
        value = (self.result.get("threshold") or {}).get("value")
        return float(value) if isinstance(value, int | float) else None

    def value(self, key: str) -> float:
        entry = self.result.get("metrics", {}).get(key)
        return _float(entry.get("value")) if isinstance(entry, dict) else math.nan

    def ci(self, key: str) -> tuple[float, float]:
        entry = self.result.get("metrics", {}).get(key)
        ci = entry.get("ci") if isinstance(entry, dict) else None
        return (_float(ci[0]), _float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else NAN2


NAN2 = (math.nan, math.nan)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_run(remedy: str, seed: int, path: Path) -> _Run:
    result = json.loads((path / "metrics.json").read_text())
    config_path = path / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    seconds = math.nan
    if (path / "history.csv").is_file():
        with (path / "history.csv").open(newline="") as handle:
            seconds = sum(_float(row.get("seconds")) for row in csv.DictReader(handle))
    classes = [str(c) for c in result["class_names"]]
    with (path / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [f"prob_{c}" for c in classes if rows and f"prob_{c}" not in rows[0]]
    if missing:
        raise ValueError(f"{path / 'predictions.csv'}: no column {missing[0]}; re-evaluate the run")
    index = {c: i for i, c in enumerate(classes)}
    return _Run(
        remedy=remedy,
        seed=seed,
        path=path,
        result=result,
        config=config,
        seconds=seconds,
        ids=[row["id"] for row in rows],
        labels=np.array([index[row["true_label"]] for row in rows], dtype=np.int64),
        probs=np.array([[float(row[f"prob_{c}"]) for c in classes] for row in rows]).reshape(
            len(rows), len(classes)
        ),
        preds=np.array([index[row["predicted_label"]] for row in rows], dtype=np.int64),
    )


def _find_runs(out: Path) -> dict[str, dict[int, Path]]:
    found: dict[str, dict[int, Path]] = {}
    root = out / "runs"
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for run in folder.iterdir():
            suffix = run.name.removeprefix("seed")
            if run.is_dir() and run.name.startswith("seed") and suffix.isdigit():
                found.setdefault(folder.name, {})[int(suffix)] = run
    return found


def _order(names: Sequence[str]) -> list[str]:
    """baseline first, then the presets in registry order, then the rest alphabetically."""
    rank = {name: k for k, name in enumerate(REMEDIES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        near = difflib.get_close_matches(metric, list(METRICS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}{hint}")


@dataclass
class Comparison:
    """The result of :func:`compare` or :func:`collect`; ``rows`` mirror ``comparison.csv``."""

    out: Path
    metric: str
    reference: str
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    verdict: str
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def summary_table(self, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the summary table as text: ``comparison.md``'s, or, ``compact``,
        short headers and mean ± sd without the CI (for a terminal)."""
        head, rows, _, _ = _tables(self, compact=compact)
        return head, rows


def collect(
    out: Path,
    *,
    metric: str = "auroc",
    remedies: Sequence[str] | None = None,
    note: str | None = None,
    extra_notes: Sequence[str] = (),
) -> Comparison:
    """Summarise the finished runs under ``out/runs/<remedy>/seed<k>/`` (no training).

    Args:
        out: the comparison folder.
        metric: the metric of the verdict.
        remedies: which remedies, in this order (default: every folder found, baseline first).
        note: a line shown at the top of every output.
        extra_notes: more lines for the notes.

    Raises:
        FileNotFoundError: no finished run under ``out/runs``.
        ConfigError: an unknown metric, or a remedy with no folder.
    """
    _check_metric(metric)
    out = Path(out)
    found = _find_runs(out)
    names = list(remedies) if remedies is not None else _order(list(found))
    absent = [n for n in names if n not in found]
    if absent:
        raise ConfigError(
            f"no run folder {out / 'runs' / absent[0]}; found {', '.join(found) or 'none'}"
        )
    notes = list(extra_notes)
    runs: dict[str, list[_Run]] = {}
    for name in names:
        for seed, path in sorted(found[name].items()):
            if all((path / f).is_file() for f in ("metrics.json", "predictions.csv")):
                runs.setdefault(name, []).append(_read_run(name, seed, path))
            else:
                notes.append(f"{name}/seed{seed} is not finished (no metrics.json); left out")
    names = [n for n in names if n in runs]
    if not names:
        raise FileNotFoundError(
            f"no finished run under {out / 'runs'} (looked for <remedy>/seed<k>/metrics.json)"
        )
    reference = "baseline" if "baseline" in names else names[0]
    if reference != "baseline":
        notes.append(
            f"baseline is not among the remedies; paired comparisons are against the first "
            f"remedy, {reference}"
        )
    notes += _uncontrolled(runs)
    splits = {r.result.get("split", "test") for rs in runs.values() for r in rs}
    if splits != {"test"}:
        notes.append(f"some runs were evaluated on the {'/'.join(sorted(splits))} split, not test")
    paired, pair_notes = _paired_all(runs, names, reference, metric)
    notes += pair_notes
    keys = [
        k
        for k in METRICS
        if any(k in r.result.get("metrics", {}) for rs in runs.values() for r in rs)
    ]
    rows = [_summary(name, runs[name], keys, paired) for name in names]
    verdict = _verdict(runs, rows, metric)
    comparison = Comparison(out, metric, reference, rows, paired, verdict, notes)
    comparison.files = _write_outputs(comparison, runs, note=note)
    return comparison


# --- statistics -------------------------------------------------------------------------------


def _uncontrolled(runs: Mapping[str, list[_Run]]) -> list[str]:
    """Config keys besides the remedy (and seed, output folder) that differ between runs."""
    ignore = {*_REMEDY_KEYS, "seed", "out"}
    all_runs = [r for rs in runs.values() for r in rs]
    keys = sorted({k for r in all_runs for k in r.config} - ignore)
    notes = []
    for key in keys:
        values: dict[str, list[str]] = {}
        for run in all_runs:
            text = json.dumps(run.config.get(key), sort_keys=True)
            values.setdefault(text, []).append(f"{run.remedy}/seed{run.seed}")
        if len(values) > 1:
            where = "; ".join(f"{v} in {', '.join(w[:3])}" for v, w in values.items())
            notes.append(f"not controlled: {key} differs between runs ({where})")
    return notes


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def _metric_fn(run: _Run) -> tuple[Any, np.ndarray, np.ndarray]:
    """(metric function, labels, scores) that score ``run`` at its own operating point."""
    import functools

    from medbalance.metrics import binary_metrics

    if run.positive is not None and run.threshold is not None:
        y = (run.labels == run.positive).astype(np.int64)
        score = run.probs[:, run.positive]
        return functools.partial(binary_metrics, threshold=run.threshold), y, score
    # multi-class: the stored decisions ride along with the probabilities
    packed = np.column_stack([run.probs, run.preds.astype(np.float64)])
    return _multiclass_packed, run.labels, packed


def _multiclass_packed(labels: np.ndarray, packed: np.ndarray) -> dict[str, float]:
    from medbalance.metrics import multiclass_metrics

    return multiclass_metrics(labels, packed[:, :-1], packed[:, -1].astype(np.int64))


def _paired(a: _Run, b: _Run, key: str, n_resamples: int) -> dict[str, Any]:
    """Paired bootstrap of ``key(b) - key(a)`` on the same test cases (seed of ``a``)."""
    from medbalance.metrics import paired_bootstrap

    if a.ids != b.ids or not np.array_equal(a.labels, b.labels):
        raise ValueError(
            f"{a.path} and {b.path} were evaluated on different test cases; a paired "
            "comparison needs the same data and splits"
        )
    fn_a, y, scores_a = _metric_fn(a)
    fn_b, _, scores_b = _metric_fn(b)
    result = paired_bootstrap(
        fn_a, y, scores_a, scores_b, metric=key, n_resamples=n_resamples, seed=a.seed,
        metric_fn_b=fn_b,
    )  # fmt: skip
    lo, hi = result["ci"]
    return {
        "remedy": b.remedy,
        "reference": a.remedy,
        "seed": a.seed,
        "metric": key,
        "reference_value": result["a"],
        "remedy_value": result["b"],
        "difference": result["difference"],
        "ci_low": lo,
        "ci_high": hi,
        "p_value": result["p_value"],
        "outside_noise": bool(lo > 0 or hi < 0),
    }


def paired_runs(run_a: Path, run_b: Path, metric: str = "auroc", n_resamples: int = 1000) -> dict:
    """Paired bootstrap of ``metric(b) - metric(a)`` for two evaluated run folders.

    Each run is scored at its own stored operating point from its ``predictions.csv``; the
    bootstrap seed is run a's seed.
    """
    a, b = Path(run_a), Path(run_b)
    config = json.loads((a / "config.json").read_text()) if (a / "config.json").is_file() else {}
    seed = int(config.get("seed", 0))
    return _paired(
        _read_run(a.parent.name, seed, a), _read_run(b.parent.name, seed, b), metric, n_resamples
    )


def _n_bootstrap(runs: Sequence[_Run]) -> int:
    value = runs[0].config.get("bootstrap")
    return int(value) if isinstance(value, int) and value > 0 else 1000


def _pairs(a: Sequence[_Run], b: Sequence[_Run]) -> list[tuple[_Run, _Run]]:
    by_seed = {r.seed: r for r in b}
    return [(r, by_seed[r.seed]) for r in a if r.seed in by_seed]


def _paired_all(
    runs: Mapping[str, list[_Run]], names: Sequence[str], reference: str, metric: str
) -> tuple[list[dict[str, Any]], list[str]]:
    keys = list(dict.fromkeys([*_PAIRED, metric]))
    n = _n_bootstrap(runs[reference])
    paired, notes = [], []
    for name in names:
        if name == reference:
            continue
        pairs = _pairs(runs[reference], runs[name])
        if not pairs:
            notes.append(f"{name} shares no seed with {reference}; no paired comparison")
        for a, b in pairs:
            for key in keys:
                try:
                    paired.append(_paired(a, b, key, n))
                except ValueError as error:
                    notes.append(f"{name}/seed{b.seed}: {error}")
                    break
    return paired, notes


def _lead(entries: Sequence[dict[str, Any]], higher: bool) -> bool:
    """Whether every seed pair's CI excludes 0 on the side of the remedy being better."""
    if not entries:
        return False
    return all((e["ci_low"] > 0) if higher else (e["ci_high"] < 0) for e in entries)


def _summary(
    name: str, runs: Sequence[_Run], keys: Sequence[str], paired: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    first = min(runs, key=lambda r: r.seed)
    row: dict[str, Any] = {"remedy": name, "seeds": len(runs)}
    for key in keys:
        row[f"{key}_mean"], row[f"{key}_sd"] = _mean_sd([r.value(key) for r in runs])
        row[f"{key}_ci_low"], row[f"{key}_ci_high"] = first.ci(key)
    row["train_seconds_mean"], row["train_seconds_sd"] = _mean_sd([r.seconds for r in runs])
    for key in dict.fromkeys(e["metric"] for e in paired):
        mine = [e for e in paired if e["remedy"] == name and e["metric"] == key]
        row[f"{key}_diff_vs_reference"] = _mean_sd([e["difference"] for e in mine])[0]
        row[f"{key}_diff_outside_noise"] = (
            (_lead(mine, True) or _lead(mine, False)) if mine else None
        )
    return row


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _verdict(runs: Mapping[str, list[_Run]], rows: Sequence[dict[str, Any]], metric: str) -> str:
    label, higher = METRICS[metric]
    scored = [r for r in rows if not math.isnan(r.get(f"{metric}_mean", math.nan))]
    if not scored:
        return f"Verdict: no remedy has a test {label}; nothing to rank."
    scored.sort(key=lambda r: r[f"{metric}_mean"], reverse=higher)
    seeds = max(r["seeds"] for r in scored)
    head = f"Verdict (test {label}, mean over {seeds} seed{'s' if seeds > 1 else ''})"

    def describe(row: dict[str, Any]) -> str:
        sd = row[f"{metric}_sd"]
        return f"{row['remedy']} ({_fmt(row[f'{metric}_mean'])}" + (
            f" ± {_fmt(sd)})" if not math.isnan(sd) else ")"
        )

    best = scored[0]
    if len(scored) == 1:
        return f"{head}: only {describe(best)} has results; nothing to compare."
    second = scored[1]
    lead = best[f"{metric}_mean"] - second[f"{metric}_mean"]
    if lead == 0:
        return f"{head}: {describe(best)} and {describe(second)} tie; there is no lead to test."
    pairs = _pairs(runs[second["remedy"]], runs[best["remedy"]])
    entries = [_paired(a, b, metric, _n_bootstrap(runs[second["remedy"]])) for a, b in pairs]
    if not entries:
        noise = "no common seed, so no paired test of the lead"
    else:
        cis = ", ".join(
            f"seed {e['seed']} {_fmt(e['difference'], True)} "
            f"[{_fmt(e['ci_low'], True)}, {_fmt(e['ci_high'], True)}]"
            for e in entries
        )
        if _lead(entries, higher):
            every = "every seed pair" if len(entries) > 1 else "the seed pair"
            noise = (
                f"the lead is outside the noise: the paired bootstrap 95% CI of the difference "
                f"excludes 0 for {every} ({cis})"
            )
        else:
            where = "for every seed pair " if len(entries) > 1 else ""
            noise = (
                f"the lead is within the noise: the paired bootstrap 95% CI of the difference "
                f"does not exclude 0 {where}({cis})"
            )
    better = "higher" if higher else "lower"
    return (
        f"{head}: best is {describe(best)}, ahead of {describe(second)} by "
        f"{_fmt(abs(lead))} ({better} is better); {noise}."
    )


# --- outputs ----------------------------------------------------------------------------------

_CSS = """
body{margin:0;background:#eef1f5;color:#1d2733;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,Helvetica,Arial,sans-serif}main,header>div{max-width:1180px;margin:0 auto;padding:0 20px}
header{background:#173f5f;color:#fff;padding:24px 0 20px;margin-bottom:22px}
h1{margin:0 0 6px;font-size:26px}h2{margin:0 0 12px;font-size:21px;color:#173f5f}
section{background:#fff;border-radius:10px;padding:20px 24px;margin:0 0 18px;
box-shadow:0 1px 3px #0002}.callout{background:#e8f3fb;border-left:5px solid #20639b;
padding:12px 16px;border-radius:6px;margin:0 0 18px}.callout.warn{background:#fff4e0;
border-color:#d9822b}.note{color:#5b6b7d;font-style:italic}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{padding:6px 10px;
border-bottom:1px solid #dde3ea;text-align:left;vertical-align:top}th{background:#f1f4f8}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img.plot{width:100%;height:auto;display:block;margin:8px 0}
"""
_SHORT = {"balanced_accuracy": "Bal. acc.", "sensitivity": "Sens.", "specificity": "Spec."}
_BARS = ("auroc", "balanced_accuracy", "sensitivity", "specificity", "ppv", "f1", "macro_f1")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_cell(row.get(c)) for c in columns] for row in rows])
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _value_cell(row: dict[str, Any], key: str, compact: bool = False) -> str:
    mean, sd = row.get(f"{key}_mean", math.nan), row.get(f"{key}_sd", math.nan)
    if math.isnan(mean):
        return "n/a"
    text = _fmt(mean) + (f" ± {_fmt(sd)}" if not math.isnan(sd) else "")
    if compact:
        return text
    lo, hi = row.get(f"{key}_ci_low", math.nan), row.get(f"{key}_ci_high", math.nan)
    return text + (f" [{_fmt(lo)}, {_fmt(hi)}]" if not math.isnan(lo) else "")


def _keys(comparison: Comparison) -> list[str]:
    return [k for k in METRICS if any(f"{k}_mean" in r for r in comparison.rows)]


def _tables(
    comparison: Comparison, compact: bool = False
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(head, rows) of the summary and of the paired comparison, as text cells."""
    keys = _keys(comparison)
    names = [_SHORT.get(k, METRICS[k][0]) if compact else METRICS[k][0] for k in keys]
    head = ["remedy", "seeds", *names, "time (s)" if compact else "train time (s)"]
    body = []
    for row in comparison.rows:
        seconds = row["train_seconds_mean"]
        sd = row["train_seconds_sd"]
        time_cell = "n/a" if math.isnan(seconds) else f"{seconds:.1f}"
        time_cell += f" ± {sd:.1f}" if not math.isnan(sd) else ""
        body.append(
            [
                row["remedy"],
                str(row["seeds"]),
                *(_value_cell(row, k, compact) for k in keys),
                time_cell,
            ]
        )
    ref = comparison.reference
    paired_head = ["remedy", "seed", "metric", ref, "remedy value", f"remedy − {ref}", "95% CI"]
    paired_head += ["p", "outside the noise"]
    paired_body = [
        [
            e["remedy"],
            str(e["seed"]),
            METRICS[e["metric"]][0],
            _fmt(e["reference_value"]),
            _fmt(e["remedy_value"]),
            _fmt(e["difference"], True),
            f"[{_fmt(e['ci_low'], True)}, {_fmt(e['ci_high'], True)}]",
            _fmt(e["p_value"]),
            "yes" if e["outside_noise"] else "no",
        ]
        for e in comparison.paired
    ]
    return head, body, paired_head, paired_body


def _context(runs: Mapping[str, list[_Run]]) -> str:
    run = next(iter(runs.values()))[0]
    config, result = run.config, run.result
    counts = (result.get("counts") or {}).get(result.get("split", "test"), {})
    cases = "; ".join(f"{c}: {n}" for c, n in counts.items())
    seeds = sorted({r.seed for rs in runs.values() for r in rs})
    point = result.get("threshold") or {}
    return (
        f"data {config.get('data', '?')}; model {config.get('model', '?')} at "
        f"{config.get('size', '?')} px; {config.get('epochs', '?')} epochs; seeds "
        f"{', '.join(map(str, seeds))}; {result.get('split', 'test')} split n={result.get('n')}"
        + (f" ({cases})" if cases else "")
        + f"; operating point per run: {point.get('policy', '?')}, chosen on "
        f"{point.get('chosen_on', 'val')}"
    )


_READING = (
    "Each cell: mean ± sd over seeds [95% CI]. The CI is the stratified bootstrap interval that "
    "the lowest seed's run stored in its metrics.json (uncertainty from the test cases of one "
    "run); the sd is the spread between seeds. Metrics other than AUROC are taken at each run's "
    "operating point, chosen on its validation split. Train time sums the per-epoch times in "
    "history.csv. Paired comparisons resample the same test cases for both runs (seed k with "
    "seed k, each at its own threshold); a difference is outside the noise when its 95% CI "
    "excludes 0."
)


def _markdown(comparison: Comparison, runs: Mapping[str, list[_Run]], note: str | None) -> str:
    head, body, paired_head, paired_body = _tables(comparison)

    def table(h: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        lines = ["| " + " | ".join(h) + " |", "|---|" + "--:|" * (len(h) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

    parts = ["# Remedy comparison", ""]
    if note:
        parts += [f"> **{note}**", ""]
    parts += [f"**{comparison.verdict}**", "", _context(runs) + ".", ""]
    parts += ["## Test metrics at each run's operating point", "", table(head, body), ""]
    parts += [_READING, ""]
    parts += [f"## Paired comparison against {comparison.reference}", ""]
    parts += [table(paired_head, paired_body) if paired_body else "No other remedy.", ""]
    if comparison.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in comparison.notes), ""]
    return "\n".join(parts)


def _plot_bars(comparison: Comparison) -> str:
    keys = [k for k in _BARS if k in _keys(comparison)]
    figure, (ax,) = new_figure(11, 4.6)
    n = len(comparison.rows)
    width = 0.8 / max(n, 1)
    for k, row in enumerate(comparison.rows):
        means = np.array([row[f"{key}_mean"] for key in keys])
        if row["seeds"] >= 2:
            err: Any = np.array([row[f"{key}_sd"] for key in keys])
        else:
            lo = np.array([row[f"{key}_ci_low"] for key in keys])
            hi = np.array([row[f"{key}_ci_high"] for key in keys])
            err = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
        x = np.arange(len(keys)) + (k - (n - 1) / 2) * width
        ax.bar(x, means, width, yerr=err, capsize=3, color=f"C{k % 10}", label=row["remedy"])
    ax.set_xticks(np.arange(len(keys)), [METRICS[k][0] for k in keys])
    ax.set(ylim=(0, 1.05), ylabel="test value", title="Test metrics per remedy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, ncols=min(n, 5), loc="lower right")
    return figure_img(figure, "bar chart of test metrics per remedy", dpi=130)


def _plot_roc(comparison: Comparison, runs: Mapping[str, list[_Run]]) -> str:
    from sklearn.metrics import roc_curve

    figure, (ax,) = new_figure(6.4, 6)
    for k, row in enumerate(comparison.rows):
        for j, run in enumerate(runs[row["remedy"]]):
            if run.positive is None:
                continue
            y = run.labels == run.positive
            if y.all() or not y.any():
                continue
            fpr, tpr, _ = roc_curve(y, run.probs[:, run.positive])
            label = f"{row['remedy']} (AUROC {_fmt(row['auroc_mean'])})" if j == 0 else None
            ax.plot(fpr, tpr, color=f"C{k % 10}", lw=1.8 if j == 0 else 1, alpha=1 - 0.4 * (j > 0),
                    label=label)  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity",
           ylabel="Sensitivity", title="ROC curves, every run")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return figure_img(figure, "ROC curves of every run", dpi=130)


def _plot_points(comparison: Comparison, runs: Mapping[str, list[_Run]]) -> str:
    figure, (ax,) = new_figure(6.4, 6)
    markers = "osD^vP*Xhp"
    for k, row in enumerate(comparison.rows):
        points = [(1 - r.value("specificity"), r.value("sensitivity")) for r in runs[row["remedy"]]]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, ls="", marker=markers[k % len(markers)], ms=9, color=f"C{k % 10}",
                alpha=0.8, clip_on=False, label=row["remedy"])  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal",
           xlabel="1 − specificity", ylabel="Sensitivity",
           title="Operating points (chosen on val), test split")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    alt = "sensitivity against 1 - specificity of every run's operating point"
    return figure_img(figure, alt, dpi=130)


def _html(comparison: Comparison, runs: Mapping[str, list[_Run]], note: str | None) -> str:
    import html

    def e(text: object) -> str:
        return html.escape(str(text))

    def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        def cells(tag: str, values: Sequence[str]) -> str:
            return "".join(
                f"<{tag}{'' if k == 0 else ' class=num'}>{e(v)}</{tag}>"
                for k, v in enumerate(values)
            )

        body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
        return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"

    head, body, paired_head, paired_body = _tables(comparison)
    binary = all(r.positive is not None for rs in runs.values() for r in rs)
    plots = _plot_bars(comparison)
    if binary:
        plots += _plot_roc(comparison, runs) + _plot_points(comparison, runs)
    else:
        plots += '<p class="note">ROC curves and operating points: binary tasks only.</p>'
    links = " · ".join(
        f'<a href="runs/{e(r.remedy)}/seed{r.seed}/report.html">{e(r.remedy)} seed {r.seed}</a>'
        for rs in runs.values()
        for r in rs
        if (r.path / "report.html").is_file()
    )
    warn = f'<div class="callout warn"><b>{e(note)}</b></div>' if note else ""
    notes = "".join(f"<li>{e(n)}</li>" for n in comparison.notes)
    title = "medbalance: remedy comparison"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><div><h1>{e(title)}</h1><div>{e(_context(runs))}</div></div></header><main>"
        f'{warn}<div class="callout"><b>{e(comparison.verdict)}</b></div>'
        f"<section><h2>Test metrics at each run's operating point</h2>{table(head, body)}"
        f'<p class="note">{e(_READING)}</p></section>'
        f"<section><h2>Paired comparison against {e(comparison.reference)}</h2>"
        f"{table(paired_head, paired_body) if paired_body else '<p>No other remedy.</p>'}"
        f"</section><section><h2>Plots</h2>{plots}<p class='note'>Error bars: ± sd over "
        "seeds; with one seed, the run's 95% bootstrap CI.</p></section>"
        + (f"<section><h2>Notes</h2><ul>{notes}</ul></section>" if notes else "")
        + (f"<section><h2>Run reports</h2><p>{links}</p></section>" if links else "")
        + "</main></body></html>\n"
    )


def _write_outputs(
    comparison: Comparison, runs: Mapping[str, list[_Run]], *, note: str | None
) -> list[Path]:
    out = comparison.out
    texts = {
        "comparison.csv": _csv(comparison.rows),
        "comparison.md": _markdown(comparison, runs, note),
        "comparison.json": json.dumps(
            _json_safe(
                {
                    "note": note,
                    "metric": comparison.metric,
                    "reference": comparison.reference,
                    "verdict": comparison.verdict,
                    "notes": comparison.notes,
                    "rows": comparison.rows,
                    "paired": comparison.paired,
                }
            ),
            indent=2,
        )
        + "\n",
        "comparison.html": _html(comparison, runs, note),
    }
    for name, text in texts.items():
        atomic_write(out / name, _writer(text))
    return [out / name for name in texts]


def _writer(text: str) -> Callable[[Path], object]:
    return lambda tmp: tmp.write_text(text, encoding="utf-8")
