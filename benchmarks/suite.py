"""The benchmark suite: one configuration (defaults, or any options) over every suite data set.

The only way a default changes (STYLE.md rule 15, issue 21). Seven data sets, binary,
multi-class and ordinal, 184 to 5,992 images, read from ``../shared/data`` (never copied):

| set | task | what the suite trains on |
|---|---|---|
| pneumoniamnist | binary | the MedMNIST npz, 28 px |
| breastmnist | binary | the MedMNIST npz, 28 px |
| chest_xray_mini | binary | 184 Kermany JPEGs, 128 px, val re-split 0.2 by patient |
| chest_xray_mini_3class | multi-class | the same images as normal / bacteria / virus |
| blood_cells_pbc | multi-class | 8 blood-cell classes at **64 px** (128 px stored; the suite's CPU cap) |
| knee_kl | ordinal | KL grades 0-4 at **64 px**, official split |
| synthetic_grades | ordinal | generated five grades, 28 px (SYNTHETIC, not medical) |

A *candidate* is a name and TrainConfig options: ``'defaults:'`` is the tool as it is;
``'long: epochs=30'``; ``'corn: ordinal:ordinal=true'`` sets ``ordinal`` on ordinal sets only
(``binary:``, ``multiclass:``, ``ordinal:`` scope an option to one task kind); ``cv=5`` runs
``medbalance cv`` with that many folds instead of ``train``. Values are read as JSON where they
parse (``true``, ``30``, ``0.5``) and as text otherwise.

Tiers: ``--tier full`` runs every set at full size for ``--seeds`` seeds (default 3);
``--tier quick`` runs seed 0 only with the three large sets' *training* images subsampled
(stratified, 1,000 train images; val and test kept whole), for screening in minutes.

Besides the run's own test metrics (what a user gets), every single run records val and test
probabilities after every epoch (scored in fp32 after the epoch's precise-BN pass, exactly the
weights a checkpoint of that epoch holds), so that checkpoint-selection rules (``best``,
``within-noise``, lowest val loss, last epoch) and decision rules can be compared without
retraining: each rule picks on val only and is applied once to test (``--grid``). The test
probabilities of an epoch are never seen by the run itself.

Each run's record (metrics, epochs, wall time, load, the rule grid) is kept in
``benchmarks/suite_records/<tier>/<candidate>/<set>/s<seed>.json``, which is committed: a
re-invocation, in this session or a later one, skips finished runs and the tables are rebuilt
from the records. The run folders themselves stay under ``benchmarks/out`` (not committed).
``--append`` adds the tables to ``benchmarks/RESULTS.md``.

    python benchmarks/suite.py --tier quick --candidate 'defaults:' --candidate 'long: epochs=30'
    python benchmarks/suite.py --tier full --candidate 'defaults:' --grid --append
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _bench import OUT, SHARED_DATA, load

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SUITE_OUT = OUT / "suite"  # run folders (weights): not committed
RECORDS = Path(__file__).resolve().parent / "suite_records"  # one JSON per run: committed
KINDS = ("binary", "multiclass", "ordinal")
KERMANY_PATIENT = r"^((?:NORMAL2-)?IM-\d+|person\d+)"
QUICK_TRAIN = 1000  # training images of a large set in the quick tier


@dataclass(frozen=True)
class SuiteSet:
    """One data set of the suite: where it is, its task kind and the options it always gets."""

    name: str
    path: str  # relative to shared/data, or "synthetic" for the generated grades
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    large: bool = False  # subsampled in the quick tier


SETS = (
    SuiteSet("pneumoniamnist", "pneumoniamnist.npz", "binary", large=True),
    SuiteSet("breastmnist", "breastmnist.npz", "binary"),
    SuiteSet(
        "chest_xray_mini",
        "chest_xray_mini",
        "binary",
        {"resplit_val": 0.2, "group_pattern": KERMANY_PATIENT, "size": 128},
    ),
    SuiteSet(
        "chest_xray_mini_3class",
        "chest_xray_mini_3class.csv",
        "multiclass",
        {"resplit_val": 0.2, "size": 128},  # the manifest has a patient_id column
    ),
    SuiteSet("blood_cells_pbc", "blood_cells_pbc", "multiclass", {"size": 64}, large=True),
    SuiteSet("knee_kl", "knee_kl", "ordinal", {"size": 64}, large=True),
    SuiteSet("synthetic_grades", "synthetic", "ordinal", {"size": 28}),
)
SET_NAMES = tuple(s.name for s in SETS)

SELECT_RULES = ("best", "within-noise", "val-loss", "last")
DECISIONS = {
    "binary": ("youden",),
    "multiclass": ("argmax", "accuracy", "balanced", "prior", "offsets:balanced"),
    "ordinal": (
        "argmax", "accuracy", "balanced", "prior", "offsets:balanced", "expected-grade",
    ),
}  # fmt: skip
METRICS = ("auroc", "accuracy", "balanced_accuracy", "quadratic_kappa")


# --- candidates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A configuration to benchmark: a name and options, some scoped to one task kind."""

    name: str
    options: dict[str, Any]
    scoped: dict[str, dict[str, Any]]

    @classmethod
    def parse(cls, text: str) -> Candidate:
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name or "/" in name:
            raise SystemExit(f"candidate {text!r}: give 'NAME: key=value ...'")
        options: dict[str, Any] = {}
        scoped: dict[str, dict[str, Any]] = {}
        for item in rest.split():
            key, eq, raw = item.partition("=")
            if not eq:
                raise SystemExit(f"candidate {name}: {item!r} is not key=value")
            kind, colon, bare = key.partition(":")
            target = scoped.setdefault(kind, {}) if colon else options
            if colon and kind not in KINDS:
                raise SystemExit(f"candidate {name}: scope {kind!r} is not one of {KINDS}")
            target[(bare if colon else key).replace("-", "_")] = _value(raw)
        return cls(name, options, scoped)

    def for_kind(self, kind: str) -> dict[str, Any]:
        return {**self.options, **self.scoped.get(kind, {})}

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.options.items()]
        parts += [f"{s}:{k}={v}" for s, o in self.scoped.items() for k, v in o.items()]
        return " ".join(parts) or "(defaults)"


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# --- data -----------------------------------------------------------------------------------


def data_path(suite_set: SuiteSet, tier: str) -> str:
    """The set's path for this tier: the shared file or folder, a generated set, or (quick
    tier, large sets) a subsample made of links and small arrays under benchmarks/out."""
    if suite_set.path == "synthetic":
        from medbalance.workflows.synthetic_grades import make_synthetic_grades

        return str(make_synthetic_grades(SUITE_OUT / "data" / "synthetic_grades", size=32, seed=0))
    source = SHARED_DATA / suite_set.path
    if tier != "quick" or not suite_set.large:
        return str(source)
    target = SUITE_OUT / "data" / f"quick-{suite_set.name}"
    if source.suffix == ".npz":
        return str(_subsample_npz(source, target.with_suffix(".npz")))
    return str(_subsample_folder(source, target))


def _stratified(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices drawn per class in proportion (at least one per class), sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(n * len(idx) / len(labels)))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def _subsample_npz(source: Path, target: Path) -> Path:
    if target.is_file():
        return target
    with np.load(source) as arrays:
        data = {k: arrays[k] for k in arrays.files}
    keep = _stratified(data["train_labels"].ravel(), QUICK_TRAIN)
    data["train_images"], data["train_labels"] = (
        data["train_images"][keep],
        data["train_labels"][keep],
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    np.savez(partial, **data)
    partial.replace(target)
    return target


def _subsample_folder(source: Path, target: Path) -> Path:
    """Links to a stratified subset of the training images (all of a set without splits is
    the pool, so its subset is a little larger: medbalance splits it 70/15/15)."""
    done = target / ".complete"
    if done.is_file():
        return target
    files = sorted(p for p in source.rglob("*.jpg") if p.is_file())
    parts = [p.relative_to(source).parts for p in files]
    has_splits = all(len(q) == 3 for q in parts)
    in_train = [not has_splits or q[0] == "train" for q in parts]
    labels = np.array([q[-2] for q in parts])
    pool = np.flatnonzero(in_train)
    n = QUICK_TRAIN if has_splits else round(QUICK_TRAIN / 0.7)
    chosen = set(pool[_stratified(labels[pool], n)].tolist())
    for i, path in enumerate(files):
        if in_train[i] and i not in chosen:
            continue
        link = target.joinpath(*parts[i])
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(path)
    done.write_text("subsample complete\n")
    return target


# --- one run --------------------------------------------------------------------------------


class _Capture:
    """Val and test probabilities after every epoch, recorded by wrapping the engine's epoch."""

    def __init__(self) -> None:
        self.probs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
        self.labels: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def __enter__(self) -> _Capture:
        from medbalance.training import engine

        self._original = engine._run_epoch
        engine._run_epoch = self._wrap(self._original)  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from medbalance.training import engine

        engine._run_epoch = self._original  # type: ignore[assignment]

    def _wrap(self, original: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        from medbalance.evaluation.scoring import score_split

        def run_epoch(trainer: Any, epoch: int, phase: str, *rest: Any) -> dict[str, float]:
            row = original(trainer, epoch, phase, *rest)
            started = time.perf_counter()
            model = trainer.scored_model(phase)
            for split in ("val", "test"):
                scores = score_split(model, trainer.data, split, trainer.transform, trainer.device)
                self.probs[split].append(scores.probs.astype(np.float32))
                self.labels[split] = scores.labels
            self.seconds += time.perf_counter() - started
            return row

        return run_epoch


def _config(candidate: Candidate, suite_set: SuiteSet, tier: str, seed: int, out: Path) -> Any:
    from medbalance.training.config import TrainConfig

    options = {**suite_set.options, **candidate.for_kind(suite_set.kind)}
    options.pop("cv", None)
    options.setdefault("bootstrap", 200)  # the suite reports mean ± sd over seeds, not CIs
    options.setdefault("device", "cpu")
    return TrainConfig(data=data_path(suite_set, tier), out=str(out), seed=seed, **options)


def _headline(evaluation: dict[str, Any], kind: str, run_dir: Path) -> dict[str, float]:
    """The run's own test metrics; a plain head on graded classes gets its kappa from
    predictions.csv."""
    metrics = evaluation["metrics"]
    got = {k: float(metrics[k]["value"]) for k in METRICS if k in metrics}
    if kind == "ordinal" and "quadratic_kappa" not in got:
        got["quadratic_kappa"] = _kappa_from(run_dir)
    return got


def run_one(candidate: Candidate, suite_set: SuiteSet, tier: str, seed: int) -> dict[str, Any]:
    """Train (or cross-validate) once; the record that goes into the cache and the table."""
    from medbalance.workflows.training import train_and_evaluate

    folder = SUITE_OUT / tier / candidate.name / suite_set.name
    out = folder / f"s{seed}"
    config = _config(candidate, suite_set, tier, seed, out)
    folds = candidate.for_kind(suite_set.kind).get("cv")
    record: dict[str, Any] = {
        "candidate": candidate.name,
        "options": candidate.describe(),
        "set": suite_set.name,
        "kind": suite_set.kind,
        "tier": tier,
        "seed": seed,
        "load_start": round(load(), 2),
    }
    started = time.perf_counter()
    if folds:
        from medbalance.workflows.cv import cross_validate

        result = cross_validate(config, folds=int(folds), out=out)
        record["wall_s"] = time.perf_counter() - started
        record["test"] = _headline(result.metrics, suite_set.kind, out)
        record["load_end"] = round(load(), 2)
        return record
    with _Capture() as capture:
        run = train_and_evaluate(config, overwrite=True)
    record["wall_s"] = time.perf_counter() - started - capture.seconds
    resolved = run.config
    record["epochs"] = resolved.epochs
    record["kept_epoch"] = run.best_epoch
    record["train_images"] = int(sum(run.trainer.data.train_counts())) if run.trainer else None
    record["test"] = _headline(run.evaluation, suite_set.kind, out)
    record["grid"] = _grid(run, capture, suite_set.kind)
    record["load_end"] = round(load(), 2)
    return record


def _kappa_from(run_dir: Path) -> float:
    """Quadratic kappa of a plain-head run on graded classes, from its predictions.csv."""
    import csv

    from sklearn.metrics import cohen_kappa_score

    with (run_dir / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = sorted({r["true_label"] for r in rows} | {r["predicted_label"] for r in rows}, key=int)
    index = {n: i for i, n in enumerate(names)}
    y = [index[r["true_label"]] for r in rows]
    p = [index[r["predicted_label"]] for r in rows]
    return float(cohen_kappa_score(y, p, weights="quadratic"))


# --- selection and decision rules, offline ----------------------------------------------------


def select_epoch(rule: str, rows: Sequence[dict[str, float]], n_pos: int, n_neg: int) -> int:
    """The epoch a selection rule keeps, from the run's validation history only."""
    from medbalance.training.engine import standard_error

    finite = [r for r in rows if not math.isnan(r["val_auroc"])]
    if rule == "last" or not finite:
        return int(rows[-1]["epoch"])
    if rule == "val-loss":
        return int(min(rows, key=lambda r: r["val_loss"])["epoch"])
    peak = max(finite, key=lambda r: (r["val_auroc"], -r["val_loss"]))
    if rule == "best":
        return int(peak["epoch"])
    # within-noise, as the engine does it on the fly: the latest epoch within one standard error
    # of the best so far when it was reached
    kept, best = None, None
    for row in finite:
        if best is None or row["val_auroc"] > best["val_auroc"]:
            best = row
        noise = standard_error("auroc", best, n_pos, n_neg)
        if kept is None or row["val_auroc"] >= best["val_auroc"] - noise:
            kept = row
    return int(kept["epoch"]) if kept is not None else int(peak["epoch"])


def _grid(run: Any, capture: _Capture, kind: str) -> dict[str, dict[str, float]]:
    """Test metrics of every (selection rule, decision rule) pair, chosen on val only."""
    from medbalance.evaluation.decision import choose_decision
    from medbalance.training.priors import learned_prior

    config = run.config
    counts = run.trainer.data.train_counts()
    val_counts = np.bincount(capture.labels["val"], minlength=len(counts))
    n_pos = int(val_counts[config.positive_index])
    rows = run.history
    prior = learned_prior(config, counts)
    grid: dict[str, dict[str, float]] = {}
    for rule in SELECT_RULES:
        epoch = select_epoch(rule, rows, n_pos, int(val_counts.sum()) - n_pos)
        position = [int(r["epoch"]) for r in rows].index(epoch)
        val, test = capture.probs["val"][position], capture.probs["test"][position]
        for policy in DECISIONS[kind] if len(counts) > 2 else DECISIONS["binary"]:
            decision = choose_decision(
                policy, capture.labels["val"], val, class_names=config.class_names,
                positive=config.positive_index, train_counts=counts, model_prior=prior,
                ordinal=bool(config.ordinal),
            )  # fmt: skip
            got = _metrics(capture.labels["test"], test, decision, kind, config.positive_index)
            grid[f"{rule}|{policy}"] = {**got, "epoch": epoch}
    return grid


def _metrics(
    labels: np.ndarray, probs: np.ndarray, decision: Any, kind: str, positive: int
) -> dict[str, float]:
    from sklearn.metrics import cohen_kappa_score

    from medbalance.evaluation.metrics import binary_metrics, multiclass_metrics

    probs = probs.astype(np.float64)
    if probs.shape[1] == 2:
        got = binary_metrics(labels == positive, probs[:, positive], decision.threshold)
    else:
        got = multiclass_metrics(labels, probs, decision.decide(probs))
    out = {k: float(got[k]) for k in METRICS if k in got}
    if kind == "ordinal":
        preds = decision.decide(probs)
        out["quadratic_kappa"] = float(cohen_kappa_score(labels, preds, weights="quadratic"))
    return out


# --- the table ------------------------------------------------------------------------------


def cached(candidate: Candidate, suite_set: SuiteSet, tier: str, seed: int) -> Path:
    return RECORDS / tier / candidate.name / suite_set.name / f"s{seed}.json"


def run_all(
    candidates: Sequence[Candidate], sets: Sequence[SuiteSet], tier: str, seeds: int
) -> list[dict[str, Any]]:
    records = []
    for suite_set in sets:
        for candidate in candidates:
            for seed in range(seeds):
                path = cached(candidate, suite_set, tier, seed)
                if path.is_file():
                    record = json.loads(path.read_text())
                    if record.get("options") != candidate.describe():
                        raise SystemExit(
                            f"{path} holds candidate {candidate.name!r} with other options "
                            f"({record.get('options')}); rename the candidate or delete it"
                        )
                else:
                    _wait_while_paused()
                    print(f"running {tier} {candidate.name} {suite_set.name} s{seed} "
                          f"(load {load():.1f})", file=sys.stderr, flush=True)  # fmt: skip
                    record = run_one(candidate, suite_set, tier, seed)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".partial")
                    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
                    tmp.replace(path)
                    print(f"  {_brief(record)}", file=sys.stderr, flush=True)
                records.append(record)
    return records


def _wait_while_paused() -> None:
    """A file ``benchmarks/out/suite/PAUSE`` holds the suite between runs (for example while
    the test suite needs the cores), so no run's wall time includes a pause."""
    pause = SUITE_OUT / "PAUSE"
    while pause.exists():
        time.sleep(5)


def _brief(record: dict[str, Any]) -> str:
    cells = ", ".join(f"{k} {v:.3f}" for k, v in record["test"].items())
    return f"{cells}; {record['wall_s']:.0f} s, {record.get('epochs', '?')} epochs"


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _headline_key(kind: str) -> str:
    return "quadratic_kappa" if kind == "ordinal" else "balanced_accuracy"


def table(records: Sequence[dict[str, Any]]) -> str:
    """Per set and candidate: mean ± sd over seeds of the test metrics, epochs, wall time;
    then each candidate's mean rank over the sets (headline: quadratic kappa on ordinal sets,
    balanced accuracy elsewhere; and AUROC)."""
    groups = _group(records, lambda r: (r["set"], r["candidate"]))
    lines = [
        "| set | candidate | seeds | AUROC | accuracy | balanced acc. | quadratic kappa "
        "| epochs | wall s (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, cand), rows in groups.items():
        cells = [_mean_sd([r["test"][k] for r in rows if k in r["test"]]) for k in METRICS]
        epochs = sorted({str(r.get("epochs", "cv")) for r in rows})
        wall = statistics.mean(r["wall_s"] for r in rows)
        lines.append(
            f"| {name} | {cand} | {len(rows)} | " + " | ".join(cells)
            + f" | {'/'.join(epochs)} | {wall:.0f} |"
        )  # fmt: skip
    lines += ["", "| candidate | options | mean rank (headline) | mean rank (AUROC) | sets |"]
    lines.append("|---|---|---|---|---|")
    for cand, (options, head, auc, n) in _ranks(records).items():
        lines.append(f"| {cand} | `{options}` | {head:.2f} | {auc:.2f} | {n} |")
    return "\n".join(lines)


def _ranks(records: Sequence[dict[str, Any]]) -> dict[str, tuple[str, float, float, int]]:
    """Mean rank (1 = best) of each candidate over the sets every candidate finished."""
    by_set = _group(records, lambda r: r["set"])
    candidates = sorted({r["candidate"] for r in records})
    options = {r["candidate"]: r["options"] for r in records}
    heads: dict[str, list[float]] = {c: [] for c in candidates}
    aucs: dict[str, list[float]] = {c: [] for c in candidates}
    for rows in by_set.values():
        per = _group(rows, lambda r: r["candidate"])
        if set(per) != set(candidates):
            continue
        kind = rows[0]["kind"]
        for key, store in ((_headline_key(kind), heads), ("auroc", aucs)):
            means = {c: statistics.mean(r["test"][key] for r in per[c]) for c in candidates}
            ranked = _rank(means)
            for c in candidates:
                store[c].append(ranked[c])
    return {c: (options[c], _avg(heads[c]), _avg(aucs[c]), len(heads[c])) for c in candidates}


def _rank(values: dict[str, float]) -> dict[str, float]:
    """Ranks, 1 = highest, ties share the mean rank."""
    from scipy.stats import rankdata

    names = list(values)
    ranks = rankdata([-values[n] for n in names], method="average")
    return dict(zip(names, (float(r) for r in ranks), strict=True))


def _avg(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else math.nan


def _group(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list]:
    groups: dict[Any, list] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def grid_table(records: Sequence[dict[str, Any]]) -> str:
    """Per set: every (selection rule, decision rule) pair's mean test metrics over seeds."""
    lines = [
        "| set | candidate | selection | decision | AUROC | accuracy | balanced acc. "
        "| quadratic kappa | kept epoch (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with_grid = [r for r in records if r.get("grid")]
    for (name, cand), rows in _group(with_grid, lambda r: (r["set"], r["candidate"])).items():
        for pair in rows[0]["grid"]:
            select, decision = pair.split("|")
            cells = [_mean_sd([r["grid"][pair][k] for r in rows if k in r["grid"][pair]])
                     for k in METRICS]  # fmt: skip
            kept = statistics.mean(r["grid"][pair]["epoch"] for r in rows)
            lines.append(
                f"| {name} | {cand} | {select} | {decision} | " + " | ".join(cells)
                + f" | {kept:.1f} |"
            )  # fmt: skip
    return "\n".join(lines)


# --- the rules written in RESULTS.md before the runs (2026-12-03) ----------------------------

# the task's default decision in the runs the rules were judged on (graded sets as plain heads)
DEFAULT_DECISION = {
    "binary": "youden",
    "multiclass": "offsets:balanced",
    "ordinal": "offsets:balanced",
}


def _stat(rows: Sequence[dict[str, Any]], pair: str, key: str) -> tuple[float, float]:
    """Mean and sd over seeds of one grid cell."""
    values = [r["grid"][pair][key] for r in rows if pair in r.get("grid", {})]
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def selection_verdict(records: Sequence[dict[str, Any]], candidate: str = "defaults") -> str:
    """Rule 2: each selection rule with the task's default decision, headline metric."""
    runs = [r for r in records if r["candidate"] == candidate and r.get("grid")]
    lines = [
        "| set | seeds | " + " | ".join(SELECT_RULES) + " |",
        "|---" * (2 + len(SELECT_RULES)) + "|",
    ]
    ranks: dict[str, list[float]] = {rule: [] for rule in SELECT_RULES}
    worst: dict[str, float] = {rule: 0.0 for rule in SELECT_RULES}
    for name, rows in _group(runs, lambda r: r["set"]).items():
        kind, key = rows[0]["kind"], _headline_key(rows[0]["kind"])
        cells = {
            rule: _stat(rows, f"{rule}|{DEFAULT_DECISION[kind]}", key) for rule in SELECT_RULES
        }
        for rule, rank in _rank({k: v[0] for k, v in cells.items()}).items():
            ranks[rule].append(rank)
        best_mean, best_sd = cells["best"]
        for rule, (mean, sd) in cells.items():
            worst[rule] = max(worst[rule], (best_mean - mean) - max(sd, best_sd))
        row = " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in cells.values())
        lines.append(f"| {name} ({key}) | {len(rows)} | {row} |")
    lines.append(
        "| mean rank | | " + " | ".join(f"{_avg(ranks[r]):.2f}" for r in SELECT_RULES) + " |"
    )
    lines.append(
        "| worst (below best) - sd | | "
        + " | ".join(f"{worst[r]:+.3f}" for r in SELECT_RULES)
        + " |"
    )
    return "\n".join(lines)


def decision_verdict(records: Sequence[dict[str, Any]], candidate: str = "defaults") -> str:
    """Rule 3: decision rules on the sets with more than two classes, selection ``best``."""
    runs = [
        r
        for r in records
        if r["candidate"] == candidate and r.get("grid") and r["kind"] != "binary"
    ]
    by_set = _group(runs, lambda r: r["set"])
    rules = list(DECISIONS["ordinal"])
    lines = ["| rule | " + " | ".join(f"{n} acc / bal" for n in by_set) + " | mean bal | acc ok |"]
    lines.append("|---" * (3 + len(by_set)) + "|")
    for rule in rules:
        cells, bals, ok = [], [], True
        for rows in by_set.values():
            acc, _ = _stat(rows, f"best|{rule}", "accuracy")
            bal, _ = _stat(rows, f"best|{rule}", "balanced_accuracy")
            arg, _ = _stat(rows, "best|argmax", "accuracy")
            cells.append(f"{acc:.3f} / {bal:.3f}" if not math.isnan(acc) else "–")
            if not math.isnan(bal):
                bals.append(bal)
                ok &= acc >= arg - 0.02
        full = len(bals) == len(by_set)
        mean = f"{statistics.mean(bals):.3f}" if full else f"({len(bals)} sets)"
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {mean} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", default=None,
                        help="'NAME: key=value ...' (repeatable; default 'defaults:')")  # fmt: skip
    parser.add_argument("--tier", choices=("quick", "full"), default="quick")
    parser.add_argument("--seeds", type=int, default=None, help="default: quick 1, full 3")
    parser.add_argument("--sets", default=",".join(SET_NAMES))
    parser.add_argument("--grid", action="store_true", help="also the selection x decision grid")
    parser.add_argument("--verdict", action="store_true",
                        help="also the selection and decision tables of the written rules")  # fmt: skip
    parser.add_argument("--append", action="store_true", help="append the tables to RESULTS.md")
    parser.add_argument("--title", default=None, help="the RESULTS.md section title")
    parser.add_argument("--out", default=None, help="folder for runs (default benchmarks/out)")
    args = parser.parse_args(argv)
    global SUITE_OUT
    if args.out:
        SUITE_OUT = Path(args.out)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    candidates = [Candidate.parse(c) for c in args.candidate or ["defaults:"]]
    wanted = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(SET_NAMES))
    if unknown:
        raise SystemExit(f"unknown suite set(s) {unknown}; choose from {', '.join(SET_NAMES)}")
    sets = [s for s in SETS if s.name in wanted]
    seeds = args.seeds or (1 if args.tier == "quick" else 3)
    records = run_all(candidates, sets, args.tier, seeds)
    text = f"{table(records)}\n"
    if args.grid:
        text += f"\n{grid_table(records)}\n"
    if args.verdict:
        text += f"\n{selection_verdict(records)}\n\n{decision_verdict(records)}\n"
    loads = [r["load_start"] for r in records] + [r["load_end"] for r in records]
    text += f"\nTier {args.tier}, {seeds} seed(s); load {min(loads):.1f}-{max(loads):.1f}.\n"
    print(text)
    if args.append:
        title = args.title or f"Suite, {args.tier} tier"
        with RESULTS.open("a") as handle:
            handle.write(f"\n## {title}\n\n{text}")


if __name__ == "__main__":
    main()
