"""Benchmark: checkpoint selection by the best val value against within the val noise (issue 12).

For each data set and seed, two runs that differ only in ``select_rule``: ``best`` (the default:
the epoch with the best val AUROC) and ``within-noise`` (the latest epoch whose val AUROC lies
within the bootstrap noise of the best). Test AUROC, accuracy and balanced accuracy with CIs, the
epoch each kept, and the means over seeds: the table a default would be chosen from. Not a test:
run it by hand and record the table in benchmarks/RESULTS.md.

    python benchmarks/select_rule.py --data pneumoniamnist,breastmnist --seeds 3 --epochs 10
    python benchmarks/select_rule.py --data chest_xray_mini --model resnet18 --size 128 \
        --group-pattern '^((?:NORMAL2-)?IM-\\d+|person\\d+)'
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

from _bench import OUT, SHARED_DATA, load

from medbalance.training.config import TrainConfig
from medbalance.workflows.training import train_and_evaluate

KEYS = ("auroc", "accuracy", "balanced_accuracy")
RULES = ("best", "within-noise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--group-pattern", default=None, help="patient id regex (folder data)")
    parser.add_argument("--out", default=str(OUT / "select_rule"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"load at start {load():.1f}")
    print("| data | seed | select rule | kept epoch | test AUROC | accuracy | balanced acc. |")
    print("|---|---|---|---|---|---|---|")
    tally: dict[tuple[str, str], list[list[float]]] = {}
    for name in args.data.split(","):
        path = SHARED_DATA / f"{name}.npz"
        data = str(path) if path.is_file() else str(SHARED_DATA / name)
        for seed in range(args.seeds):
            for rule in RULES:
                config = TrainConfig(
                    data=data, out=str(Path(args.out) / name / f"s{seed}-{rule}"),
                    model=args.model, size=args.size, epochs=args.epochs, seed=seed,
                    device="cpu", select_rule=rule, group_pattern=args.group_pattern,
                )  # fmt: skip
                result = train_and_evaluate(config, overwrite=True).evaluation
                m = result["metrics"]
                cells = " | ".join(
                    f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}–{m[k]['ci'][1]:.3f})" for k in KEYS
                )
                epoch = result.get("checkpoint_epoch")
                print(f"| {name} | {seed} | {rule} | {epoch} | {cells} |", flush=True)
                tally.setdefault((name, rule), []).append([m[k]["value"] for k in KEYS])
    print("\n| data | select rule | mean test AUROC | mean accuracy | mean balanced acc. |")
    print("|---|---|---|---|---|")
    for (name, rule), rows in tally.items():
        means = " | ".join(f"{statistics.mean(col):.3f}" for col in zip(*rows, strict=True))
        print(f"| {name} | {rule} | {means} |")
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
