"""Recompute AUROC, sensitivity and specificity from predictions.csv with scikit-learn.

A reviewer's consistency check: the numbers must equal the ones in metrics.json exactly.

    python scripts/check_metrics.py RUN_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score


def main(run_dir: Path) -> int:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    positive = metrics["positive_class"]
    with (run_dir / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    y = np.array([row["true_label"] == positive for row in rows], dtype=int)
    score = np.array([float(row[f"prob_{positive}"]) for row in rows])
    called = np.array([row["predicted_label"] == positive for row in rows], dtype=int)
    tn, fp, fn, tp = confusion_matrix(y, called, labels=[0, 1]).ravel()
    recomputed = {
        "auroc": roc_auc_score(y, score),
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
    }
    ok = True
    for name, value in recomputed.items():
        stored = metrics["metrics"][name]["value"]
        same = abs(value - stored) < 1e-6
        ok &= same
        verdict = "ok" if same else "DIFFERS"
        print(f"{name:12s} metrics.json {stored:.6f}  recomputed {value:.6f}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
