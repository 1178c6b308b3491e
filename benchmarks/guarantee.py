r"""Benchmark: does ``sensitivity>=0.9 --guarantee 0.95`` keep its promise on test? (issue 24)

One model per data set, trained once on the CPU; its val and test probabilities are reused for
every repeat. A repeat resamples the val cases with replacement, chooses the operating point with
and without the guarantee (the library's ``choose_decision``) and applies it to the fixed test
set. Printed: how often test sensitivity falls below 0.9, the mean test specificity (the price),
the refusals, and first the refusal of the official val split (before any training). Not a
test: run it by hand and record the table in benchmarks/RESULTS.md.

    nice python benchmarks/guarantee.py --data breastmnist --resplit-val 0.3
    nice python benchmarks/guarantee.py --data chest_xray_mini --size 64 --resplit-val 0.4 \
        --group-pattern '^((?:NORMAL2-)?IM-\d+|person\d+)'
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
from medbalance.evaluation.decision import choose_decision
from medbalance.training.config import ConfigError

POLICY, TARGET, LEVEL = "sensitivity>=0.9", 0.9, 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--resplit-val", type=float, default=None)
    parser.add_argument("--group-pattern", default=None, help="patient id regex (folder data)")
    parser.add_argument("--repeats", type=int, default=20, help="the repeats the rule judges")
    parser.add_argument("--more", type=int, default=1000, help="repeats for the finer estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "guarantee"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    path = SHARED_DATA / f"{args.data}.npz"
    data = str(path) if path.is_file() else str(SHARED_DATA / args.data)
    out = Path(args.out) / args.data
    common = dict(epochs=args.epochs, size=args.size, model=args.model, seed=args.seed,
                  device="cpu", threshold=POLICY, group_pattern=args.group_pattern,
                  bootstrap=100, verbose=False)  # fmt: skip
    started, load_before = time.perf_counter(), load()
    print(f"{args.data}: load before {load_before:.2f}")
    official = _official_refusal(data, out / "official", common)
    print(f"official val split with --guarantee {LEVEL}: {official}")
    run = mb.train(data, out=out / "run", overwrite=True, resplit_val=args.resplit_val, **common)
    train_s = time.perf_counter() - started
    names = list(run.decision.class_names)
    positive = names.index(run.metrics["positive_class"])
    mb.evaluate(run, split="val", bootstrap=100, report=False, verbose=False)
    folder = RunFolder(run.path)
    val = folder.read_predictions(names, "val")
    test = folder.read_predictions(names, "test")
    choose = _chooser(names, positive)
    on_val = {level: choose(val.labels, val.probs, level) for level in (None, LEVEL)}
    rng = np.random.default_rng(args.seed)
    rows = [_repeat(rng, val.labels, val.probs, test, choose, positive) for _ in range(args.more)]
    summary = {
        "data": args.data,
        "val": {"n": len(val.labels), "positives": int((val.labels == positive).sum())},
        "test": {"n": len(test.labels), "positives": int((test.labels == positive).sum())},
        "test_auroc": run.metrics["metrics"]["auroc"]["value"],
        "official_val": official,
        "chosen_on_val": {str(k): _describe(v, test, positive) for k, v in on_val.items()},
        "first": _fractions(rows[: args.repeats]),
        "all": _fractions(rows),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_before": load_before,
        "load_after": load(),
    }
    print(json.dumps(summary, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "guarantee.json").write_text(
        json.dumps({"machine": machine(), "args": vars(args), **summary}, indent=2, default=str)
    )


def _official_refusal(data: str, out: Path, common: dict[str, Any]) -> str:
    """The message with which training on the official splits refuses the guarantee (it is
    refused once the data is prepared, before the first epoch), or a note that it trained."""
    try:
        mb.train(data, out=out, overwrite=True, guarantee=LEVEL, **{**common, "epochs": 1})
    except ConfigError as error:
        return str(error)
    return "not refused (a model was trained)"


def _chooser(names: list[str], positive: int) -> Any:
    def choose(labels: np.ndarray, probs: np.ndarray, level: float | None) -> Any:
        try:
            return choose_decision(
                POLICY, labels, probs, class_names=names, positive=positive,
                train_counts=[1, 1], guarantee=level,
            )  # fmt: skip
        except ValueError as error:
            if "needs at least" not in str(error):
                raise
            return None

    return choose


def _repeat(
    rng: np.random.Generator,
    labels: np.ndarray,
    probs: np.ndarray,
    test: Any,
    choose: Any,
    positive: int,
) -> dict[str, Any]:
    """One bootstrap resample of the val cases: each rule's test rates (None: refused)."""
    idx = rng.integers(0, len(labels), len(labels))
    if len(np.unique(labels[idx])) < 2:  # both classes are needed to choose; draw again
        return _repeat(rng, labels, probs, test, choose, positive)
    return {
        str(level): _describe(choose(labels[idx], probs[idx], level), test, positive)
        for level in (None, LEVEL)
    }


def _describe(decision: Any, test: Any, positive: int) -> dict[str, Any] | None:
    if decision is None:
        return None
    called = decision.decide(test.probs) == positive
    truth = test.labels == positive
    return {
        "threshold": decision.threshold,
        "lower_bound": decision.lower_bound,
        "val_sensitivity": decision.val_rates[0],
        "test_sensitivity": float(called[truth].mean()),
        "test_specificity": float((~called[~truth]).mean()),
    }


def _fractions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rule: repeats, refusals, share below the target on test, mean test rates."""
    result = {}
    for rule in (str(None), str(LEVEL)):
        done = [r[rule] for r in rows if r[rule] is not None]
        sens = np.array([d["test_sensitivity"] for d in done])
        spec = np.array([d["test_specificity"] for d in done])
        result["plain" if rule == "None" else f"guarantee {LEVEL}"] = {
            "repeats": len(rows),
            "refused": len(rows) - len(done),
            "below_target": int((sens < TARGET - 1e-12).sum()),
            "share_below": float((sens < TARGET - 1e-12).mean()) if len(done) else None,
            "mean_test_sensitivity": float(sens.mean()) if len(done) else None,
            "min_test_sensitivity": float(sens.min()) if len(done) else None,
            "mean_test_specificity": float(spec.mean()) if len(done) else None,
        }
    return result


if __name__ == "__main__":
    main()
