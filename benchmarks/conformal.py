"""Benchmark: do class-conditional conformal sets at 0.9 cover every class on test? (issue 24)

One smallcnn per data set, trained on the CPU with ``mb.train`` (which stores each class's val
scores); ``mb.evaluate(run, conformal=0.9)`` then gives each class's test coverage and mean set
size with bootstrap CIs, and the refer rate. Then, from the run's val and test probabilities,
500 seeded re-splits of the val+test cases (per class, as many calibration cases as val holds)
give the method's mean coverage per class without the noise of one test draw. ``knee_kl`` is
also scored through ``mb.predict(..., conformal=0.9)`` on its test folder, whose refer rate must
equal evaluate's. Not a test: run it by hand and record the table in benchmarks/RESULTS.md (the
rules are written there first).

    nice python benchmarks/conformal.py                       # all three sets
    nice python benchmarks/conformal.py --sets knee_kl --epochs 5
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import OUT, SHARED_DATA, load, machine

import medbalance as mb
from medbalance.core.run_folder import RunFolder
from medbalance.evaluation.conformal import fit_conformal

LEVEL = 0.9
SETS: dict[str, dict[str, Any]] = {
    "breastmnist": {"data": "breastmnist.npz"},  # the default run length (1,000 steps)
    "blood_cells_pbc": {"data": "blood_cells_pbc", "size": 64, "epochs": 5},
    "knee_kl": {"data": "knee_kl", "size": 64, "epochs": 5, "predict": "knee_kl/test"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--epochs", type=int, default=None, help="override every set's epochs")
    parser.add_argument("--resplits", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "conformal"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in args.sets.split(","):
        summary = _one_set(name, SETS[name], args)
        print(json.dumps(summary, indent=2))
        out = Path(args.out) / name
        (out / "conformal.json").write_text(
            json.dumps({"machine": machine(), "args": vars(args), **summary}, indent=2)
        )
        print(_markdown(summary))


def _one_set(name: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    started, load_before = time.perf_counter(), load()
    options = {k: v for k, v in spec.items() if k not in ("data", "predict")}
    if args.epochs is not None:
        options["epochs"] = args.epochs
    run = mb.train(
        SHARED_DATA / spec["data"], out=Path(args.out) / name / "run", overwrite=True,
        model="smallcnn", seed=args.seed, device="cpu", bootstrap=100, verbose=False, **options,
    )  # fmt: skip
    train_s = time.perf_counter() - started
    found = mb.evaluate(run, conformal=LEVEL, bootstrap=1000, report=False, verbose=False)
    block = found["conformal"]
    mb.evaluate(run, split="val", bootstrap=0, report=False, verbose=False)  # val rows for below
    names = list(found["class_names"])
    folder = RunFolder(run.path)
    val, test = folder.read_predictions(names, "val"), folder.read_predictions(names, "test")
    resplit = _resplits(val, test, names, args.resplits, args.seed)
    summary: dict[str, Any] = {
        "set": name,
        "options": options,
        "train_seconds": round(train_s, 1),
        "level": LEVEL,
        "accuracy": found["metrics"].get("accuracy", {}).get("value"),
        "per_class": block["per_class"],
        "refer_rate": block["refer_rate"],
        "coverage": block["coverage"],
        "mean_set_size": block["mean_set_size"],
        "warnings": block["warnings"],
        "resplits": resplit,
        "rule_test": all(e["coverage"]["value"] >= 0.88 for e in block["per_class"].values()),
        "rule_resplits": all(v["mean"] >= 0.89 for v in resplit["per_class"].values()),
    }
    if "predict" in spec:
        rows = mb.predict(run, SHARED_DATA / spec["predict"], device="cpu", conformal=LEVEL)
        summary["predict_refer_rate"] = float(np.mean([bool(r.refer) for r in rows]))
    summary |= {
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": load_before,
        "load_after": load(),
    }
    return summary


def _resplits(val: Any, test: Any, names: list[str], repeats: int, seed: int) -> dict[str, Any]:
    """Mean (and 5th percentile) per-class coverage and set size over seeded re-splits of the
    val+test cases: per class, as many calibration cases as val holds, the rest evaluated."""
    labels = np.concatenate([val.labels, test.labels])
    probs = np.concatenate([val.probs, test.probs])
    n_val = np.bincount(val.labels, minlength=len(names))
    rng = np.random.default_rng(seed)
    cover, size = [], []
    for _ in range(repeats):
        calib = np.zeros(len(labels), dtype=bool)
        for k in range(len(names)):
            members = np.flatnonzero(labels == k)
            calib[rng.choice(members, n_val[k], replace=False)] = True
        sets = fit_conformal(labels[calib], probs[calib], names).sets(probs[~calib], LEVEL)
        rest = labels[~calib]
        cover.append([sets[rest == k, k].mean() for k in range(len(names))])
        size.append([sets[rest == k].sum(axis=1).mean() for k in range(len(names))])
    c, s = np.array(cover), np.array(size)
    return {
        "repeats": repeats,
        "per_class": {
            n: {
                "mean": float(c[:, k].mean()),
                "p05": float(np.percentile(c[:, k], 5)),
                "mean_set_size": float(s[:, k].mean()),
                "calibration_cases": int(n_val[k]),
            }
            for k, n in enumerate(names)
        },
    }


def _markdown(summary: dict[str, Any]) -> str:
    """One table row per class: test coverage and set size with CIs, and the re-split mean."""

    def ci(entry: dict[str, Any]) -> str:
        lo, hi = entry["ci"]
        return f"{entry['value']:.3f} ({lo:.3f}-{hi:.3f})"

    lines = []
    for name, entry in summary["per_class"].items():
        again = summary["resplits"]["per_class"][name]
        lines.append(
            f"| {summary['set']} | {name} | {entry['tuning_cases']} / {entry['n']} | "
            f"{ci(entry['coverage'])} | {ci(entry['mean_set_size'])} | "
            f"{again['mean']:.3f} ({again['p05']:.3f}) |"
        )
    lines.append(
        f"refer rate {ci(summary['refer_rate'])}; coverage {ci(summary['coverage'])}; "
        f"mean set size {ci(summary['mean_set_size'])}; accuracy {summary['accuracy']}; "
        f"rule (test) {summary['rule_test']}, rule (re-splits) {summary['rule_resplits']}; "
        f"{summary['seconds']} s (training {summary['train_seconds']} s), load "
        f"{summary['load_before']:.2f} -> {summary['load_after']:.2f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
