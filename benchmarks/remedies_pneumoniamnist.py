"""Benchmark: imbalance remedies on PneumoniaMNIST (28 px, from scratch, 2-core CPU).

Trains the same model, epochs and seed with each remedy and reports test AUROC, balanced
accuracy, sensitivity and specificity (positive class: pneumonia, at the operating threshold
that medbalance chose on the validation split, Youden's J) with bootstrap 95% CIs, balanced
accuracy at the plain argmax for comparison, and wall time. Not a test: run it by hand and record the printed table in benchmarks/RESULTS.md.

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

from medbalance.training.config import TrainConfig
from medbalance.workflows.training import train_and_evaluate as fit

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
        evaluated = result.evaluation["metrics"]
        row: dict[str, object] = {"remedy": name}
        for key in ("auroc", "balanced_accuracy", "accuracy", "sensitivity", "specificity"):
            row[key] = evaluated[key]["value"]
            row[f"{key}_ci"] = evaluated[key]["ci"]
        row["threshold"] = result.evaluation["threshold"]["value"]
        row["balanced_accuracy_argmax"] = result.metrics["test"]["balanced_accuracy"]
        row["best_epoch"] = result.best_epoch
        row["seconds"] = seconds
        rows.append(row)
    print(
        "| remedy | test AUROC | bal. acc. | accuracy | sensitivity | specificity "
        "| threshold (val) | bal. acc. at argmax | best epoch | wall s |"
    )
    print("|" + "---|" * 10)

    def cell(r: dict[str, object], key: str) -> str:
        lo, hi = r[f"{key}_ci"]  # type: ignore[misc]
        return f"{r[key]:.3f} ({lo:.3f}–{hi:.3f})"

    for r in rows:
        print(
            f"| {r['remedy']} | {cell(r, 'auroc')} | {cell(r, 'balanced_accuracy')} | {cell(r, 'accuracy')} "
            f"| {cell(r, 'sensitivity')} | {cell(r, 'specificity')} | {r['threshold']:.3f} "
            f"| {r['balanced_accuracy_argmax']:.3f} | {r['best_epoch']} | {r['seconds']:.0f} |"
        )
    best = max(rows, key=lambda r: float(r["auroc"]))  # type: ignore[arg-type]
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
