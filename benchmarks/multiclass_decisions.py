"""Benchmark: multi-class decision rules on the three-class chest X-rays (issue 13).

Trains the default remedy (oversample) and ``--sampler none`` on
``chest_xray_mini_3class.csv`` (normal / bacteria / virus) at 128 px with ``--resplit-val 0.2``
for each seed, then evaluates each checkpoint with every rule (chosen on val, applied once to
test): test macro AUROC, accuracy, balanced accuracy and per-class sensitivity with CIs, and a
summary of the means over seeds. Not a test: run it by hand and record the tables in
benchmarks/RESULTS.md.

    python benchmarks/multiclass_decisions.py --epochs 10 --seeds 3
    python benchmarks/multiclass_decisions.py --epochs 10 --seeds 3 --folds 5 --samplers oversample

With ``--folds K`` each seed is a K-fold ``cv`` instead of one run: every rule is then tuned on
the out-of-fold predictions of all train+val images and the fold ensemble is scored on test.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

from _bench import OUT, SHARED_DATA, load

from medbalance.training.config import TrainConfig
from medbalance.workflows.cv import cross_validate
from medbalance.workflows.training import evaluate_run, train_and_evaluate

RULES = (
    "argmax",
    "accuracy",
    "balanced",
    "prior",
    "offsets:balanced",
    "offsets:macro-f1",
    "offsets:balanced,accuracy>=0.75",
)


def _cell(entry: dict[str, object]) -> str:
    ci = entry["ci"]
    assert isinstance(ci, list)
    return f"{entry['value']:.3f} ({ci[0]:.3f}–{ci[1]:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA / "chest_xray_mini_3class.csv"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default="oversample,none")
    parser.add_argument("--folds", type=int, default=None, help="cv: rules tuned out of fold")
    parser.add_argument(
        "--rules", default=",".join(RULES), help="';'-separated when a rule has ','"
    )
    parser.add_argument("--out", default=str(OUT / "multiclass"))
    args = parser.parse_args()
    rules = args.rules.split(";") if ";" in args.rules else list(RULES)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"load at start {load():.1f}")
    print(
        "| seed | sampler | rule | macro AUROC | accuracy | balanced acc. | sensitivity per class |"
    )
    print("|---|---|---|---|---|---|---|")
    tally: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        for sampler in args.samplers.split(","):
            run = Path(args.out) / f"{sampler}-s{seed}"
            config = TrainConfig(
                data=args.data, out=str(run), size=args.size, epochs=args.epochs, seed=seed,
                sampler=sampler, resplit_val=None if args.folds else 0.2, device="cpu",
                threshold="argmax",
            )  # fmt: skip
            if args.folds:
                cross_validate(config, folds=args.folds, out=run)
            else:
                train_and_evaluate(config, overwrite=True)
            for rule in rules:
                result = evaluate_run(run, policy=rule, report=False)
                m = result["metrics"]
                cells = " | ".join(_cell(m[k]) for k in ("auroc", "accuracy", "balanced_accuracy"))
                per_class = ", ".join(
                    f"{name} {entry['sensitivity']['value']:.2f}"
                    for name, entry in result["per_class"].items()
                    if "sensitivity" in entry
                )
                print(f"| {seed} | {sampler} | {rule} | {cells} | {per_class} |", flush=True)
                pair = (m["accuracy"]["value"], m["balanced_accuracy"]["value"])
                tally.setdefault((sampler, rule), []).append(pair)
    print(f"\nmeans over {args.seeds} seeds\n")
    print("| sampler | rule | mean accuracy | mean balanced acc. |")
    print("|---|---|---|---|")
    for (sampler, rule), pairs in tally.items():
        acc = statistics.mean(a for a, _ in pairs)
        bal = statistics.mean(b for _, b in pairs)
        print(f"| {sampler} | {rule} | {acc:.3f} | {bal:.3f} |")
    print(f"load at end {load():.1f}")


if __name__ == "__main__":
    main()
