"""The statistics of a remedy comparison: finished runs read back, summarised and paired.

:func:`read_run` loads a finished run folder (``metrics.json``, ``predictions.csv`` and, when
present, ``config.json`` and ``history.csv``) as a :class:`FinishedRun`. :func:`summary_row`,
:func:`paired_against` and :func:`verdict_text` turn the runs of every remedy into the rows,
paired comparisons and verdict of a comparison; :func:`paired_runs` pairs two run folders.

Decisions, stated in the outputs too:

- **Numbers.** Metrics are the test metrics at each run's stored operating point (chosen on its
  validation split) from its ``metrics.json``: mean ± sd over seeds; the 95% CI is the stratified
  bootstrap interval stored by the lowest seed's run (test-case uncertainty of one run; the sd
  shows the seed-to-seed spread). Train time is the sum of the per-epoch times in
  ``history.csv`` (training and validation, not the final evaluation), so it reads the same
  for collected runs.
- **Paired comparison.** Each remedy against ``baseline`` (or the first remedy when baseline is
  absent), seed ``k`` with seed ``k``, on the same test cases: :func:`bootstrap.paired_bootstrap`
  of the AUROC and balanced-accuracy difference (remedy − reference), each model at its own
  operating point, using ``predictions.csv``; for ordinal runs (``"ordinal": true`` in
  ``metrics.json``) also of the quadratic weighted kappa. A lead is "outside the noise" when the
  95% CI of the difference excludes 0, on the same side, for every seed pair.
- **Multi-class.** AUROC is the macro one-vs-rest AUROC and sensitivity and specificity are
  macro averages (:func:`metric_label` names them so); the stored decisions of
  ``predictions.csv`` are scored by the vectorised :func:`multiclass_metrics`. The verdict
  defaults to the quadratic kappa for ordinal runs and to AUROC otherwise (:func:`default_metric`).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.comparison.remedies import REMEDY_KEYS
from medbalance.core.run_folder import RunFolder, read_json_object
from medbalance.evaluation.metrics import ORDINAL_KEYS
from medbalance.training.config import ConfigError

__all__ = [
    "METRICS",
    "FinishedRun",
    "check_metric",
    "default_metric",
    "format_value",
    "metric_label",
    "paired_against",
    "paired_keys",
    "paired_runs",
    "read_run",
    "summary_row",
    "task_kind",
    "uncontrolled_notes",
    "verdict_text",
]

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
    "quadratic_kappa": ("Quadratic kappa", True),
    "mean_abs_error": ("Mean abs. error (grades)", False),
    "within_one_accuracy": ("Within-one accuracy", True),
}
_PAIRED = ("auroc", "balanced_accuracy")
_PAIRED_ORDINAL = "quadratic_kappa"  # paired too when every run is ordinal
_MACRO = {
    "auroc": "Macro AUROC",
    "sensitivity": "Macro sensitivity",
    "specificity": "Macro specificity",
}
_NAN2 = (math.nan, math.nan)


@dataclass
class FinishedRun:
    """One finished run of a remedy at a seed, as its folder stored it (see :func:`read_run`)."""

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
        """The class names, in the model's order."""
        return [str(c) for c in self.result["class_names"]]

    @property
    def ordinal(self) -> bool:
        """Whether the run's classes are ordered grades scored with the ordinal metrics
        (``"ordinal": true`` and a ``quadratic_kappa`` in metrics.json)."""
        scored = "quadratic_kappa" in (self.result.get("metrics") or {})
        return self.result.get("ordinal") is True and scored

    @property
    def positive(self) -> int | None:
        """Index of the positive class of a binary task, else None."""
        pos = self.result.get("positive_class")
        return self.classes.index(pos) if len(self.classes) == 2 and pos in self.classes else None

    @property
    def threshold(self) -> float | None:
        """The stored operating point (a probability of the positive class), if any.

        ``metrics.json`` is strict JSON: a binary threshold of ``inf`` (no validation threshold
        met the policy; nothing is called positive) is stored as ``null``.
        """
        point = self.result.get("threshold") or {}
        value = point.get("value")
        if isinstance(value, int | float):
            return float(value)
        binary_policy = point.get("policy") not in (None, "argmax")
        return math.inf if len(self.classes) == 2 and binary_policy else None

    def value(self, key: str) -> float:
        """The test value of metric ``key`` (NaN when not stored)."""
        entry = self.result.get("metrics", {}).get(key)
        return _float(entry.get("value")) if isinstance(entry, dict) else math.nan

    def ci(self, key: str) -> tuple[float, float]:
        """The stored 95% bootstrap CI of metric ``key`` (NaNs when not stored)."""
        entry = self.result.get("metrics", {}).get(key)
        ci = entry.get("ci") if isinstance(entry, dict) else None
        return (_float(ci[0]), _float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else _NAN2


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(remedy: str, seed: int, path: Path, *, oof: bool = False) -> FinishedRun:
    """The run in ``path`` from its ``metrics.json`` and ``predictions.csv`` (with ``oof``, a
    cv folder's ``oof_metrics.json`` and ``oof_predictions.csv``: its out-of-fold cases).

    Raises:
        ValueError: ``predictions.csv`` lacks the probability column of a class.
    """
    folder = RunFolder(path)
    result = read_json_object(path / RunFolder.OOF_METRICS) if oof else folder.read_metrics()
    config = folder.read_config() if folder.config.is_file() else {}
    classes = [str(c) for c in result["class_names"]]
    rows = folder.read_predictions(classes, file=path / RunFolder.OOF_PREDICTIONS if oof else None)
    return FinishedRun(
        remedy=remedy,
        seed=seed,
        path=path,
        result=result,
        config=config,
        seconds=folder.train_seconds(),
        ids=rows.ids,
        labels=rows.labels,
        probs=rows.probs,
        preds=rows.preds,
    )


def check_metric(metric: str, runs: Mapping[str, Sequence[FinishedRun]] | None = None) -> None:
    """Raise :class:`ConfigError`, with the nearest key, unless ``metric`` is in :data:`METRICS`
    (and, given ``runs``, an ordinal metric only when every run is ordinal)."""
    if metric not in METRICS:
        near = difflib.get_close_matches(metric, list(METRICS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}{hint}")
    if runs is not None and metric in ORDINAL_KEYS and not _all_ordinal(runs):
        plain = [f"{r.remedy}/seed{r.seed}" for rs in runs.values() for r in rs if not r.ordinal]
        raise ConfigError(
            f"metric {metric} needs ordinal runs (trained with --ordinal), but "
            f"{', '.join(plain[:3])} are not; choose another --metric"
        )


def _all_ordinal(runs: Mapping[str, Sequence[FinishedRun]]) -> bool:
    every = [r for rs in runs.values() for r in rs]
    return bool(every) and all(r.ordinal for r in every)


def task_kind(runs: Mapping[str, Sequence[FinishedRun]]) -> str:
    """``"ordinal"`` when every run is ordinal, ``"multiclass"`` when any run has more than
    two classes (or no positive class), else ``"binary"``."""
    if _all_ordinal(runs):
        return "ordinal"
    return "multiclass" if any(r.positive is None for rs in runs.values() for r in rs) else "binary"


def default_metric(runs: Mapping[str, Sequence[FinishedRun]]) -> str:
    """The verdict's metric when none is given: quadratic kappa when every run is ordinal,
    else AUROC (macro one-vs-rest for multi-class runs)."""
    return _PAIRED_ORDINAL if _all_ordinal(runs) else "auroc"


def paired_keys(runs: Mapping[str, Sequence[FinishedRun]], metric: str) -> list[str]:
    """The metrics paired for every remedy: AUROC, balanced accuracy, the quadratic kappa when
    every run is ordinal, and ``metric``."""
    ordinal = [_PAIRED_ORDINAL] if _all_ordinal(runs) else []
    return list(dict.fromkeys([*_PAIRED, *ordinal, metric]))


def metric_label(key: str, task: str = "binary") -> str:
    """The name of metric ``key`` for people; macro averages say so for a multi-class or
    ordinal ``task`` (:func:`task_kind`)."""
    return _MACRO[key] if task != "binary" and key in _MACRO else METRICS[key][0]


def uncontrolled_notes(runs: Mapping[str, list[FinishedRun]]) -> list[str]:
    """Config keys besides the remedy (and seed, output folder) that differ between runs."""
    ignore = {*REMEDY_KEYS, "seed", "out"}
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


def _metric_fn(run: FinishedRun) -> tuple[Any, np.ndarray, Any]:
    """(metric function, labels, scores) that score ``run`` at its own operating point."""
    import functools

    from medbalance.evaluation.metrics import binary_metrics, multiclass_metrics

    if run.positive is not None and run.threshold is not None:
        y = (run.labels == run.positive).astype(np.int64)
        score = run.probs[:, run.positive]
        return functools.partial(binary_metrics, threshold=run.threshold), y, score
    # multi-class and ordinal: the stored decisions of predictions.csv, scored vectorised
    scores = (run.probs, run.preds.astype(np.int64))
    return functools.partial(multiclass_metrics, ordinal=run.ordinal), run.labels, scores


def _paired(a: FinishedRun, b: FinishedRun, key: str, n_resamples: int) -> dict[str, Any]:
    """Paired bootstrap of ``key(b) - key(a)`` on the same test cases (seed of ``a``)."""
    from medbalance.evaluation.bootstrap import paired_bootstrap

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
    folder = RunFolder(a)
    config = folder.read_config() if folder.config.is_file() else {}
    seed = int(config.get("seed", 0))
    return _paired(
        read_run(a.parent.name, seed, a), read_run(b.parent.name, seed, b), metric, n_resamples
    )


def _n_bootstrap(runs: Sequence[FinishedRun]) -> int:
    value = runs[0].config.get("bootstrap")
    return int(value) if isinstance(value, int) and value > 0 else 1000


def _pairs(
    a: Sequence[FinishedRun], b: Sequence[FinishedRun]
) -> list[tuple[FinishedRun, FinishedRun]]:
    by_seed = {r.seed: r for r in b}
    return [(r, by_seed[r.seed]) for r in a if r.seed in by_seed]


def paired_against(
    runs: Mapping[str, list[FinishedRun]], names: Sequence[str], reference: str, metric: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Paired bootstraps of every remedy in ``names`` against ``reference``, seed by seed.

    Returns:
        One entry per remedy, seed and metric (:func:`paired_keys`), and notes on the pairs
        that could not be made.
    """
    keys = paired_keys(runs, metric)
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


def summary_row(
    name: str, runs: Sequence[FinishedRun], keys: Sequence[str], paired: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The row of remedy ``name`` in ``comparison.csv``: mean, sd and CI of each metric in
    ``keys``, train time, and the mean difference from the reference in ``paired``."""
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


def format_value(value: float, signed: bool = False) -> str:
    """Three decimals (with a sign when ``signed``); ``n/a`` for a missing value."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def verdict_text(
    runs: Mapping[str, list[FinishedRun]], rows: Sequence[dict[str, Any]], metric: str
) -> str:
    """The verdict on ``metric``: the best remedy, its lead over the second, and whether the
    lead is outside the noise of a paired bootstrap on every common seed."""
    label, higher = metric_label(metric, task_kind(runs)), METRICS[metric][1]
    scored = [r for r in rows if not math.isnan(r.get(f"{metric}_mean", math.nan))]
    if not scored:
        return f"Verdict: no remedy has a test {label}; nothing to rank."
    scored.sort(key=lambda r: r[f"{metric}_mean"], reverse=higher)
    seeds = max(r["seeds"] for r in scored)
    head = f"Verdict (test {label}, mean over {seeds} seed{'s' if seeds > 1 else ''})"

    def describe(row: dict[str, Any]) -> str:
        sd = row[f"{metric}_sd"]
        return f"{row['remedy']} ({format_value(row[f'{metric}_mean'])}" + (
            f" ± {format_value(sd)})" if not math.isnan(sd) else ")"
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
            f"seed {e['seed']} {format_value(e['difference'], True)} "
            f"[{format_value(e['ci_low'], True)}, {format_value(e['ci_high'], True)}]"
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
        f"{format_value(abs(lead))} ({better} is better); {noise}."
    )
