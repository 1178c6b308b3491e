"""Evaluate a model's scores honestly: the decision from validation data, metrics with CIs.

:func:`evaluate_scores` applies a :class:`~medbalance.evaluation.decision.Decision` (chosen on
validation data, never on the split being evaluated) to one split's probabilities and computes
``metrics.json``'s content (every metric with a 95% stratified-bootstrap CI, per-class metrics,
the confusion matrix, the metrics at threshold 0.5) and ``predictions.csv``'s rows. Loading the
run, choosing the decision and writing the report are the workflow's steps
(:mod:`medbalance.workflows.training`).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.files import atomic_write_text, spreadsheet_safe
from medbalance.core.run_folder import RunFolder
from medbalance.data.prepared import Prepared
from medbalance.evaluation.calibration import Calibration
from medbalance.evaluation.conformal import ConformalScores
from medbalance.evaluation.decision import Decision
from medbalance.evaluation.scoring import Scores

__all__ = ["Evaluation", "evaluate_scores"]
# the decision as metrics.json shows it; the tuned values of offsets and expected-grade too, and
# a guaranteed constraint's level, lower bound and point estimate on the tuning cases
_THRESHOLD_KEYS = ("policy", "value", "chosen_on", "tta", "offsets", "cut_points", "guarantee")

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """One split evaluated at a decision: ``result`` is ``metrics.json``'s content."""

    result: dict[str, Any]
    scores: Scores
    preds: np.ndarray
    predictions_csv: str

    def write(self, folder: RunFolder) -> None:
        """Write ``metrics[_SPLIT].json`` and ``predictions[_SPLIT].csv`` atomically."""
        split = self.result["split"]
        self.write_to(folder.metrics(split), folder.predictions(split))

    def write_to(self, metrics: Path, predictions: Path) -> None:
        """Write the metrics (strict JSON) and the predictions to these files, atomically."""
        RunFolder(metrics.parent).write_json(metrics, self.result)
        atomic_write_text(predictions, self.predictions_csv)


def evaluate_scores(
    data: Prepared,
    scores: Scores,
    decision: Decision,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    checkpoint_epoch: int | None = None,
    warnings: Sequence[str] = (),
    run_id: str | None = None,
    calibration: Calibration | None = None,
    conformal: ConformalScores | None = None,
    conformal_level: float | None = None,
) -> Evaluation:
    """Metrics with CIs of ``scores`` (one split of ``data``) at ``decision``; with
    ``calibration``, also how calibrated the probabilities are before and after it; with
    ``conformal`` and ``conformal_level``, ``conformal``: each class's coverage and mean set
    size and the refer rate of the conformal sets at that level, whose warnings (too few tuning
    cases) join ``warnings``."""
    names = list(decision.class_names)
    if list(data.class_names) != names:
        raise ValueError(
            f"the data's classes {list(data.class_names)} differ from the model's {names}; "
            "evaluate on data with the same class folders"
        )
    if scores.split == decision.chosen_on == "test":
        raise ValueError("the decision was chosen on the split being evaluated")
    block = _metrics_block(decision, scores, n_bootstrap, seed)
    preds = block.pop("preds")
    positive = (
        names[decision.positive] if len(names) == 2 and decision.positive is not None else None
    )
    record = decision.to_record()
    result = {
        "split": scores.split,
        "n": len(scores.labels),
        "class_names": names,
        "positive_class": positive,
        "threshold": {k: record[k] for k in _THRESHOLD_KEYS if k in record},
        "ordinal": decision.ordinal,
        **block,
        "counts": _counts(data),
        "calibration": _calibration(scores, calibration, names, n_bootstrap, seed),
        "warnings": list(warnings),
        "conformal": _conformal(scores, conformal, conformal_level, n_bootstrap, seed),
        "checkpoint_epoch": checkpoint_epoch,
        "run_id": run_id,
    }
    if result["conformal"] is not None:
        result["warnings"] += result["conformal"]["warnings"]
    sets = None
    if conformal is not None and conformal_level is not None:
        sets = conformal.sets(scores.probs, conformal_level)
    rows = _predictions_csv(data, names, scores, preds, decision.threshold, sets)
    return Evaluation(result, scores, preds, rows)


def _conformal(
    scores: Scores,
    conformal: ConformalScores | None,
    level: float | None,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any] | None:
    from medbalance.evaluation.conformal import conformal_report

    if level is None:
        return None
    if conformal is None:
        raise ValueError("a conformal level needs the conformal scores of the tuning cases")
    return conformal_report(
        scores.labels, scores.probs, conformal, level, split=scores.split,
        n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip


def _calibration(
    scores: Scores,
    calibration: Calibration | None,
    names: Sequence[str],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any] | None:
    from medbalance.evaluation.calibration import calibration_report

    if calibration is None:
        return None
    return calibration_report(
        scores.labels, scores.probs, calibration, names, n_bootstrap=n_bootstrap, seed=seed
    )


def _metrics_block(
    decision: Decision, scores: Scores, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci
    from medbalance.evaluation.metrics import binary_metrics, multiclass_metrics, per_class_table

    labels, probs = scores.labels, scores.probs
    n_classes = probs.shape[1]
    preds = decision.decide(probs)
    if n_classes == 2 and decision.threshold is not None and decision.positive is not None:
        pos = decision.positive
        y = (labels == pos).astype(int)
        summary = functools.partial(binary_metrics, threshold=decision.threshold)
        point_metrics = summary(y, probs[:, pos])
        cis = bootstrap_ci(summary, y, probs[:, pos], n_resamples=n_bootstrap, seed=seed)
        at_default = binary_metrics(y, probs[:, pos], 0.5)
    else:  # grades (ordinal): also quadratic kappa, mean absolute error, within-one accuracy
        summary = functools.partial(multiclass_metrics, ordinal=decision.ordinal)
        point_metrics = summary(labels, probs, preds)
        cis = bootstrap_ci(summary, labels, probs, preds, n_resamples=n_bootstrap, seed=seed)
        at_default = summary(labels, probs, probs.argmax(axis=1))

    per_class = functools.partial(per_class_table, n_classes=n_classes)
    class_point = per_class(labels, preds)
    class_cis = bootstrap_ci(per_class, labels, preds, n_resamples=n_bootstrap, seed=seed)
    per_class_out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(decision.class_names):
        keys = {k.split("/")[0] for k in class_point if k.endswith(f"/{c}")}
        per_class_out[name] = {
            k: (
                {
                    "value": class_point[f"{k}/{c}"],
                    "ci": list(class_cis.get(f"{k}/{c}", (np.nan, np.nan))),
                }
                if k != "support"
                else int(class_point[f"{k}/{c}"])
            )
            for k in sorted(keys)
        }
    from sklearn.metrics import confusion_matrix

    return {
        "metrics": _explain_undefined(with_ci(point_metrics, cis)),
        "per_class": per_class_out,
        "confusion_matrix": confusion_matrix(labels, preds, labels=list(range(n_classes))).tolist(),
        "at_default_threshold": {
            "threshold": 0.5 if n_classes == 2 else "argmax",
            "metrics": at_default,
        },
        "preds": preds,
    }


# why a metric has no value on a split (metrics.json writes null and this beside it)
_UNDEFINED = {
    "ppv": "no image was called positive",
    "npv": "no image was called negative",
    "sensitivity": "the split holds no positive image",
    "specificity": "the split holds no negative image",
    "auroc": "the split holds images of one class only",
    "average_precision": "the split holds no positive image",
    "f1": "no positive image was present or called positive",
    "mcc": "a row or column of the confusion matrix is empty",
    "macro_auroc": "a class has no image in the split",
    "weighted_auroc": "a class has no image in the split",
    "quadratic_kappa": "every image has the same true grade and is called that grade",
}


def _explain_undefined(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add ``undefined``: the reason, to every metric without a finite value (strict JSON has
    no NaN: the value is written as null)."""
    for key, entry in metrics.items():
        if not np.isfinite(entry["value"]):
            entry["undefined"] = _UNDEFINED.get(key, "undefined on this split")
    return metrics


def _predictions_csv(
    data: Prepared,
    names: list[str],
    scores: Scores,
    preds: np.ndarray,
    threshold: float | None,
    sets: np.ndarray | None = None,
) -> str:
    """One row per case; with ``sets`` (``[N, C]`` conformal membership), also ``set`` (the class
    names joined as ``predict`` joins them) and ``refer`` (1 when the set is not one class)."""
    from medbalance.evaluation.conformal import SET_SEPARATOR

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    extra = ["set", "refer"] if sets is not None else []
    writer.writerow(
        ["id", "path", "true_label", *[f"prob_{n}" for n in names], "predicted_label",
         "threshold", *extra]
    )  # fmt: skip
    paths = data.catalog.paths
    for row, i in enumerate(scores.indices):
        cells = [
            spreadsheet_safe(data.catalog.origins[i]),
            spreadsheet_safe(str(paths[i])) if paths is not None else "",
            spreadsheet_safe(names[scores.labels[row]]),
            *[repr(float(p)) for p in scores.probs[row]],  # exact: recomputable
            spreadsheet_safe(names[preds[row]]),
            "" if threshold is None else repr(float(threshold)),
        ]
        if sets is not None:
            kept = [n for n, inside in zip(names, sets[row], strict=True) if inside]
            cells += [spreadsheet_safe(SET_SEPARATOR.join(kept)), str(int(len(kept) != 1))]
        writer.writerow(cells)
    return buffer.getvalue()


def _counts(data: Prepared) -> dict[str, dict[str, int]]:
    return {
        split: dict(zip(data.class_names, map(int, data.catalog.class_counts(split)), strict=True))
        for split in data.catalog.split_names()
    }
