"""Benchmark: imbalance remedies on PneumoniaMNIST (28 px, from scratch, 2-core CPU).

Trains the same model, epochs and seed with each remedy and reports test AUROC, balanced
accuracy, sensitivity and specificity (positive class: pneumonia, at the argmax decision) and wall
time. Not a test: run it by hand and record the printed table in benchmarks/RESULTS.md.

    python benchmarks/remedies_pneumoniamnist.py [--data ../shared/data/pneumoniamnist.npz]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from medbalance.config import TrainConfig
from medbalance.engine import fit

REMEDIES: dict[str, dict[str, object]] = {
    "ce": {"sampler": "none", "loss": "ce"},
    "oversample": {"sampler": "oversample", "loss": "ce"},
    "weighted-ce": {"sampler": "none", "loss": "weighted-ce"},
    "ldam --drw": {"sampler": "none", "loss": "ldam", "drw": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
    parser.add_argument("--data", default=str(default))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--remedies", default=",".join(REMEDIES))
    parser.add_argument("--out", default="benchmarks/out/remedies")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.remedies.split(","):
        remedy = dict(REMEDIES[name])
        drw = bool(remedy.pop("drw", False))
        config = TrainConfig(
            data=args.data,
            out=f"{args.out}/{name.replace(' ', '').replace('--', '-')}",
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device="cpu",
            drw_epoch=args.epochs * 2 // 3 if drw else None,
            **remedy,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        result = fit(config)
        seconds = time.perf_counter() - started
        test = result.metrics["test"]
        rows.append(
            {
                "remedy": name,
                "auroc": test["auroc"],
                "balanced_accuracy": test["balanced_accuracy"],
                "accuracy": test["accuracy"],
                "sensitivity": test["sensitivity"],
                "specificity": test["specificity"],
                "best_epoch": result.best_epoch,
                "seconds": seconds,
            }
        )
    header = "| remedy | test AUROC | bal. acc. | accuracy | sensitivity | specificity | best epoch | wall s |"
    print(header)
    print("|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['remedy']} | {r['auroc']:.4f} | {r['balanced_accuracy']:.4f} | {r['accuracy']:.4f} "
            f"| {r['sensitivity']:.4f} | {r['specificity']:.4f} | {r['best_epoch']} | {r['seconds']:.0f} |"
        )
    best = max(rows, key=lambda r: r["auroc"])
    print(
        f"best remedy by test AUROC: {best['remedy']} (AUROC {best['auroc']:.4f}, balanced accuracy "
        f"{best['balanced_accuracy']:.4f}, {best['seconds']:.0f} s)"
    )
    result_path = Path(args.out) / "remedies.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    result_path.write_text(
        json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
