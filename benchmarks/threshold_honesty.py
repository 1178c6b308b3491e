r"""Benchmark: does an operating point keep its promise on test? (issue 12)

With the policy ``sensitivity>=0.9``, one ordinary run chooses the threshold on its val split and
a K-fold ``cv`` chooses it on the out-of-fold predictions of all train+val images. For each seed
the script prints the test sensitivity (and specificity) each reached: how far sensitivity falls
short of 0.9 is the number that says whether the threshold was chosen on enough cases. Not a
test: run it by hand and record the table in benchmarks/RESULTS.md.

    python benchmarks/threshold_honesty.py --data breastmnist --seeds 3 --folds 5 --epochs 10
    python benchmarks/threshold_honesty.py --data chest_xray_mini --model resnet18 --size 128 \
        --resplit-val 0.2 --group-pattern '^((?:NORMAL2-)?IM-\d+|person\d+)'
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from _bench import OUT, SHARED_DATA, load, machine

from medbalance.training.config import TrainConfig
from medbalance.workflows.cv import cross_validate
from medbalance.workflows.training import train_and_evaluate

POLICY = "sensitivity>=0.9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--resplit-val", type=float, default=None)
    parser.add_argument("--group-pattern", default=None, help="patient id regex (folder data)")
    parser.add_argument("--out", default=str(OUT / "honesty"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    path = SHARED_DATA / f"{args.data}.npz"
    data = str(path) if path.is_file() else str(SHARED_DATA / args.data)
    rows = []
    print(f"load before: {load():.2f}")
    print(
        "| data | seed | model | chosen on | n tuning positives | threshold | test sensitivity "
        "| test specificity | test AUROC | test bal. acc. | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        common = dict(
            data=data, epochs=args.epochs, seed=seed, device="cpu", threshold=POLICY,
            model=args.model, size=args.size, resplit_val=args.resplit_val,
            group_pattern=args.group_pattern,
        )  # fmt: skip
        out = Path(args.out) / args.data / f"seed{seed}"
        started = time.perf_counter()
        single = train_and_evaluate(TrainConfig(**common, out=str(out / "single")), overwrite=True)  # type: ignore[arg-type]
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        cv = cross_validate(TrainConfig(**common), folds=args.folds, out=out / "cv")  # type: ignore[arg-type]
        cv_s = time.perf_counter() - started
        val_pos = single.evaluation["counts"]["val"][single.evaluation["positive_class"]]
        oof_pos = cv.oof["per_class"][cv.oof["positive_class"]]["support"]
        for name, result, n_pos, seconds in (
            ("val", single.evaluation, val_pos, single_s),
            ("oof", cv.metrics, oof_pos, cv_s),
        ):
            m = result["metrics"]
            rows.append({"seed": seed, "chosen_on": name, "n_pos": n_pos, "sensitivity": m["sensitivity"],
                         "specificity": m["specificity"], "threshold": result["threshold"]["value"]})  # fmt: skip
            cells = " | ".join(
                f"{m[k]['value']:.3f} ({m[k]['ci'][0]:.3f}–{m[k]['ci'][1]:.3f})"
                for k in ("sensitivity", "specificity", "auroc", "balanced_accuracy")
            )
            model = "single run" if name == "val" else f"{args.folds}-fold ensemble"
            print(
                f"| {args.data} | {seed} | {model} | {name} | {n_pos} "
                f"| {result['threshold']['value']:.3f} | {cells} | {seconds:.0f} |",
                flush=True,
            )
    for name in ("val", "oof"):
        values = [r["sensitivity"]["value"] for r in rows if r["chosen_on"] == name]
        short = [max(0.0, 0.9 - v) for v in values]
        print(f"chosen on {name}: mean test sensitivity {sum(values) / len(values):.3f}, "
              f"mean shortfall from 0.9 {sum(short) / len(short):.3f}, load {load():.1f}")  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.data}.json").write_text(
        json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
