"""Evaluate a trained run honestly: threshold from validation data, metrics with CIs, report.

``evaluate_run`` scores the validation split and the split asked for with the run's best
checkpoint, takes the operating threshold stored in the checkpoint (chosen on validation data at
the end of training) or chooses a new one on validation data, and writes ``metrics.json``,
``predictions.csv`` and ``report.html``. The split being evaluated never influences the
threshold: ``choose_threshold`` refuses ``chosen_on="test"``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.checkpoint import load_checkpoint, save_checkpoint
from medbalance.core.files import atomic_write_text
from medbalance.data.prepared import BatchLoader, Prepared, prepare_data
from medbalance.evaluation.inference import Trained, load_trained

__all__ = ["Scores", "choose_operating_point", "evaluate_run", "score_split"]

log = logging.getLogger(__name__)
DEFAULT_POLICY = "youden"


@dataclass
class Scores:
    """Probabilities of one split, in catalog order."""

    split: str
    indices: np.ndarray
    labels: np.ndarray
    probs: np.ndarray


def score_split(trained: Trained, data: Prepared, split: str, batch_size: int = 256) -> Scores:
    """Class probabilities of every item of ``split`` (no augmentation)."""
    idx = data.indices(split)
    loader = BatchLoader(data.images, data.catalog.labels, idx, batch_size)
    probs = [trained.probabilities(x.numpy()) for x, _ in loader]
    stacked = np.concatenate(probs) if probs else np.empty((0, len(data.class_names)))
    return Scores(split, idx, data.catalog.labels[idx], stacked)


def choose_operating_point(
    trained: Trained, val: Scores, policy: str, train_counts: list[int]
) -> dict[str, Any]:
    """The operating point, chosen on the validation scores only."""
    from medbalance.evaluation.thresholds import choose_threshold

    if val.split != "val":
        raise ValueError(f"thresholds are chosen on validation data only, not on {val.split!r}")
    if len(trained.class_names) == 2:
        point = choose_threshold(
            policy, val.labels == trained.positive, val.probs[:, trained.positive], chosen_on="val"
        )
        return point.to_dict()
    multiclass = policy in ("argmax", "prior") or policy.startswith("logit-adjust")
    if not multiclass:
        log.warning(
            "threshold policy %r needs two classes; with %d classes the decision is argmax "
            "(or give --threshold prior | logit-adjust:TAU)",
            policy,
            len(trained.class_names),
        )
    rule = policy if multiclass else "argmax"
    return {"policy": rule, "value": None, "chosen_on": "val", "train_counts": train_counts}


def _decide(trained: Trained, probs: np.ndarray, point: dict[str, Any]) -> np.ndarray:
    from medbalance.evaluation.thresholds import apply_multiclass_rule

    if len(trained.class_names) == 2:
        positive = probs[:, trained.positive] >= float(point["value"])
        return np.where(positive, trained.positive, 1 - trained.positive)
    return np.asarray(apply_multiclass_rule(point["policy"], probs, point.get("train_counts")))


def _metrics_block(
    trained: Trained, scores: Scores, point: dict[str, Any], n_bootstrap: int, seed: int
) -> dict[str, Any]:
    from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci
    from medbalance.evaluation.metrics import binary_metrics, multiclass_metrics, per_class_metrics

    labels, probs = scores.labels, scores.probs
    n_classes = probs.shape[1]
    preds = _decide(trained, probs, point)
    if n_classes == 2:
        pos = trained.positive
        y = (labels == pos).astype(int)
        summary = functools.partial(binary_metrics, threshold=float(point["value"]))
        point_metrics = summary(y, probs[:, pos])
        cis = bootstrap_ci(summary, y, probs[:, pos], n_resamples=n_bootstrap, seed=seed)
        at_default = binary_metrics(y, probs[:, pos], 0.5)
    else:
        point_metrics = multiclass_metrics(labels, probs, preds)
        cis = bootstrap_ci(
            multiclass_metrics, labels, probs, preds, n_resamples=n_bootstrap, seed=seed
        )
        at_default = multiclass_metrics(labels, probs, probs.argmax(axis=1))

    def per_class(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        rows = per_class_metrics(y_true, predicted, n_classes)
        return {f"{k}/{c}": v for c, row in enumerate(rows) for k, v in row.items()}

    class_point = per_class(labels, preds)
    class_cis = bootstrap_ci(per_class, labels, preds, n_resamples=n_bootstrap, seed=seed)
    per_class_out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(trained.class_names):
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
        "metrics": with_ci(point_metrics, cis),
        "per_class": per_class_out,
        "confusion_matrix": confusion_matrix(labels, preds, labels=list(range(n_classes))).tolist(),
        "at_default_threshold": {
            "threshold": 0.5 if n_classes == 2 else "argmax",
            "metrics": at_default,
        },
        "preds": preds,
    }


def _predictions_csv(
    data: Prepared, trained: Trained, scores: Scores, preds: np.ndarray, threshold: Any
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = trained.class_names
    writer.writerow(
        ["id", "path", "true_label", *[f"prob_{n}" for n in names], "predicted_label", "threshold"]
    )
    paths = data.catalog.paths
    for row, i in enumerate(scores.indices):
        writer.writerow(
            [
                data.catalog.origins[i],
                str(paths[i]) if paths is not None else "",
                names[scores.labels[row]],
                *[repr(float(p)) for p in scores.probs[row]],  # exact: recomputable
                names[preds[row]],
                "" if threshold is None else repr(float(threshold)),
            ]
        )
    return buffer.getvalue()


def _counts(data: Prepared) -> dict[str, dict[str, int]]:
    return {
        split: dict(zip(data.class_names, map(int, data.catalog.class_counts(split)), strict=True))
        for split in data.catalog.split_names()
    }


def evaluate_run(
    run_dir: Path,
    *,
    data: str | None = None,
    split: str = "test",
    policy: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    report: bool = True,
    prepared: Prepared | None = None,
    scores: Scores | None = None,
) -> dict[str, Any]:
    """Evaluate ``RUN_DIR/best.safetensors`` on ``split``; write metrics, predictions, report.

    Args:
        run_dir: a training run folder.
        data: data to evaluate on (default: the run's own data with its splits).
        split: the split to report (``test`` by default; ``val`` allowed).
        policy: choose a new operating threshold on validation data with this policy (default:
            the one stored in the checkpoint at the end of training).
        n_bootstrap: bootstrap resamples for the 95% confidence intervals.
        seed: seed of the bootstrap.
        device: where the model runs.
        report: also write ``report.html``.
        prepared: the run's data, already prepared (``fit`` passes it).
        scores: the best checkpoint's probabilities on ``split`` of ``prepared``, already
            computed (``fit`` passes them); scored here when None.

    Returns:
        The content of ``metrics.json``.
    """
    checkpoint = Path(run_dir) / "best.safetensors"
    trained = load_trained(checkpoint, device=device)
    meta = trained.metadata
    config = meta["config"]
    prepared = prepared or prepare_data(
        data or config["data"],
        presize_to=trained.presize,
        seed=config["seed"],
        resplit_val_fraction=config.get("resplit_val") if data is None else None,
        group_pattern=config.get("group_pattern") if data is None else None,
        group_column=config.get("group_column") if data is None else None,
        skip_unreadable=bool(config.get("skip_unreadable")),
    )
    if list(prepared.class_names) != trained.class_names:
        raise ValueError(
            f"the data's classes {list(prepared.class_names)} differ from the model's "
            f"{trained.class_names}; evaluate on data with the same class folders"
        )
    if not len(prepared.indices(split)):
        raise ValueError(f"the data has no {split!r} split; choose --split val or test")
    warnings = []
    if data is None and prepared.fingerprint != meta.get("data_fingerprint"):
        warnings.append("the data changed since training (fingerprint differs)")
    point = meta.get("threshold")
    if policy is not None or point is None:
        val = score_split(trained, prepared, "val")
        point = choose_operating_point(trained, val, policy or DEFAULT_POLICY, meta["train_counts"])
    if scores is None:
        scores = score_split(trained, prepared, split)
    elif scores.split != split or len(scores.probs) != len(prepared.indices(split)):
        raise ValueError(f"scores of split {scores.split!r} do not match split {split!r}")
    block = _metrics_block(trained, scores, point, n_bootstrap, seed)
    preds = block.pop("preds")
    result = {
        "split": split,
        "n": len(scores.labels),
        "class_names": trained.class_names,
        "positive_class": meta["positive_class"] if len(trained.class_names) == 2 else None,
        "threshold": {k: point[k] for k in ("policy", "value", "chosen_on")},
        **block,
        "counts": _counts(prepared),
        "warnings": warnings,
        "checkpoint_epoch": meta.get("epoch"),
    }
    suffix = "" if split == "test" else f"_{split}"
    run = Path(run_dir)
    text = json.dumps(result, indent=2, default=_json_default) + "\n"
    atomic_write_text(run / f"metrics{suffix}.json", text)
    rows = _predictions_csv(prepared, trained, scores, preds, point.get("value"))
    atomic_write_text(run / f"predictions{suffix}.csv", rows)
    if (report and split == "test") or (report and not len(prepared.indices("test"))):
        _write_report(run, trained, prepared, scores, preds)
    return result


def _json_default(value: object) -> object:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def store_threshold(run_dir: Path, point: dict[str, Any]) -> None:
    """Write the chosen operating point into the run's checkpoint (atomically)."""
    import torch

    path = Path(run_dir) / "best.safetensors"
    state, meta = load_checkpoint(path)
    meta["threshold"] = point

    class _Holder(torch.nn.Module):
        def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
            return state

    save_checkpoint(path, _Holder(), meta)


def _gallery(
    trained: Trained, data: Prepared, scores: Scores, preds: np.ndarray
) -> tuple[list[Any], list[Any]]:
    """Most confident errors, and Grad-CAM overlays for a few true and false positives."""
    import torch

    from medbalance.evaluation.gradcam import gradcam_maps
    from medbalance.reporting.report import GalleryItem

    names = trained.class_names
    wrong = np.flatnonzero(preds != scores.labels)
    confidence = scores.probs[np.arange(len(preds)), preds]
    worst = wrong[np.argsort(-confidence[wrong])][:8]
    errors = []
    for row in worst:
        image = _display_image(data, scores.indices[row])
        errors.append(
            GalleryItem(
                title=f"{names[scores.labels[row]]} called {names[preds[row]]}",
                image=image,
                caption=f"{data.catalog.origins[scores.indices[row]]}: p={confidence[row]:.2f}",
            )
        )
    cams = []
    if len(names) == 2:
        pos = trained.positive
        tp = np.flatnonzero((preds == pos) & (scores.labels == pos))[:4]
        fp = np.flatnonzero((preds == pos) & (scores.labels != pos))[:4]
        rows = np.concatenate([tp, fp])
        if len(rows):
            batch = data.images.take(scores.indices[rows])
            if batch.dtype == np.uint16:
                batch = batch.astype(np.int32)
            x = trained.transform(torch.from_numpy(batch).to(trained.device), train=False)
            maps = gradcam_maps(
                trained.model, x, torch.full((len(rows),), pos, device=trained.device)
            )
            for k, row in enumerate(rows):
                kind = "true positive" if scores.labels[row] == pos else "false positive"
                origin = data.catalog.origins[scores.indices[row]]
                image = x[k].detach().cpu().numpy()
                image = (image - image.min()) / (np.ptp(image) + 1e-8)
                cams.append(
                    GalleryItem(
                        title=kind,
                        image=image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                        heatmap=maps[k],
                        caption=f"{origin}: p={scores.probs[row, pos]:.2f}",
                    )
                )
    return errors, cams


def _display_image(data: Prepared, index: int) -> np.ndarray:
    image = data.images.take([index])[0].astype(np.float64)
    image = (image - image.min()) / (np.ptp(image) + 1e-8)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def _write_report(
    run: Path, trained: Trained, data: Prepared, scores: Scores, preds: np.ndarray
) -> None:
    from medbalance.reporting.report import write_report

    errors, cams = _gallery(trained, data, scores, preds)
    path = write_report(run, gallery_errors=errors, gallery_cam=cams)
    log.info("report: %s", path)
