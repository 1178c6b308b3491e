"""Benchmark: ``medbalance recalibrate`` on 100 labelled cases of a new site, PneumoniaMNIST.

Trains one PneumoniaMNIST run with today's defaults (seed 0; reused when it exists under
``benchmarks/out/recalibrate/run``), then treats the test split as the new site: site A is the
whole split (62.5% pneumonia), site B every normal image and 60 pneumonia ones (20%). For each of
``--draws`` draws a stratified 100 images are the labelled sample (the ``train`` split of an npz,
all tuning) and the rest the site's future cases (its ``test`` split); ``recalibrate`` runs on it
through the real code path, and the future cases compare what was fitted on the training site's
val split with what was fitted on the sample (the rule is in benchmarks/RESULTS.md, written
before the run). Not a test: run it by hand and record the table.

    nice python benchmarks/recalibrate_site.py --draws 20
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench import OUT, SHARED_DATA, load

from medbalance.evaluation.calibration import calibration_metrics, fit_calibration
from medbalance.evaluation.ensemble import load_model
from medbalance.evaluation.thresholds import choose_threshold
from medbalance.training.config import TrainConfig
from medbalance.workflows.recalibrate import recalibrate_run
from medbalance.workflows.training import train_and_evaluate

HERE = OUT / "recalibrate"
SAMPLE = 100
VAL_THRESHOLDS: dict[str, float] = {}  # per policy, chosen once on the run's val split


def trained_run() -> Path:
    run = HERE / "run"
    if not (run / "metrics.json").is_file():
        data = str(SHARED_DATA / "pneumoniamnist.npz")
        train_and_evaluate(TrainConfig(data=data, out=str(run), seed=0, device="cpu"))
    return run


def site_population(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The site's images and labels (1 = pneumonia), from PneumoniaMNIST's test split."""
    with np.load(SHARED_DATA / "pneumoniamnist.npz") as npz:
        images, labels = npz["test_images"], npz["test_labels"].ravel()
    if name == "B":
        keep = np.r_[
            np.flatnonzero(labels == 0), rng.choice(np.flatnonzero(labels == 1), 60, False)
        ]
        images, labels = images[keep], labels[keep]
    return images, labels


def draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stratified random ``SAMPLE`` of the site (a boolean mask)."""
    mask = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        n = round(SAMPLE * len(members) / len(labels))
        mask[rng.choice(members, n, replace=False)] = True
    return mask


def one_draw(run: Path, site: str, k: int, images: np.ndarray, labels: np.ndarray,
             rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    mask = draw(labels, rng)
    folder = HERE / f"site{site}_{k}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    npz = folder / "pneumoniamnist.npz"  # the name gives the classes their MedMNIST names
    np.savez(npz, train_images=images[mask], train_labels=labels[mask][:, None],
             test_images=images[~mask], test_labels=labels[~mask][:, None])  # fmt: skip
    row: dict[str, Any] = {"site": site, "draw": k}
    original = load_model(run)
    for policy in ("youden", "sensitivity>=0.9"):
        out = folder / policy.replace(">=", "_")
        result = recalibrate_run(run, str(npz), out, policy=policy, n_bootstrap=200, report=False)
        future = _future(out)
        val_threshold = VAL_THRESHOLDS.setdefault(policy, _val_threshold(run, policy))
        row[policy] = {
            "site": _rates(future, result["threshold"]["value"]),
            "val": _rates(future, val_threshold),
        }
        if policy == "youden":
            y, p = future
            probs = np.c_[1 - p, p]
            site_cal = load_model(out).calibration
            assert original.calibration is not None and site_cal is not None
            row["log_loss"] = {
                "raw": calibration_metrics(y, probs)["log_loss"],
                "val": calibration_metrics(y, original.calibration.apply(probs))["log_loss"],
                "site": calibration_metrics(y, site_cal.apply(probs))["log_loss"],
            }
            # exploratory, after the pre-registered comparison: the other methods fitted on
            # the same tuning rows (the ones with a bias can move the prior to the site's)
            ty, tp = _future(out, "predictions_val.csv")
            tuning = np.c_[1 - tp, tp]
            meta = original.metadata
            for method in ("vector", "bcts", "isotonic"):
                fitted = fit_calibration(
                    ty.astype(int), tuning, train_counts=meta["train_counts"],
                    model_prior=meta.get("model_prior"), chosen_on="site", method=method,
                )  # fmt: skip
                row["log_loss"][method] = calibration_metrics(y, fitted.apply(probs))["log_loss"]
    shutil.rmtree(folder)
    return row


def _future(out: Path, name: str = "predictions.csv") -> tuple[np.ndarray, np.ndarray]:
    import csv

    with (out / name).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    y = np.array([r["true_label"] == "pneumonia" for r in rows])
    return y, np.array([float(r["prob_pneumonia"]) for r in rows])


def _val_threshold(run: Path, policy: str) -> float:
    """The policy chosen on the run's own val split (as train and evaluate choose it)."""
    from medbalance.core.run_folder import RunFolder
    from medbalance.evaluation.inference import load_trained
    from medbalance.evaluation.scoring import score_split
    from medbalance.workflows.training import prepare_for_model

    trained = load_trained(RunFolder(run).best, device="cpu")
    val = score_split(
        trained.model, prepare_for_model(trained, None), "val", trained.transform, trained.device
    )
    positive = trained.positive
    return float(choose_threshold(policy, val.labels == positive, val.probs[:, positive]).value)


def _rates(future: tuple[np.ndarray, np.ndarray], threshold: float) -> dict[str, float]:
    y, p = future
    called = p >= threshold
    sens, spec = float(called[y].mean()), float((~called[~y]).mean())
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": (sens + spec) / 2}


def summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| site | draws | youden bal. acc. val-chosen | site-chosen | log loss val-cal | "
        "site-cal | site-cal lower | sens>=0.9 misses val / site | its specificity val / site |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for site in ("A", "B"):
        these = [r for r in rows if r["site"] == site]
        if not these:
            continue

        def ms(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.3f} ± {sd:.3f}"

        yv = [r["youden"]["val"]["balanced_accuracy"] for r in these]
        ys = [r["youden"]["site"]["balanced_accuracy"] for r in these]
        lv = [r["log_loss"]["val"] for r in these]
        ls = [r["log_loss"]["site"] for r in these]
        sv = [r["sensitivity>=0.9"]["val"] for r in these]
        ss = [r["sensitivity>=0.9"]["site"] for r in these]
        miss_v = sum(r["sensitivity"] < 0.9 for r in sv)
        miss_s = sum(r["sensitivity"] < 0.9 for r in ss)
        lower = sum(s < v for s, v in zip(ls, lv, strict=True))
        lines.append(
            f"| {site} | {len(these)} | {ms(yv)} | {ms(ys)} | {ms(lv)} | {ms(ls)} | "
            f"{lower}/{len(these)} | {miss_v} / {miss_s} | "
            f"{ms([r['specificity'] for r in sv])} / {ms([r['specificity'] for r in ss])} |"
        )
    lines += ["", "| site | log loss raw | val temperature | site temperature | site vector | "
              "site bcts | site isotonic |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for site in ("A", "B"):
        these = [r["log_loss"] for r in rows if r["site"] == site]
        if these:
            cells = [
                f"{statistics.mean(r[k] for r in these):.3f}"
                for k in ("raw", "val", "site", "vector", "bcts", "isotonic")
            ]
            lines.append(f"| {site} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start, load_start = time.time(), load()
    run = trained_run()
    trained_at = time.time()
    rows = []
    for site in ("A", "B"):
        rng = np.random.default_rng(1000 if site == "A" else 2000)
        images, labels = site_population(site, rng)
        for k in range(args.draws):
            rows.append(one_draw(run, site, k, images, labels, rng))
    (HERE / "rows.json").write_text(json.dumps(rows, indent=1))
    print(summary(rows))
    print(f"\ntraining {trained_at - start:.0f} s, draws {time.time() - trained_at:.0f} s; "
          f"load {load_start:.1f} -> {load():.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
