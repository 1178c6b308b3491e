"""Benchmark: multi-class decision rules on the three-class chest X-rays (issue 13).

Trains the default remedy (oversample) and ``--sampler none`` on
``chest_xray_mini_3class.csv`` (normal / bacteria / virus) at 128 px with ``--resplit-val 0.2``,
then evaluates each checkpoint with the rules ``argmax``, ``accuracy``, ``balanced`` and
``prior``: test macro AUROC, accuracy, balanced accuracy and per-class sensitivity with CIs.
Not a test: run it by hand and record the table in benchmarks/RESULTS.md.

    python benchmarks/multiclass_decisions.py --epochs 10
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from _bench import OUT, SHARED_DATA, load

from medbalance.training.config import TrainConfig
from medbalance.workflows.training import evaluate_run, train_and_evaluate

RULES = ("argmax", "accuracy", "balanced", "prior")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA / "chest_xray_mini_3class.csv"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "multiclass"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"load at start {load():.1f}")
    print("| sampler | rule | macro AUROC | accuracy | balanced acc. | sensitivity per class |")
    print("|---|---|---|---|---|---|")
    for sampler in ("oversample", "none"):
        run = Path(args.out) / sampler
        config = TrainConfig(
            data=args.data, out=str(run), size=args.size, epochs=args.epochs, seed=args.seed,
            sampler=sampler, resplit_val=0.2, device="cpu", threshold="argmax",
        )  # fmt: skip
        train_and_evaluate(config, overwrite=True)
        for rule in RULES:
            result = evaluate_run(run, policy=rule, report=False)
            m = result["metrics"]
            cells = " | ".join(
                f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}–{m[k]['ci'][1]:.3f})"
                for k in ("auroc", "accuracy", "balanced_accuracy")
            )
            per_class = ", ".join(
                f"{name} {entry['sensitivity']['value']:.2f}"
                for name, entry in result["per_class"].items()
                if "sensitivity" in entry
            )
            print(f"| {sampler} | {rule} | {cells} | {per_class} |", flush=True)
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
