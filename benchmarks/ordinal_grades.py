"""Benchmark: an ordinal head (CORN) against plain cross-entropy on synthetic grades (issue 13).

Writes the synthetic ordinal set (:func:`medbalance.workflows.synthetic_grades.make_synthetic_grades`:
five grades 0-4, about 7:1, neighbouring grades overlapping; NOT medical data), trains
cross-entropy (``ordinal=False``) and CORN (``ordinal=True``) with each sampler for each seed,
then evaluates every checkpoint with each decision rule (chosen on val, applied once to test).
The ordinal metrics (quadratic weighted kappa, mean absolute grade error, within-one accuracy)
are computed from each ``predictions.csv`` for both heads, with bootstrap CIs, so the plain head
is scored the same way. Not a test: run it by hand and record the tables in
benchmarks/RESULTS.md.

    python benchmarks/ordinal_grades.py --epochs 20 --seeds 3   # 28 px, smallcnn
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import statistics
from pathlib import Path

import numpy as np
from _bench import OUT, load

from medbalance.metrics import bootstrap_ci, multiclass_metrics
from medbalance.training.config import TrainConfig
from medbalance.workflows.synthetic_grades import make_synthetic_grades
from medbalance.workflows.training import evaluate_run, train_and_evaluate

RULES = ("argmax", "prior", "balanced", "offsets:balanced", "expected-grade", "median-grade")
KEYS = ("quadratic_kappa", "within_one_accuracy", "mean_abs_error", "accuracy", "balanced_accuracy")


def _read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [k[len("prob_") :] for k in rows[0] if k.startswith("prob_")]
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[r["true_label"]] for r in rows])
    probs = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    preds = np.array([index[r["predicted_label"]] for r in rows])
    return labels, probs, preds


def _scored(run: Path, n_bootstrap: int) -> dict[str, tuple[float, float, float]]:
    """``{metric: (value, lo, hi)}`` of the ordinal set on the run's test predictions."""
    labels, probs, preds = _read_predictions(run / "predictions.csv")
    fn = functools.partial(multiclass_metrics, ordinal=True)
    point = fn(labels, probs, preds)
    ci = bootstrap_ci(fn, labels, probs, preds, n_resamples=n_bootstrap)
    return {k: (point[k], *ci[k]) for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default="oversample,none")
    parser.add_argument("--heads", default="ce,corn", help="ce (plain softmax), corn (ordinal)")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--size", type=int, default=28, help="28 px: the default smallcnn")
    parser.add_argument("--model", default=None)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", default=str(OUT / "ordinal"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    data = make_synthetic_grades(Path(args.out) / "data", size=32, seed=0)
    print(f"load at start {load():.1f}")
    print("| seed | head | sampler | rule | " + " | ".join(KEYS) + " |")
    print("|---" * (4 + len(KEYS)) + "|")
    tally: dict[tuple[str, str, str], list[list[float]]] = {}
    for seed in range(args.seeds):
        for head in args.heads.split(","):
            ordinal = head == "corn"
            for sampler in args.samplers.split(","):
                run = Path(args.out) / f"{head}-{sampler}-s{seed}"
                config = TrainConfig(
                    data=str(data), out=str(run), epochs=args.epochs, seed=seed, size=args.size,
                    model=args.model,
                    sampler=sampler, ordinal=ordinal, device="cpu", threshold="argmax",
                    bootstrap=50,
                )  # fmt: skip
                train_and_evaluate(config, overwrite=True)
                for rule in args.rules.split(","):
                    evaluate_run(run, policy=rule, report=False, n_bootstrap=50)
                    got = _scored(run, args.bootstrap)
                    cells = " | ".join(f"{v:.3f} ({lo:.3f}–{hi:.3f})" for v, lo, hi in got.values())
                    print(f"| {seed} | {head} | {sampler} | {rule} | {cells} |", flush=True)
                    tally.setdefault((head, sampler, rule), []).append([v[0] for v in got.values()])
    print(f"\nmeans over {args.seeds} seeds\n")
    print("| head | sampler | rule | " + " | ".join(KEYS) + " |")
    print("|---" * (3 + len(KEYS)) + "|")
    for (head, sampler, rule), rows in tally.items():
        means = " | ".join(f"{statistics.mean(col):.3f}" for col in zip(*rows, strict=True))
        print(f"| {head} | {sampler} | {rule} | {means} |")
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
