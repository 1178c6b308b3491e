"""Compare imbalance remedies on the same data, splits, model, augmentation, epochs and seeds.

:func:`compare` trains every remedy with every seed, each as a normal ``train`` run folder
``OUT/runs/<remedy>/seed<k>/``, so the remedy is the only thing that differs; :func:`collect`
gathers such folders without training. Both write ``comparison.csv``, ``comparison.md``,
``comparison.html`` and ``comparison.json`` to ``OUT`` (atomically) and return a
:class:`Comparison`.

The remedies (presets and remedy files) are in :mod:`medbalance.comparison.remedies`, the
statistics (how the numbers are summarised and paired) in :mod:`medbalance.comparison.stats`, and
the result and its files in :mod:`medbalance.comparison.report`; this module runs and collects.

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
- **Numbers and paired comparison.** See :mod:`medbalance.comparison.stats`.

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

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medbalance.comparison.remedies import (
    REMEDIES,
    Remedy,
    RemedyName,
    cost_matrix,
    parse_remedies,
    remedy_config,
)
from medbalance.comparison.report import Comparison, write_outputs
from medbalance.comparison.stats import (
    METRICS,
    FinishedRun,
    check_metric,
    default_metric,
    paired_against,
    paired_runs,
    read_run,
    summary_row,
    task_kind,
    uncontrolled_notes,
    verdict_text,
)
from medbalance.core.locks import locks_folder
from medbalance.core.run_folder import RunFolder
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.workflows.run_state import run_state
from medbalance.workflows.tracking import UNTRACKED, track_compare

if TYPE_CHECKING:
    from medbalance.data.prepared import Prepared
    from medbalance.training.prepare import PreparedRun

__all__ = [
    "METRICS",
    "REMEDIES",
    "Comparison",
    "Remedy",
    "RemedyName",
    "collect",
    "compare",
    "cost_matrix",
    "paired_runs",
    "parse_remedies",
    "remedy_config",
]

log = logging.getLogger(__name__)


# --- running ----------------------------------------------------------------------------------


@dataclass
class _Job:
    remedy: str
    seed: int
    config: TrainConfig
    state: str  # "done", "resume" or "new"


def _prepare_seed(base: TrainConfig, seed: int) -> PreparedRun:
    """The data of one seed's splits and the base config resolved for it (model, size,
    presize, lr, positive class), exactly as ``train`` would resolve them."""
    from medbalance.training.prepare import prepare_run

    return prepare_run(replace(base, seed=seed))


def _train_in_process(config: TrainConfig, resume: bool, threads: int) -> float:
    """Worker of the process pool: one ``fit`` (it prepares the data from the disk cache)."""
    import torch

    from medbalance.workflows.training import train_and_evaluate

    torch.set_num_threads(threads)
    started = time.perf_counter()
    train_and_evaluate(config, resume=resume, overwrite=not resume)  # compare owns its folders
    return time.perf_counter() - started


@locks_folder("out")
def compare(
    base: TrainConfig,
    remedies: Sequence[Remedy] | str,
    out: Path,
    *,
    seeds: int = 3,
    jobs: int = 1,
    budget_minutes: float | None = None,
    metric: str | None = None,
    note: str | None = None,
    folds: int | None = None,
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
        metric: the metric of the verdict (a key of :data:`METRICS`; default: quadratic
            kappa when every run is ordinal, else AUROC).
        note: a line shown at the top of every output (e.g. that the data is synthetic).
        folds: run every remedy and seed as a K-fold cv folder (fold ensemble, OOF operating
            point) and pair the remedies on the out-of-fold cases too.

    Raises:
        ConfigError: a bad remedy, metric or count.
        ValueError: a run folder holds another config or was trained on other data.
    """
    if metric is not None:
        check_metric(metric)
    if seeds < 1 or jobs < 1:
        raise ConfigError(f"seeds and jobs must be 1 or more, got seeds={seeds}, jobs={jobs}")
    if folds is not None and jobs != 1:
        raise ConfigError("compare --folds trains one cv at a time; leave --jobs at 1")
    if budget_minutes is not None and budget_minutes <= 0:
        raise ConfigError(f"budget_minutes must be positive, got {budget_minutes}")
    chosen = parse_remedies(remedies) if isinstance(remedies, str) else list(remedies)
    if not chosen:
        raise ConfigError("no remedies given")
    out = Path(out)
    prepared: dict[int, Prepared] = {}
    plan: list[_Job] = []
    for seed in range(seeds):  # seed-major: a cut comparison still has every remedy at seed 0
        run_seed = _prepare_seed(base, seed)
        data = prepared[seed] = run_seed.data
        positive = run_seed.config.positive_index
        resolved = TrainConfig(**{**run_seed.config.to_dict(), "seed": base.seed, **UNTRACKED})
        for remedy in chosen:
            run = out / "runs" / remedy.name / f"seed{seed}"
            config = remedy_config(
                remedy,
                resolved,
                seed=seed,
                out=run,
                n_classes=len(data.class_names),
                positive=positive,
            )
            state = "cv" if folds is not None else run_state(config, data.fingerprint)
            plan.append(_Job(remedy.name, seed, config, state))
    todo = [job for job in plan if job.state != "done"]
    log.info(
        "compare: %d remed%s x %d seed%s = %d runs; %d already finished, %d to train",
        len(chosen),
        "y" if len(chosen) == 1 else "ies",
        seeds,
        "" if seeds == 1 else "s",
        len(plan),
        len(plan) - len(todo),
        len(todo),
    )
    budget = None if budget_minutes is None else 60.0 * budget_minutes
    if folds is not None:
        skipped = _cv_here(todo, folds, budget)
    elif jobs == 1:
        skipped = _train_here(todo, prepared, budget)
    else:
        skipped = _train_pool(todo, jobs, budget)
    notes = []
    if skipped:
        assert budget_minutes is not None
        left = ", ".join(f"{j.remedy}/seed{j.seed}" for j in skipped)
        notes.append(
            f"budget of {budget_minutes:g} min reached: {len(skipped)} run(s) not started "
            f"({left}); run the same command again to finish them"
        )
    names = [r.name for r in chosen if (out / "runs" / r.name).is_dir()]
    comparison = collect(out, metric=metric, remedies=names, note=note, extra_notes=notes)
    found = _find_runs(out)
    track_compare(base, comparison, {name: found[name] for name in names if name in found})
    return comparison


def _fits(budget: float | None, started: float, durations: list[float]) -> bool:
    if budget is None or not durations:
        return True
    return time.perf_counter() - started + sum(durations) / len(durations) <= budget


def _train_here(
    todo: list[_Job], prepared: dict[int, Prepared], budget: float | None
) -> list[_Job]:
    """Train one run after the other in this process, on the data prepared once per seed."""
    from medbalance.workflows.training import train_and_evaluate

    started, durations = time.perf_counter(), list[float]()
    for k, job in enumerate(todo):
        if not _fits(budget, started, durations):
            return todo[k:]
        log.info("[%d/%d] %s seed %d (%s)", k + 1, len(todo), job.remedy, job.seed, job.state)
        began = time.perf_counter()
        train_and_evaluate(
            job.config,
            resume=job.state == "resume",
            overwrite=job.state == "new",  # compare owns its run folders
            data=prepared[job.seed],
        )
        durations.append(time.perf_counter() - began)
        log.info("%s seed %d done in %.1f s", job.remedy, job.seed, durations[-1])
    return []


def _cv_here(todo: list[_Job], folds: int, budget: float | None) -> list[_Job]:
    """compare --folds: one cv folder per remedy and seed (finished folds are not retrained)."""
    from medbalance.workflows.cv import cross_validate

    started, durations = time.perf_counter(), list[float]()
    for k, job in enumerate(todo):
        if not _fits(budget, started, durations):
            return todo[k:]
        log.info("[%d/%d] %s seed %d: %d-fold cv", k + 1, len(todo), job.remedy, job.seed, folds)
        began = time.perf_counter()
        cross_validate(job.config, folds=folds, out=Path(job.config.out))
        durations.append(time.perf_counter() - began)
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


def _pair_out_of_fold(
    comparison: Comparison, runs: Mapping[str, list[FinishedRun]], names: list[str], metric: str
) -> None:
    """compare --folds: pair the remedies on the out-of-fold cases of their cv folders too."""
    if not all((r.path / RunFolder.OOF_PREDICTIONS).is_file() for rs in runs.values() for r in rs):
        return
    oof = {n: [read_run(n, r.seed, r.path, oof=True) for r in runs[n]] for n in names}
    comparison.paired_oof, pair_notes = paired_against(oof, names, comparison.reference, metric)
    comparison.oof_cases = len(oof[comparison.reference][0].ids)
    comparison.notes += [f"out-of-fold: {note}" for note in pair_notes]
    best = [e for e in comparison.paired_oof if e["metric"] == metric and e["outside_noise"]]
    if best:
        top = max(best, key=lambda e: abs(e["difference"]))
        comparison.notes.insert(
            0,
            f"on the {comparison.oof_cases} out-of-fold cases, {top['remedy']} differs from "
            f"{top['reference']} in {metric} by {top['difference']:+.3f} (95% CI "
            f"{top['ci_low']:+.3f} to {top['ci_high']:+.3f}), outside the noise",
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


def collect(
    out: Path,
    *,
    metric: str | None = None,
    remedies: Sequence[str] | None = None,
    note: str | None = None,
    extra_notes: Sequence[str] = (),
) -> Comparison:
    """Summarise the finished runs under ``out/runs/<remedy>/seed<k>/`` (no training).

    Args:
        out: the comparison folder.
        metric: the metric of the verdict (default: quadratic kappa when every run is
            ordinal, else AUROC, macro one-vs-rest for multi-class runs).
        remedies: which remedies, in this order (default: every folder found, baseline first).
        note: a line shown at the top of every output.
        extra_notes: more lines for the notes.

    Raises:
        FileNotFoundError: no finished run under ``out/runs``.
        ConfigError: an unknown metric, an ordinal metric for runs that are not ordinal, or a
            remedy with no folder.
    """
    if metric is not None:
        check_metric(metric)
    out = Path(out)
    found = _find_runs(out)
    names = list(remedies) if remedies is not None else _order(list(found))
    absent = [n for n in names if n not in found]
    if absent:
        raise ConfigError(
            f"no run folder {out / 'runs' / absent[0]}; found {', '.join(found) or 'none'}"
        )
    notes = list(extra_notes)
    runs: dict[str, list[FinishedRun]] = {}
    for name in names:
        for seed, path in sorted(found[name].items()):
            if RunFolder(path).is_evaluated():
                runs.setdefault(name, []).append(read_run(name, seed, path))
            else:
                notes.append(f"{name}/seed{seed} is not finished (no metrics.json); left out")
    names = [n for n in names if n in runs]
    if not names:
        raise FileNotFoundError(
            f"no finished run under {out / 'runs'} (looked for <remedy>/seed<k>/metrics.json)"
        )
    metric = default_metric(runs) if metric is None else metric
    check_metric(metric, runs)
    reference = "baseline" if "baseline" in names else names[0]
    if reference != "baseline":
        notes.append(
            f"baseline is not among the remedies; paired comparisons are against the first "
            f"remedy, {reference}"
        )
    notes += uncontrolled_notes(runs)
    splits = {r.result.get("split", "test") for rs in runs.values() for r in rs}
    if splits != {"test"}:
        notes.append(f"some runs were evaluated on the {'/'.join(sorted(splits))} split, not test")
    paired, pair_notes = paired_against(runs, names, reference, metric)
    notes += pair_notes
    keys = [
        k
        for k in METRICS
        if any(k in r.result.get("metrics", {}) for rs in runs.values() for r in rs)
    ]
    rows = [summary_row(name, runs[name], keys, paired) for name in names]
    verdict = verdict_text(runs, rows, metric)
    task = task_kind(runs)
    comparison = Comparison(out, metric, reference, rows, paired, verdict, notes, task=task)
    _pair_out_of_fold(comparison, runs, names, metric)
    comparison.files = write_outputs(comparison, runs, note=note)
    return comparison
