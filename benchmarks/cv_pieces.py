"""Benchmark: what each small-data piece buys on its own (issue 12).

On one data set, with the same model, epochs and seed: a plain run; the same with an EMA of the
weights; with checkpoint selection within the validation noise; the plain run's checkpoint
evaluated with 5 test-time views; and cv ensembles of 3 and 5 folds (and 5 folds with 5 views).
Test AUROC, accuracy and balanced accuracy with CIs, and wall time. Not a test: run it by hand
and record the table in benchmarks/RESULTS.md.

    python benchmarks/cv_pieces.py --data breastmnist --epochs 10
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _bench import OUT, SHARED_DATA, load

from medbalance.training.config import TrainConfig
from medbalance.workflows.cv import cross_validate
from medbalance.workflows.training import evaluate_run, train_and_evaluate

KEYS = ("auroc", "accuracy", "balanced_accuracy")


def _row(name: str, result: dict[str, Any], seconds: float) -> None:
    m = result["metrics"]
    cells = " | ".join(
        f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}–{m[k]['ci'][1]:.3f})" for k in KEYS
    )
    print(f"| {name} | {cells} | {result['threshold']['chosen_on']} | {seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "pieces"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    path = SHARED_DATA / f"{args.data}.npz"
    base = TrainConfig(
        data=str(path) if path.is_file() else args.data, model="smallcnn", epochs=args.epochs,
        seed=args.seed, device="cpu",
    )  # fmt: skip
    out = Path(args.out) / args.data
    print(f"load at start {load():.1f}")
    print("| variant | test AUROC | accuracy | balanced acc. | threshold chosen on | wall s |")
    print("|---|---|---|---|---|---|")
    variants = {
        "plain run": {},
        "EMA 0.99": {"ema": 0.99},
        "select within noise": {"select_rule": "within-noise"},
    }
    for name, changes in variants.items():
        started = time.perf_counter()
        config = replace(base, out=str(out / name.replace(" ", "-")), **changes)
        result = train_and_evaluate(config, overwrite=True)
        _row(name, result.evaluation, time.perf_counter() - started)
    started = time.perf_counter()
    tta = evaluate_run(out / "plain-run", tta=5, report=False)
    _row("plain run + TTA 5 (re-chosen on val)", tta, time.perf_counter() - started)
    for folds, views in ((3, 1), (5, 1), (5, 5)):
        started = time.perf_counter()
        cv = cross_validate(base, folds=folds, out=out / f"cv{folds}-tta{views}", tta=views)
        label = f"{folds}-fold ensemble" + (f" + TTA {views}" if views > 1 else "")
        _row(label, cv.metrics, time.perf_counter() - started)
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
