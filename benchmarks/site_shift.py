"""Benchmark: calibration on every suite set, and another site's prevalence on PneumoniaMNIST.

Reuses the ``steps1k`` suite runs (seed 0; ``benchmarks/out/suite/full/steps1k/<set>/s0``),
scores val and test once, fits the calibration on val and prints (1) test calibration before and
after on each set, (2) the EM prevalence estimate and the re-targeted PPV on PneumoniaMNIST test
subsampled to 10%, 25% and 50% pneumonia. Not a test: run it by hand and record the tables in
benchmarks/RESULTS.md (the rules are written there first).

    nice python benchmarks/site_shift.py
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import OUT, load

from medbalance.core.run_folder import RunFolder
from medbalance.evaluation.calibration import calibration_metrics, fit_calibration
from medbalance.evaluation.inference import load_trained
from medbalance.evaluation.prevalence import at_prior, estimate_prior
from medbalance.evaluation.scoring import score_split
from medbalance.workflows.training import prepare_for_model

SUITE = OUT / "suite" / "full" / "steps1k"
SETS = ("pneumoniamnist", "breastmnist", "chest_xray_mini", "chest_xray_mini_3class",
        "blood_cells_pbc", "knee_kl", "synthetic_grades")  # fmt: skip
LEVELS = (0.10, 0.25, 0.50)


def scored(run: Path) -> dict[str, Any]:
    trained = load_trained(RunFolder(run).best, device="cpu")
    data = prepare_for_model(trained, None)
    out: dict[str, Any] = {"trained": trained}
    for split in ("val", "test"):
        out[split] = score_split(trained.model, data, split, trained.transform, trained.device)
    return out


def calibration_row(name: str, found: dict[str, Any]) -> dict[str, Any]:
    meta, val, test = found["trained"].metadata, found["val"], found["test"]
    cal = fit_calibration(val.labels, val.probs, train_counts=meta["train_counts"],
                          model_prior=meta.get("model_prior"))  # fmt: skip
    before = calibration_metrics(test.labels, test.probs)
    after = calibration_metrics(test.labels, cal.apply(test.probs))

    def per_class(m: dict[str, float]) -> float:
        return float(np.mean([v for k, v in m.items() if k.startswith("ece/")]))

    return {
        "set": name, "temperature": cal.temperature, "prior_corrected": cal.prior_weights is not None,
        **{f"{k}_before": before[k] for k in ("ece", "brier", "log_loss")},
        **{f"{k}_after": after[k] for k in ("ece", "brier", "log_loss")},
        "class_ece_before": per_class(before), "class_ece_after": per_class(after),
        "passes": after["log_loss"] <= before["log_loss"],
    }  # fmt: skip


def prevalence_rows(found: dict[str, Any], repeats: int, seed: int) -> list[dict[str, Any]]:
    trained, val, test = found["trained"], found["val"], found["test"]
    meta = trained.metadata
    cal = fit_calibration(val.labels, val.probs, train_counts=meta["train_counts"],
                          model_prior=meta.get("model_prior"))  # fmt: skip
    decision, pos = trained.decision, trained.positive
    calls = decision.decide(test.probs)
    names = trained.class_names
    negatives = np.flatnonzero(test.labels != pos)
    positives = np.flatnonzero(test.labels == pos)
    rows = []
    subsamples = _subsamples(negatives, positives, repeats, np.random.default_rng(seed))
    for level, k, idx in subsamples:
        truth, found_prior = _estimate(cal.for_prevalence or cal, test, idx, pos, meta)
        prior = np.zeros(2)
        prior[pos], prior[1 - pos] = truth, 1 - truth
        ppv = at_prior(test.labels, calls, prior, names, positive=pos, n_bootstrap=500,
                       seed=k)["ppv"][names[pos]]  # fmt: skip
        called = calls[idx] == pos
        observed = float(np.mean(test.labels[idx][called] == pos)) if called.any() else None
        lo, hi = ppv["ci"]
        rows.append({
            "level": level, "repeat": k, "truth": truth, "estimate": found_prior,
            "within_003": abs(found_prior - truth) <= 0.03, "ppv": ppv["value"],
            "ppv_ci": [lo, hi], "observed_ppv": observed,
            "covered": observed is not None and lo <= observed <= hi,
        })  # fmt: skip
    return rows


def _subsamples(
    negatives: np.ndarray, positives: np.ndarray, repeats: int, rng: np.random.Generator
) -> list[tuple[float, int, np.ndarray]]:
    """(level, repeat, indices): every negative, positives drawn to each level's share."""
    out = []
    for level in LEVELS:
        n_pos = min(len(positives), round(level * len(negatives) / (1 - level)))
        for k in range(repeats):
            out.append((level, k, np.r_[negatives, rng.choice(positives, n_pos, replace=False)]))
    return out


def _estimate(
    cal: Any, test: Any, idx: np.ndarray, pos: int, meta: dict[str, Any]
) -> tuple[float, float]:
    """The true positive share of ``idx`` and the EM estimate from ``cal``'s probabilities."""
    truth = float(np.mean(test.labels[idx] == pos))
    start = cal.tuning_prior or meta["train_counts"]
    found = estimate_prior(cal.apply(test.probs[idx]), start, n_bootstrap=0)["prior"][pos]
    return truth, float(found)


def control_rows(found: dict[str, Any], repeats: int, seed: int) -> list[dict[str, Any]]:
    """The estimate without the val -> test shift: calibration fitted on half of test, the
    subsamples drawn from the other half."""
    trained, test = found["trained"], found["test"]
    meta, pos = trained.metadata, trained.positive
    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(len(test.labels))
    fit_half, use_half = order[: len(order) // 2], order[len(order) // 2 :]
    cal = fit_calibration(test.labels[fit_half], test.probs[fit_half],
                          train_counts=meta["train_counts"],
                          model_prior=meta.get("model_prior"), method="bcts")  # fmt: skip
    negatives = use_half[test.labels[use_half] != pos]
    positives = use_half[test.labels[use_half] == pos]
    rows = []
    for level, k, idx in _subsamples(negatives, positives, repeats, rng):
        truth, found_prior = _estimate(cal, test, idx, pos, meta)
        rows.append({"level": level, "repeat": k, "truth": truth, "estimate": found_prior,
                     "within_003": abs(found_prior - truth) <= 0.03})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "site"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started, load_before = time.perf_counter(), load()
    rows: list[dict[str, Any]] = []
    shift: list[dict[str, Any]] = []
    control: list[dict[str, Any]] = []
    for name in SETS:
        found = scored(SUITE / name / "s0")
        rows.append(calibration_row(name, found))
        if name == "pneumoniamnist":
            shift = prevalence_rows(found, args.repeats, args.seed)
            control = control_rows(found, args.repeats, args.seed)
    print("| set | T | prior corrected | ECE before → after | class ECE before → after | "
          "Brier before → after | log loss before → after | passes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['temperature']:.2f} | {'yes' if r['prior_corrected'] else 'no'} "
              f"| {r['ece_before']:.3f} → {r['ece_after']:.3f} "
              f"| {r['class_ece_before']:.3f} → {r['class_ece_after']:.3f} "
              f"| {r['brier_before']:.3f} → {r['brier_after']:.3f} "
              f"| {r['log_loss_before']:.3f} → {r['log_loss_after']:.3f} "
              f"| {'yes' if r['passes'] else 'no'} |")  # fmt: skip
    print("\n| pneumonia share | estimate, mean ± sd | within ±0.03 | re-targeted PPV (mean) | "
          "observed PPV (mean) | CI covers observed |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for level in LEVELS:
        part = [r for r in shift if r["level"] == level]
        est = np.array([r["estimate"] for r in part])
        obs = [r["observed_ppv"] for r in part if r["observed_ppv"] is not None]
        print(f"| {np.mean([r['truth'] for r in part]):.3f} | {est.mean():.3f} ± {est.std(ddof=1):.3f} "
              f"| {sum(r['within_003'] for r in part)}/{len(part)} "
              f"| {np.mean([r['ppv'] for r in part]):.3f} | {np.mean(obs):.3f} "
              f"| {sum(r['covered'] for r in part)}/{len(part)} |")  # fmt: skip
    print("\n| control: pneumonia share | estimate, mean ± sd | within ±0.03 |")
    print("|---|---|---|")
    for level in LEVELS:
        part = [r for r in control if r["level"] == level]
        est = np.array([r["estimate"] for r in part])
        print(
            f"| {np.mean([r['truth'] for r in part]):.3f} | {est.mean():.3f} ± "
            f"{est.std(ddof=1):.3f} | {sum(r['within_003'] for r in part)}/{len(part)} |"
        )
    seconds = time.perf_counter() - started
    print(f"\nload {load_before:.2f} -> {load():.2f}; {seconds:.0f} s")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    record = {"calibration": rows, "prevalence": shift, "control": control, "seconds": seconds}
    (Path(args.out) / "site.json").write_text(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
