"""Benchmark: K-fold cross-validation ensembles against one train run (issue 12).

For each data set: one ordinary ``train`` run and one ``cv --folds K`` run with the same model,
epochs, remedy and seed; test AUROC, accuracy, balanced accuracy, sensitivity and specificity
with 95% CIs at each one's operating point (val-chosen for the single run, OOF-chosen for the
ensemble), the OOF metrics, and wall time. Not a test: run it by hand and record the table in
benchmarks/RESULTS.md.

    python benchmarks/cv_ensemble.py --data breastmnist,pneumoniamnist --folds 5 --epochs 10

A name is ``../shared/data/NAME.npz`` or the folder ``../shared/data/NAME`` (``chest_xray_mini``:
give ``--size 128 --resplit-val 0.2 --group-pattern ...``). ``--combine mean,stack`` scores the
same fold models a second time with the stacked combination (the folds are not trained again:
the cv folder resumes, finished folds are kept), so the rows differ only in how they combine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from _bench import OUT, SHARED_DATA, load, machine

from medbalance.training.config import TrainConfig
from medbalance.workflows.cv import cross_validate
from medbalance.workflows.training import train_and_evaluate

KEYS = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity")


def _cells(metrics: dict[str, dict[str, object]]) -> list[str]:
    out = []
    for key in KEYS:
        entry = metrics[key]
        lo, hi = entry["ci"]  # type: ignore[misc]
        out.append(f"{entry['value']:.3f} ({lo:.3f}–{hi:.3f})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="breastmnist,pneumoniamnist")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--threshold", default="youden")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resplit-val", type=float, default=None)
    parser.add_argument("--group-pattern", default=None)
    parser.add_argument("--combine", default="mean", help="mean, stack or mean,stack")
    parser.add_argument("--single", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default=str(OUT / "cv"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = []
    for name in args.data.split(","):
        path, folder = SHARED_DATA / f"{name}.npz", SHARED_DATA / name
        data = str(path) if path.is_file() else str(folder) if folder.is_dir() else name
        common = dict(
            data=data, model=args.model, epochs=args.epochs, seed=args.seed, device="cpu",
            threshold=args.threshold, size=args.size, resplit_val=args.resplit_val,
            group_pattern=args.group_pattern,
        )  # fmt: skip
        out = Path(args.out) / name
        row: dict[str, object] = {"data": name, "load_before": load()}
        if args.single:
            started = time.perf_counter()
            single = train_and_evaluate(
                TrainConfig(**common, out=str(out / "single")),  # type: ignore[arg-type]
                overwrite=True,
            )
            single_s = time.perf_counter() - started
            row.update(single=single.evaluation, single_s=single_s)
            print(f"| {name} | single run | " + " | ".join(_cells(single.evaluation["metrics"]))
                  + f" | {single.evaluation['threshold']['value']:.3f} (val) | {single_s:.0f} |")  # fmt: skip
        for combine in args.combine.split(","):
            started = time.perf_counter()
            cv = cross_validate(
                TrainConfig(**common),  # type: ignore[arg-type]
                folds=args.folds,
                out=out / "cv",
                combine=combine,
            )
            cv_s = time.perf_counter() - started
            row.update(
                {f"cv_{combine}": cv.metrics, f"oof_{combine}": cv.oof, f"cv_{combine}_s": cv_s}
            )
            label = f"{args.folds}-fold ensemble ({combine})"
            print(f"| {name} | {label} | " + " | ".join(_cells(cv.metrics["metrics"]))
                  + f" | {cv.metrics['threshold']['value']:.3f} (oof) | {cv_s:.0f} |")  # fmt: skip
            print(f"| {name} | out-of-fold, {combine} (n={cv.oof['n']}) | "
                  + " | ".join(_cells(cv.oof["metrics"])) + " | | |", flush=True)  # fmt: skip
        row["load_after"] = load()
        print(f"load {row['load_before']:.2f} -> {row['load_after']:.2f}", flush=True)
        rows.append(row)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "cv.json").write_text(
        json.dumps(
            {"machine": machine(), "args": vars(args), "rows": rows, "threads": os.cpu_count()},
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
