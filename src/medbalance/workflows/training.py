"""The run workflow: train -> decide -> evaluate -> report.

:func:`train_and_evaluate` is what ``medbalance train`` does: ``fit`` trains and leaves the best
checkpoint's model and its val/test probabilities; this module then chooses the decision on the
validation probabilities, writes the checkpoint once with it, evaluates the test split (val when
there is none) and draws the report. :func:`evaluate_run` is ``medbalance evaluate``: the same
last three steps for a finished run folder, on its own data or on other data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medbalance.core.checkpoint import read_metadata, save_checkpoint
from medbalance.core.distributed import barrier
from medbalance.core.run_folder import RunFolder
from medbalance.data.prepared import Prepared
from medbalance.evaluation.calibration import METADATA_KEY as CALIBRATION_KEY
from medbalance.evaluation.calibration import Calibration, calibration_method, fit_calibration
from medbalance.evaluation.conformal import METADATA_KEY as CONFORMAL_KEY
from medbalance.evaluation.conformal import check_level, fit_conformal, missing_scores
from medbalance.evaluation.decision import AUTO_POLICY, METADATA_KEY, Decision, choose_decision
from medbalance.evaluation.evaluate import Evaluation, evaluate_scores
from medbalance.evaluation.inference import Trained, load_trained
from medbalance.evaluation.scoring import Scores, score_split
from medbalance.models.tta import unwrap
from medbalance.training.config import TrainConfig
from medbalance.training.engine import RunResult, distributed, fit
from medbalance.training.trainer import Trainer
from medbalance.workflows.tracking import track_run

__all__ = [
    "DEFAULT_POLICY", "check_prior", "choose_on_val", "evaluate_run", "prepare_for_model",
    "site_block", "train_and_evaluate",
]  # fmt: skip

log = logging.getLogger(__name__)
DEFAULT_POLICY = AUTO_POLICY


def train_and_evaluate(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data: Prepared | None = None,
    stop_after_epoch: int | None = None,
) -> RunResult:
    """Train (:func:`~medbalance.training.engine.fit`), then choose the decision on val, store
    it in ``best.safetensors``, evaluate and report; ``result.evaluation`` is ``metrics.json``.

    Args:
        config: the run's configuration (``None`` fields are chosen for the data).
        resume: continue from ``RUN_DIR/last.pt``.
        overwrite: replace the run a non-empty ``RUN_DIR`` holds (refused otherwise).
        data: already prepared data (tests and ``compare`` reuse it).
        stop_after_epoch: stop (as if killed) after this epoch; for tests of ``resume``.
    """
    with distributed(config.device) as dist, _locked(Path(config.out), dist[0].is_main):
        result = fit(
            config,
            resume=resume,
            overwrite=overwrite,
            data=data,
            stop_after_epoch=stop_after_epoch,
            dist=dist,
        )
        if result.finished and result.is_main and result.trainer is not None:
            result.evaluation = _decide_and_evaluate(result, result.trainer)
            track_run(result.config, result.run_dir)
        barrier(dist[0])  # every rank returns once the run folder is complete
    return result


def _locked(folder: Path, main: bool) -> contextlib.AbstractContextManager[None]:
    """The run folder's lock for the whole command (train, decide, evaluate, report)."""
    from medbalance.core.locks import folder_lock

    return folder_lock(folder) if main else contextlib.nullcontext()


def _decide_and_evaluate(result: RunResult, trainer: Trainer) -> dict[str, Any]:
    """Choose the decision on val, write it into the checkpoint once, evaluate and report."""
    resolved = result.config
    folder = trainer.folder
    decision = choose_decision(
        resolved.threshold,
        result.scores["val"].labels,
        result.scores["val"].probs,
        class_names=resolved.class_names,
        positive=resolved.positive_index,
        train_counts=trainer.data.train_counts(),
        model_prior=trainer.best_meta.get("model_prior") if trainer.best_meta else None,
        ordinal=bool(trainer.best_meta.get("ordinal", False)) if trainer.best_meta else False,
        guarantee=resolved.guarantee,
    )
    calibration = _fit_calibration(
        result.scores["val"], trainer.data.train_counts(), trainer.best_meta
    )
    val = result.scores["val"]  # conformal sets at any level later rest on these scores
    conformal = fit_conformal(val.labels, val.probs, resolved.class_names)
    metadata = read_metadata(folder.best)
    metadata[METADATA_KEY] = decision.to_record()
    metadata[CALIBRATION_KEY] = calibration.to_record()
    metadata[CONFORMAL_KEY] = conformal.to_record()
    save_checkpoint(folder.best, trainer.model, metadata)  # the one write with the decision
    trained = Trained(trainer.model, trainer.transform, metadata, trainer.device)
    split = "test" if "test" in result.scores else "val"
    evaluation = evaluate_scores(
        trainer.data,
        result.scores[split],
        decision,
        n_bootstrap=resolved.bootstrap,
        seed=resolved.seed,
        checkpoint_epoch=metadata.get("epoch"),
        warnings=trainer.data.warnings,
        run_id=metadata.get("run_id"),
        calibration=calibration,
    )
    _finish(folder, trained, trainer.data, evaluation, report=True)
    return evaluation.result


def _fit_calibration(
    val: Scores, train_counts: Sequence[int], metadata: Mapping[str, Any] | None
) -> Calibration:
    """The calibration of a run's probabilities, fitted on its val split with the decision, by
    the run's method."""
    prior = metadata.get("model_prior") if metadata else None
    return fit_calibration(
        val.labels, val.probs, train_counts=train_counts, model_prior=prior,
        method=calibration_method(metadata or {}),
    )  # fmt: skip


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
    tta: int | None = None,
    guarantee: float | None = None,
    prior: str | float | None = None,
    estimate_prior: bool = False,
    conformal: float | None = None,
) -> dict[str, Any]:
    """Evaluate ``RUN_DIR/best.safetensors`` on ``split``; write metrics, predictions, report.

    Args:
        run_dir: a training run folder.
        data: data to evaluate on (default: the run's own data with its splits).
        split: the split to report (``test`` by default; ``val`` allowed).
        policy: choose a new decision on validation data with this policy (default: the one
            stored in the checkpoint at the end of training). Chosen on the run's own val
            split, it replaces the run's decision, and every file of the run follows it: the
            checkpoint (so predict and export apply it), ``metrics.json`` and
            ``predictions.csv`` (the test split is evaluated again when ``split`` is val) and
            ``report.html`` (redrawn even with ``report=False``). Chosen on other data's val
            split, it is used for this evaluation only and the run's files keep their own.
        n_bootstrap: bootstrap resamples for the 95% confidence intervals.
        seed: seed of the bootstrap.
        device: where the model runs.
        report: also write ``report.html`` (always redrawn when the run's decision changes).
        tta: average over this many test-time augmentation views; the decision is re-chosen
            on val with them (and stored with them, for predict). Default: the stored number.
        guarantee: re-choose a ``sensitivity>=X`` / ``specificity>=X`` policy (``policy``, or
            the stored one) so that the rate's lower confidence bound at this level meets ``X``.
            Default: none with a new ``policy``, else the stored decision's.
        prior: the class prior at the place of use: a prevalence (two classes) or
            ``a=0.7,b=0.2,c=0.1``; ``metrics.json``'s ``site`` gives each class's PPV (and the
            NPV) at that prior, with CIs from the evaluated cases' call rates.
        estimate_prior: estimate the class prior of the evaluated images from their calibrated
            probabilities (EM, bootstrap CI), beside their true and the training prior.
        conformal: a level in (0, 1), e.g. 0.9: ``metrics.json``'s ``conformal`` gives each
            class's coverage and mean set size of the class-conditional conformal sets at it,
            and the refer rate, with CIs. The sets rest on the tuning scores stored with the
            decision (re-fitted and stored with it when it is re-chosen). A run stored before
            they were kept gets them from its own val split for this evaluation (not stored);
            on other data such a run is refused (re-choose with ``policy`` first).

    Returns:
        The content of ``metrics.json`` (``metrics_val.json`` for ``split="val"``).
    """
    from medbalance.evaluation.ensemble import ENSEMBLE_FILE

    level = None if conformal is None else check_level(conformal)
    if (Path(run_dir) / ENSEMBLE_FILE).is_file():
        from medbalance.workflows.cv import evaluate_cv

        if split != "test":
            raise ValueError(
                f"{run_dir} is an ensemble folder: its ensemble is evaluated on test only"
            )
        return evaluate_cv(
            Path(run_dir), data=data, policy=policy, n_bootstrap=n_bootstrap, seed=seed,
            device=device, report=report, tta=tta, guarantee=guarantee, conformal=level,
            prior=prior, estimate_prior=estimate_prior,
        )  # fmt: skip
    folder = RunFolder(Path(run_dir))
    trained = load_trained(folder.best, device=device, tta=tta)
    new_tta = tta is not None and tta != trained.decision.tta
    rechosen = policy is not None or guarantee is not None or new_tta
    rechosen |= trained.metadata.get(METADATA_KEY) is None  # the decision is chosen on val
    if level is not None and trained.conformal is None and data is not None and not rechosen:
        raise missing_scores(folder.best)  # checked before anything is scored or written
    check_prior(prior, trained)  # before anything is scored or written
    prepared = prepare_for_model(trained, data)
    if not len(prepared.indices(split)):
        raise ValueError(f"the data has no {split!r} split; choose --split val or test")
    meta = trained.metadata
    warnings = list(meta.get("data_warnings") or []) if data is None else []
    if data is None and prepared.fingerprint != meta.get("data_fingerprint"):
        warnings.append("the data changed since training (fingerprint differs)")
    decision, calibration, scores = trained.decision, trained.calibration, trained.conformal
    stored = False  # whether the run's own decision changed: then every file of it follows
    if rechosen:
        if policy is None and guarantee is None:  # re-chosen as stored, with new views
            guarantee = decision.guarantee
        policy = policy or (decision.policy if meta.get(METADATA_KEY) else DEFAULT_POLICY)
        val = _score(trained, prepared, "val")
        decision = choose_on_val(trained, val, policy, tta=tta or decision.tta, guarantee=guarantee)
        calibration = _fit_calibration(val, meta["train_counts"], meta)
        scores = fit_conformal(val.labels, val.probs, trained.class_names)
        if data is None:  # re-chosen on the run's own val split: predict and export use it too
            stored = decision.to_record() != meta.get(METADATA_KEY)
            stored |= calibration.to_record() != meta.get(CALIBRATION_KEY)
            stored |= scores.to_record() != meta.get(CONFORMAL_KEY)
            meta = {**meta, METADATA_KEY: decision.to_record()}
            meta[CALIBRATION_KEY] = calibration.to_record()
            meta[CONFORMAL_KEY] = scores.to_record()
            save_checkpoint(folder.best, unwrap(trained.model), meta)
    elif level is not None and scores is None:  # an older run, on its own data: its own val
        val = _score(trained, prepared, "val")
        scores = fit_conformal(val.labels, val.probs, trained.class_names)
        log.info("conformal scores from the run's val split, for this evaluation only")
    splits = [split]
    if stored and split != "test" and len(prepared.indices("test")):
        splits.append("test")  # metrics.json and the report follow the stored decision
    if stored and not report:
        log.info("the run's decision changed: report.html is redrawn with it")
    results = {}
    for name in splits:
        evaluation = evaluate_scores(
            prepared,
            _score(trained, prepared, name),
            decision,
            n_bootstrap=n_bootstrap,
            seed=seed,
            checkpoint_epoch=meta.get("epoch"),
            warnings=warnings,
            run_id=meta.get("run_id"),
            calibration=calibration,
            conformal=scores,
            conformal_level=level,
        )
        if prior is not None or estimate_prior:
            evaluation.result["site"] = site_block(
                evaluation, meta, calibration, prior, estimate_prior, n_bootstrap, seed
            )
        _finish(folder, trained, prepared, evaluation, report=report or stored)
        results[name] = evaluation.result
    return results[split]


def check_prior(prior: str | float | None, trained: Trained) -> None:
    """A site prior given for ``trained``'s classes reads (:func:`parse_prior`'s errors)."""
    if prior is None:
        return
    from medbalance.evaluation.prevalence import parse_prior

    positive = trained.positive if len(trained.class_names) == 2 else None
    parse_prior(prior, trained.class_names, positive)


def site_block(
    evaluation: Evaluation,
    meta: Mapping[str, Any],
    calibration: Calibration | None,
    prior: str | float | None,
    estimate: bool,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """``metrics.json``'s ``site`` (:func:`~medbalance.evaluation.prevalence.site_report`)."""
    from medbalance.evaluation.prevalence import site_report

    scores, names = evaluation.scores, list(meta["class_names"])
    corrected = (calibration.for_prevalence or calibration) if calibration is not None else None
    positive = names.index(meta["positive_class"]) if len(names) == 2 else None
    return site_report(
        scores.labels, scores.probs, evaluation.preds, names,
        train_counts=meta["train_counts"], positive=positive,
        calibrated=corrected.apply(scores.probs) if corrected is not None else None,
        calibrated_prior=corrected.tuning_prior if corrected is not None else None,
        prior=prior, estimate=estimate, n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip


def prepare_for_model(trained: Trained, data: str | None) -> Prepared:
    """The run's own data with its splits, or other data, presized as the model was trained."""
    from medbalance.training.prepare import prepare_run

    stored = dict(trained.metadata["config"])
    known = {k: v for k, v in stored.items() if k in TrainConfig.__dataclass_fields__}
    known.update(presize=trained.presize, size=int(trained.metadata["image_size"]))
    known.update(guarantee=None)  # the decision's, if any, is the checkpoint's, not the data's
    if data is None:  # the run's own data, found from any working folder
        known.update(data=trained.metadata.get("data_path") or stored["data"])
    else:  # other data: its own splits, no patient options of the training data
        known.update(data=data, resplit_val=None, group_pattern=None, group_column=None)
    config = TrainConfig(**known)
    return prepare_run(config, device=trained.device, for_training=data is None).data


def _score(trained: Trained, data: Prepared, split: str) -> Scores:
    return score_split(trained.model, data, split, trained.transform, trained.device)


def choose_on_val(
    trained: Trained,
    val: Scores,
    policy: str,
    *,
    tta: int = 1,
    model_prior: Sequence[float] | None = None,
    guarantee: float | None = None,
    chosen_on: str = "val",
) -> Decision:
    """The decision for ``trained``'s outputs (or an ensemble's, led by it) chosen by ``policy``
    on ``val`` (with ``guarantee``: its lower confidence bound meets a constraint);
    ``model_prior`` replaces the prior stored in ``trained``; ``chosen_on`` names the tuning
    cases (``site`` for a site's sample)."""
    return choose_decision(
        policy,
        val.labels,
        val.probs,
        class_names=trained.class_names,
        positive=trained.positive if len(trained.class_names) == 2 else None,
        train_counts=trained.metadata["train_counts"],
        chosen_on=chosen_on,
        tta=tta,
        model_prior=trained.metadata.get("model_prior") if model_prior is None else model_prior,
        ordinal=bool(trained.metadata.get("ordinal", False)),
        guarantee=guarantee,
    )


def _finish(
    folder: RunFolder, trained: Trained, data: Prepared, evaluation: Evaluation, *, report: bool
) -> None:
    """Write the evaluation and, for the test split (or val when there is no test), the report
    with its galleries."""
    evaluation.write(folder)
    split = evaluation.result["split"]
    if report and (split == "test" or not len(data.indices("test"))):
        from medbalance.evaluation.gallery import pick_galleries
        from medbalance.reporting.report import write_report

        shown = pick_galleries(trained, data, evaluation.scores, evaluation.preds)
        path = write_report(
            folder.path,
            gallery_errors=shown.errors,
            gallery_cam=shown.cams,
            gallery_confusions=shown.confusions,
        )
        log.info("report: %s", path)
