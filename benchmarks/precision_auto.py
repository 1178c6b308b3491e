"""Benchmark: ``--precision auto`` against fp32, epoch time and test metrics (issue 15).

For each (data, model, size): two runs, fp32 and auto, same seed, alternating; the median of
the later epochs' times (the first pays for warm-up), test AUROC and balanced accuracy with CIs.
Not a test: run it by hand and record the table in benchmarks/RESULTS.md.

    python benchmarks/precision_auto.py --epochs 4
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

import torch
from _bench import OUT, SHARED_DATA, load

from medbalance.core.device import choose_precision
from medbalance.training.config import TrainConfig
from medbalance.workflows.training import train_and_evaluate

CASES = (
    ("pneumoniamnist.npz", "smallcnn", 28, None),
    ("pneumoniamnist.npz", "resnet18", 64, None),
    ("chest_xray_mini", "resnet18", 128, 0.2),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=str(OUT / "precision"))
    parser.add_argument(
        "--cases", default=None, help="data:model:size,... (default: the three cases above)"
    )
    args = parser.parse_args()
    cases = CASES
    if args.cases:
        cases = tuple(
            (d, m, int(s), None) for d, m, s in (c.split(":") for c in args.cases.split(","))
        )
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"auto here: {choose_precision(torch.device('cpu'))}; load {load():.1f}")
    print(
        "| data | model | size | precision | s/epoch (median of later epochs) | test AUROC | bal. acc. |"
    )
    print("|---|---|---|---|---|---|---|")
    for data, model, size, resplit in cases:
        for precision in ("fp32", "auto"):
            config = TrainConfig(
                data=str(SHARED_DATA / data), model=model, size=size, epochs=args.epochs,
                precision=precision, device="cpu", resplit_val=resplit,
                out=str(Path(args.out) / f"{data}-{model}-{size}-{precision}"),
            )  # fmt: skip
            result = train_and_evaluate(config, overwrite=True)
            seconds = statistics.median(float(r["seconds"]) for r in result.history[1:])
            m = result.evaluation["metrics"]
            cells = " | ".join(
                f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}–{m[k]['ci'][1]:.3f})"
                for k in ("auroc", "balanced_accuracy")
            )
            print(f"| {data} | {model} | {size} | {result.config.precision} ({precision}) "
                  f"| {seconds:.2f} | {cells} |", flush=True)  # fmt: skip
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
