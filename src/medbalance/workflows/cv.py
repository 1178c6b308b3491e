"""Cross-validation for small data: K fold models, out-of-fold predictions, one ensemble.

``cv`` pools the train and val splits, cuts K stratified folds (patient-grouped when the data
names patients) and trains K ordinary runs under ``DIR/folds/foldK``, each validated on its own
fold. The test split is never touched until the end. Every train+val image then has one
**out-of-fold (OOF)** prediction, from the model that did not see it; the operating point is
chosen on those (all train+val cases instead of one small val split), and the K models form an
ensemble (the mean of their probabilities) that is evaluated once on test at that point.

``combine="stack"`` (``cv --combine stack``) adds a logistic regression fit on the OOF
probabilities (:mod:`medbalance.evaluation.stacking`); the test input is the mean of the members'
probabilities through it. Since the stacker has seen every OOF case, the operating point is
chosen on *cross-validated* stacker outputs (``cross_val_predict`` over the same folds), and
``oof_predictions.csv`` / ``oof_metrics.json`` hold those: the out-of-fold outputs of the whole
stacked pipeline, each case scored by a fold model and a stacker that did not see it.

``DIR`` then holds ``metrics.json`` / ``predictions.csv`` (the ensemble on test, the schema of a
run's), ``oof_metrics.json`` / ``oof_predictions.csv`` (OOF metrics with CIs, and the rows),
``folds.csv`` (each fold's val and test metrics: the spread between folds), ``ensemble.json``
(what ``predict DIR`` and ``evaluate DIR`` use), ``config.json`` and ``report.html``.

Folds are resumable runs: a finished fold is not trained again, an interrupted one resumes.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.checkpoint import read_metadata
from medbalance.core.files import atomic_write_text
from medbalance.core.locks import locks_folder
from medbalance.core.run_folder import Predictions, RunFolder
from medbalance.data.identical import item_digests, split_groups
from medbalance.data.prepared import Prepared, fingerprint
from medbalance.evaluation.calibration import METADATA_KEY as CALIBRATION_KEY
from medbalance.evaluation.calibration import fit_calibration
from medbalance.evaluation.conformal import METADATA_KEY as CONFORMAL_KEY
from medbalance.evaluation.conformal import ConformalScores, check_level, fit_conformal
from medbalance.evaluation.decision import Decision, choose_decision
from medbalance.evaluation.ensemble import Combine, Ensemble, parse_combine, write_ensemble
from medbalance.evaluation.evaluate import Evaluation, evaluate_scores
from medbalance.evaluation.inference import Trained, load_trained
from medbalance.evaluation.scoring import Scores, score_split
from medbalance.evaluation.stacking import Stacker, cross_validated_outputs, fit_stacker
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.training.prepare import check_tuning_cases, prepare_run
from medbalance.workflows.run_state import run_state
from medbalance.workflows.tracking import UNTRACKED, track_cv

__all__ = ["CVResult", "cross_validate", "evaluate_cv", "fold_masks", "write_ensemble_report"]

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    """What ``cv`` leaves behind (the files are in ``out``)."""

    out: Path
    folds: int
    metrics: dict[str, Any]  # the ensemble on test (metrics.json), or on nothing: {}
    oof: dict[str, Any]  # oof_metrics.json
    decision: Decision
    fold_rows: list[dict[str, Any]]


def fold_masks(
    labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int
) -> list[np.ndarray]:
    """K boolean masks over ``labels``: stratified folds, grouped when ``groups`` (patients and
    identical files: :func:`~medbalance.data.identical.split_groups`)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise ConfigError(f"folds must be 2 or more, got {folds}")
    counts = np.bincount(labels)
    if counts[counts > 0].min() < folds:
        raise ConfigError(
            f"{folds} folds need at least {folds} train+val images of every class; the rarest "
            f"has {int(counts[counts > 0].min())}; use fewer folds"
        )
    splitter = (
        StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        if groups is not None
        else StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    )
    masks = []
    for _, held_out in splitter.split(np.zeros(len(labels)), labels, groups=groups):
        mask = np.zeros(len(labels), dtype=bool)
        mask[held_out] = True
        masks.append(mask)
    return masks


@locks_folder("out")
def cross_validate(
    config: TrainConfig,
    *,
    folds: int = 5,
    out: Path,
    n_bootstrap: int | None = None,
    tta: int = 1,
    combine: str = "mean",
) -> CVResult:
    """Train K fold models, choose the decision on OOF predictions, evaluate the ensemble.

    Args:
        config: what every fold shares (data, model, remedy, epochs, threshold policy ...).
        folds: K.
        out: the CV folder.
        n_bootstrap: resamples for the CIs (default: the config's ``bootstrap``).
        tta: test-time augmentation views for the OOF and test probabilities (stored with the
            decision, so ``predict`` averages as many).
        combine: ``mean`` of the members' probabilities, or ``stack``: that mean through a
            logistic regression fit on the OOF probabilities (the decision is then chosen on
            its cross-validated outputs).

    Raises:
        ConfigError: too few images of a class for K folds, or a bad option.
        ValueError: a fold folder holds another run, or an unknown ``combine``.
    """
    how = parse_combine(combine)  # refused before any fold trains
    out = Path(out)
    # a guarantee holds for the out-of-fold decision: the folds decide on their own val without
    # it, and the OOF cases (train+val) are checked for it before any fold trains
    base = prepare_run(dataclasses.replace(config, guarantee=None))
    data, resolved = base.data, base.config
    pool = np.flatnonzero(np.isin(data.catalog.splits, ("train", "val")))
    check_tuning_cases(config, data, resolved.positive_index, tuning=pool, split="out-of-fold")
    # a patient's images and identical files stay in one fold, as in the splits
    groups, _ = split_groups(data.catalog, pool, item_digests(data.catalog))
    masks = fold_masks(data.catalog.labels[pool], groups, folds, resolved.seed)
    shared = TrainConfig(**{**resolved.to_dict(), "out": str(out / "folds"), **UNTRACKED})
    stored = {**shared.to_dict(), "guarantee": config.guarantee, "folds": folds}
    RunFolder(out).write_json(out / "config.json", stored)
    oof = np.full((len(data.catalog), len(data.class_names)), np.nan)
    test_probs, fold_rows, members = [], [], []
    for k, mask in enumerate(masks):
        fold_data = _fold_data(data, pool, mask)
        fold_config = dataclasses.replace(shared, out=str(out / "folds" / f"fold{k}"))
        _train_fold(fold_config, fold_data, k, folds)
        checkpoint = RunFolder(Path(fold_config.out)).best
        members.append(checkpoint)
        val, test = _score_fold(checkpoint, fold_data, tta)
        oof[val.indices] = val.probs
        if test is not None:
            test_probs.append(test.probs)
        fold_rows.append(_fold_row(k, fold_config.out, val, test, resolved.positive_index))
    boot = resolved.bootstrap if n_bootstrap is None else n_bootstrap
    labels = data.catalog.labels[pool]
    stacker, oof_probs, prior = None, oof[pool], read_metadata(members[0]).get("model_prior")
    if how is Combine.STACK:
        stacker, oof_probs, prior = _stack(labels, oof[pool], masks, resolved.positive_index)
    oof_scores = Scores("oof", pool, labels, oof_probs)
    decision = choose_decision(
        resolved.threshold,
        oof_scores.labels,
        oof_scores.probs,
        class_names=resolved.class_names,
        positive=resolved.positive_index,
        train_counts=np.bincount(oof_scores.labels, minlength=len(data.class_names)).tolist(),
        chosen_on="oof",
        tta=tta,
        model_prior=prior,  # the same for every fold; the OOF prior once stacked
        ordinal=bool(read_metadata(members[0]).get("ordinal", False)),
        guarantee=config.guarantee,
    )
    calibration = fit_calibration(
        oof_scores.labels,
        oof_scores.probs,
        train_counts=np.bincount(oof_scores.labels, minlength=len(data.class_names)).tolist(),
        model_prior=prior,
        chosen_on="oof",
        method=config.calibration,
    )
    evaluate = functools.partial(
        evaluate_scores, n_bootstrap=boot, seed=resolved.seed, warnings=data.warnings,
        calibration=calibration,
    )  # fmt: skip
    oof_eval = evaluate(data, oof_scores, decision)
    oof_eval.result["folds"] = folds
    oof_eval.write_to(out / RunFolder.OOF_METRICS, out / RunFolder.OOF_PREDICTIONS)
    metrics: dict[str, Any] = {}
    if test_probs:
        idx = data.indices("test")
        mean = np.mean(test_probs, axis=0)  # average the members, then stack
        probs = mean if stacker is None else stacker.apply(mean)
        scores = Scores("test", idx, data.catalog.labels[idx], probs)
        ensemble = evaluate(data, scores, decision)
        ensemble.result["ensemble"] = {"members": folds, "combine": how.value}
        ensemble.write(RunFolder(out))
        metrics = ensemble.result
    atomic_write_text(out / RunFolder.FOLDS, _fold_csv(fold_rows))
    extra = {"folds": folds, "chosen_on": "oof", CALIBRATION_KEY: calibration.to_record()}
    names = data.class_names
    conformal = fit_conformal(oof_scores.labels, oof_scores.probs, names, chosen_on="oof")
    extra[CONFORMAL_KEY] = conformal.to_record()  # sets at any level, from the OOF cases
    write_ensemble(out, members, decision, extra, stacker=stacker)
    write_ensemble_report(out, data, ensemble if test_probs else None)
    track_cv(config, out, [Path(row["run"]) for row in fold_rows])
    return CVResult(out, folds, metrics, oof_eval.result, decision, fold_rows)


def _stack(
    labels: np.ndarray, oof: np.ndarray, masks: list[np.ndarray], positive: int | None
) -> tuple[Stacker, np.ndarray, list[float]]:
    """The stacker fit on all OOF cases; its cross-validated outputs over the same folds (what
    the decision is chosen on); and the prior they are calibrated to (the OOF class shares)."""
    pos = positive if oof.shape[1] == 2 else None
    stacker = fit_stacker(labels, oof, positive=pos)
    splits = [(np.flatnonzero(~mask), np.flatnonzero(mask)) for mask in masks]
    honest = cross_validated_outputs(labels, oof, splits, positive=pos)
    counts = np.bincount(labels, minlength=oof.shape[1])
    log.info(
        "cv: stacked on %d out-of-fold cases; decision on cross-validated outputs", len(labels)
    )
    return stacker, honest, (counts / counts.sum()).tolist()


def _fold_data(data: Prepared, pool: np.ndarray, held_out: np.ndarray) -> Prepared:
    """The data with train+val re-split: this fold's held-out part is val, the rest train."""
    splits = data.catalog.splits.copy()
    splits[pool] = np.where(held_out, "val", "train")
    catalog = data.catalog.replace(splits=splits)
    return dataclasses.replace(data, catalog=catalog, fingerprint=fingerprint(catalog))


def _train_fold(config: TrainConfig, data: Prepared, k: int, folds: int) -> None:
    from medbalance.workflows.training import train_and_evaluate

    state = run_state(config, data.fingerprint)
    log.info("cv: fold %d/%d (%s)", k + 1, folds, state)
    if state != "done":
        train_and_evaluate(config, resume=state == "resume", overwrite=state == "new", data=data)


def _score_fold(checkpoint: Path, data: Prepared, tta: int) -> tuple[Scores, Scores | None]:
    trained = load_trained(checkpoint, tta=tta)

    def score(split: str) -> Scores:
        return score_split(trained.model, data, split, trained.transform, trained.device)

    return score("val"), score("test") if len(data.indices("test")) else None


def _fold_row(k: int, run: str, val: Scores, test: Scores | None, positive: int) -> dict[str, Any]:
    from medbalance.evaluation.metrics import classification_metrics

    names = [str(i) for i in range(val.probs.shape[1])]
    row: dict[str, Any] = {"fold": k, "run": run, "n_val": len(val.labels)}
    for split, scores in (("val", val), ("test", test)):
        if scores is None:
            continue
        found = classification_metrics(scores.labels, scores.probs, names, positive=positive)
        row[f"{split}_auroc"] = found.get("auroc", math.nan)
        row[f"{split}_balanced_accuracy"] = found.get("balanced_accuracy", math.nan)
    return row


def _fold_csv(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


def write_ensemble_report(
    out: Path,
    data: Prepared | None = None,
    evaluation: Evaluation | None = None,
    model: Ensemble | Trained | None = None,
) -> None:
    """The report of a cv or ensemble folder's ensemble on test; given the data and the
    evaluation, with galleries (the ensemble's errors and confusions, Grad-CAM averaged over the
    members)."""
    if not (out / "metrics.json").is_file():
        return
    from medbalance.evaluation.ensemble import load_model
    from medbalance.evaluation.gallery import Galleries, pick_galleries
    from medbalance.reporting.report import write_report

    shown = Galleries()
    if data is not None and evaluation is not None:
        members = model if model is not None else load_model(out)
        shown = pick_galleries(members, data, evaluation.scores, evaluation.preds)
    path = write_report(
        out,
        gallery_errors=shown.errors,
        gallery_cam=shown.cams,
        gallery_confusions=shown.confusions,
    )
    log.info("ensemble report: %s", path)


def evaluate_cv(
    out: Path,
    *,
    data: str | None = None,
    policy: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    report: bool = True,
    tta: int | None = None,
    guarantee: float | None = None,
    conformal: float | None = None,
    prior: str | float | None = None,
    estimate_prior: bool = False,
) -> dict[str, Any]:
    """Evaluate a CV folder's ensemble on the test split of its own data or of other data.

    ``policy`` re-chooses the operating point on the folder's out-of-fold predictions (never on
    test) and stores it in ``ensemble.json``, so ``predict`` applies it too; ``guarantee``
    re-chooses a constraint (``policy`` or the stored one) with that confidence. ``conformal``
    (a level in (0, 1)) adds the conformal sets' coverage per class (``metrics.json``'s
    ``conformal``); a folder made before their scores were stored gets them from its tuning
    rows (``oof_predictions.csv``, or ``predictions_val.csv`` of an ensemble of runs), stored
    in ``ensemble.json`` only when ``policy`` or ``guarantee`` re-chooses the decision.
    ``prior`` and ``estimate_prior`` add ``site`` as for a run
    (:func:`~medbalance.workflows.training.evaluate_run`), from the ensemble's calibration.
    """
    from medbalance.evaluation.ensemble import Ensemble, load_model, score_cases, store_decision
    from medbalance.workflows.training import check_prior, prepare_for_model, site_block

    if conformal is not None:
        check_level(conformal)  # before anything is written
    ensemble = load_model(out, device=device)
    assert isinstance(ensemble, Ensemble)  # the folder holds ensemble.json
    check_prior(prior, ensemble.members[0])
    if tta is not None and tta != ensemble.decision.tta:
        raise ValueError(
            f"{out}'s operating point was chosen on out-of-fold predictions with "
            f"{ensemble.decision.tta} test-time view(s); run cv again with --tta {tta}"
        )
    site = ensemble.record.get("recalibration") or {}
    prepared = prepare_for_model(ensemble.members[0], data or site.get("site_data"))
    idx = prepared.indices("test")
    if not len(idx):
        raise ValueError(f"the data has no test split to evaluate {out}'s ensemble on")
    decision, scores = ensemble.decision, ensemble.conformal
    if policy is not None or guarantee is not None:
        scores = scores or _tuning_conformal(out, ensemble)  # stored with the decision
        decision = _rechoose_on_oof(out, policy or decision.policy, ensemble, guarantee)
        store_decision(out, ensemble, decision, {CONFORMAL_KEY: scores.to_record()})
    elif scores is None and conformal is not None:  # an older folder: for this evaluation
        scores = _tuning_conformal(out, ensemble)
    test = score_cases(ensemble, prepared, idx, "test")
    evaluation = evaluate_scores(
        prepared, test, decision, n_bootstrap=n_bootstrap, seed=seed,
        calibration=ensemble.calibration, conformal=scores, conformal_level=conformal,
    )  # fmt: skip
    evaluation.result["ensemble"] = ensemble.summary()
    if prior is not None or estimate_prior:
        evaluation.result["site"] = site_block(
            evaluation, ensemble.members[0].metadata, ensemble.calibration, prior,
            estimate_prior, n_bootstrap, seed,
        )  # fmt: skip
    evaluation.write(RunFolder(out))
    if report:
        write_ensemble_report(out, prepared, evaluation, ensemble)
    return evaluation.result


def _rechoose_on_oof(
    out: Path, policy: str, ensemble: Any, guarantee: float | None = None
) -> Decision:
    """The decision re-chosen on the cases the stored one was chosen on: the out-of-fold
    predictions of a cv folder, the val predictions of an ensemble of runs."""
    names = list(ensemble.class_names)
    on, _, rows = _tuning_rows(out, ensemble)
    labels = rows.labels
    counts = np.bincount(labels, minlength=len(names)).tolist()  # OOF: the training pool
    if on == "site":  # a site's sample tunes a model trained elsewhere: its counts stay
        counts = list(ensemble.members[0].metadata["train_counts"])
    return choose_decision(
        policy,
        labels,
        rows.probs,
        class_names=names,
        positive=ensemble.positive if len(names) == 2 else None,
        train_counts=counts,
        chosen_on=on,
        model_prior=_model_prior(ensemble, labels),
        ordinal=bool(ensemble.members[0].metadata.get("ordinal", False)),
        guarantee=guarantee,
    )


def _tuning_conformal(out: Path, ensemble: Any) -> ConformalScores:
    """Conformal scores from the cases the stored decision was chosen on (a folder made before
    they were stored): the rows of its out-of-fold, or val, predictions."""
    names = list(ensemble.class_names)
    on, file, rows = _tuning_rows(out, ensemble)
    log.info("conformal scores from %s, the folder's tuning cases", file.name)
    return fit_conformal(rows.labels, rows.probs, names, chosen_on=on)


def _tuning_rows(out: Path, ensemble: Any) -> tuple[str, Path, Predictions]:
    """Where the folder's decision was chosen (``chosen_on``), the file of those tuning rows
    (out-of-fold predictions of a cv folder, else ``predictions_val.csv``) and the rows."""
    on = str(ensemble.record.get("chosen_on", "oof"))
    folder = RunFolder(out)
    file = out / RunFolder.OOF_PREDICTIONS if on == "oof" else folder.predictions("val")
    return on, file, folder.read_predictions(list(ensemble.class_names), file=file)


def _model_prior(ensemble: Any, labels: np.ndarray) -> list[float] | None:
    """The prior of the ensemble's outputs: the members' own, or, once stacked, the OOF class
    shares the stacker was fit to."""
    if ensemble.stacker is None:
        prior = ensemble.members[0].metadata.get("model_prior")
        return None if prior is None else [float(v) for v in prior]
    counts = np.bincount(labels, minlength=len(ensemble.class_names))
    return (counts / counts.sum()).tolist()
