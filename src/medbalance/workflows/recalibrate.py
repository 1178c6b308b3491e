"""Recalibrate a model for another site: ``medbalance recalibrate RUN LOCAL_DATA --out NEW_RUN``.

A model trained at one hospital is used at another, where the disease is rarer or commoner and
the images differ a little. A small labelled sample from the new site re-fits what was fitted on
the training site's validation cases: the calibration (prior correction and temperature), the
operating point (the run's policy, or a new one, with its guarantee) and the conformal scores.
The model's weights are shared, not copied: ``NEW_RUN`` is an ensemble folder whose
``ensemble.json`` points at the run's checkpoint(s) (pinned by run id, so a retrained run is
refused) and holds the site's decision, ``chosen_on: site``.

The sample is split as medbalance splits any data (its own ``train``/``val``/``test`` when it has
them, else stratified, patient- and duplicate-grouped): every case outside its test split tunes
(``metrics_val.json`` and ``predictions_val.csv``, which ``evaluate NEW_RUN --threshold P``
re-chooses on), and its test split checks the new operating point once (``metrics.json``, with
CIs resting on those cases). ``metrics.json``'s ``recalibration`` and the report say which site
each part comes from. ``evaluate``, ``predict``, ``report`` and ``export`` take ``NEW_RUN``;
``evaluate NEW_RUN`` without data evaluates the site sample's test split again.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.locks import locks_folder
from medbalance.core.run_folder import RunFolder
from medbalance.data.prepared import Prepared
from medbalance.evaluation.calibration import METADATA_KEY as CALIBRATION_KEY
from medbalance.evaluation.calibration import METHODS, calibration_method, fit_calibration
from medbalance.evaluation.conformal import METADATA_KEY as CONFORMAL_KEY
from medbalance.evaluation.conformal import fit_conformal
from medbalance.evaluation.decision import Decision
from medbalance.evaluation.ensemble import Ensemble, load_model, score_cases, write_ensemble
from medbalance.evaluation.evaluate import evaluate_scores
from medbalance.evaluation.inference import Trained
from medbalance.evaluation.scoring import Scores
from medbalance.workflows.cv import write_ensemble_report
from medbalance.workflows.ensembles import check_new_folder
from medbalance.workflows.training import choose_on_val, prepare_for_model

__all__ = ["RECALIBRATION_KEY", "SITE", "recalibrate_run"]

log = logging.getLogger(__name__)
SITE = "site"  # chosen_on of what a site's sample fitted
RECALIBRATION_KEY = "recalibration"  # in ensemble.json, config.json and metrics.json


@locks_folder("out")
def recalibrate_run(
    run: Path,
    data: str,
    out: Path,
    *,
    policy: str | None = None,
    guarantee: float | None = None,
    calibration: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    report: bool = True,
) -> dict[str, Any]:
    """Make ``out`` the model of ``run`` with calibration, decision and conformal scores fitted
    on the labelled site sample ``data``; evaluate it once on the sample's test split.

    Args:
        run: a run folder, its ``best.safetensors``, or a cv or ensemble folder.
        data: the site's labelled sample (the run's classes; a folder, CSV or npz).
        out: the new folder; it must be new or empty (an interrupted recalibration is redone).
        policy: the operating point's policy (default: the run's, with its guarantee).
        guarantee: the confidence of a ``sensitivity>=X`` / ``specificity>=X`` bound on the
            site's tuning cases (default: the run's, unless ``policy`` is given).
        calibration: ``temperature``, ``vector``, ``bcts`` or ``isotonic`` (default: the
            run's method).
        n_bootstrap: resamples for the 95% CIs.
        seed: seed of the bootstrap.
        device: where the model runs.
        report: also write ``report.html``.

    Returns:
        The content of ``out/metrics.json``.

    Raises:
        ValueError: ``out`` holds something else, the sample's classes differ from the run's,
            or the sample has no tuning or no test cases (or too few for a guarantee).
    """
    run, out = Path(run), Path(out)
    if calibration is not None and calibration not in METHODS:
        raise ValueError(f"--calibration must be one of {', '.join(METHODS)}, got {calibration!r}")
    if out.resolve() == (run if run.is_dir() else run.parent).resolve():
        raise ValueError(f"--out {out} is the run itself; give a new folder (nothing changed)")
    check_new_folder(out, marker=RECALIBRATION_KEY, what="a recalibrated model")
    model = load_model(run, device=device)
    lead = model.members[0] if isinstance(model, Ensemble) else model
    prepared = prepare_for_model(lead, data)
    _check_sample(prepared, model.class_names, data)
    tuning, test = _score(model, prepared, "val", tuning=True), _score(model, prepared, "test")
    source = model.decision
    if policy is None and guarantee is None:
        guarantee = source.guarantee
    decision = choose_on_val(
        lead,
        tuning,
        policy or source.policy,
        tta=source.tta,
        guarantee=guarantee,
        model_prior=source.model_prior,
        chosen_on=SITE,
    )  # the model's training counts and output prior stay (a stacked one's: its OOF shares)
    prior = decision.model_prior or lead.metadata.get("model_prior")
    calibrated = fit_calibration(
        tuning.labels, tuning.probs, train_counts=lead.metadata["train_counts"],
        model_prior=prior, chosen_on=SITE, method=calibration or calibration_method(lead.metadata),
    )  # fmt: skip
    conformal = fit_conformal(tuning.labels, tuning.probs, model.class_names, chosen_on=SITE)
    record = _provenance(run, data, model, lead, prepared, source, decision)
    members = _members(run, model)
    out.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out)
    folder.write_json(folder.config, {**lead.metadata["config"], RECALIBRATION_KEY: record})
    evaluate = functools.partial(
        evaluate_scores, prepared, decision=decision, n_bootstrap=n_bootstrap, seed=seed,
        calibration=calibrated, conformal=conformal, warnings=_warnings(tuning),
    )  # fmt: skip
    evaluate(scores=tuning).write(folder)
    evaluation = evaluate(scores=test)
    evaluation.result[RECALIBRATION_KEY] = record
    evaluation.result["ensemble"] = (  # a stacked cv folder stays stacked
        model.summary() if isinstance(model, Ensemble) else {"members": 1, "combine": "mean"}
    )
    evaluation.write(folder)
    extra = {
        "chosen_on": SITE,
        CALIBRATION_KEY: calibrated.to_record(),
        CONFORMAL_KEY: conformal.to_record(),
        RECALIBRATION_KEY: record,
    }
    stacker = model.stacker if isinstance(model, Ensemble) else None
    write_ensemble(out, members, decision, extra, stacker=stacker)
    if report:
        write_ensemble_report(out, prepared, evaluation, model)
    log.info("recalibrated for %s: %s", data, out)
    return evaluation.result


def _check_sample(prepared: Prepared, names: list[str], data: str) -> None:
    """The site's sample has the run's classes, cases of every class to tune on and a test
    split to check on; checked before anything is written."""
    if list(prepared.class_names) != list(names):
        raise ValueError(
            f"{data}: its classes {list(prepared.class_names)} differ from the model's {names}; "
            "give the site's sample in the same class folders (or labels)"
        )
    counts = _class_counts(prepared, ("train", "val"))
    missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if missing:
        raise ValueError(
            f"{data}: no case of {', '.join(missing)} outside its test split to tune on; every "
            "class needs labelled cases from the site (add some, or give the sample without "
            "splits and medbalance splits it)"
        )
    if not len(prepared.indices("test")):
        raise ValueError(
            f"{data}: no test split to check the new operating point on; give the sample without "
            "splits (medbalance keeps a stratified 15% to check) or with a test split"
        )


def _class_counts(prepared: Prepared, splits: tuple[str, ...]) -> np.ndarray:
    return np.sum([prepared.catalog.class_counts(s) for s in splits], axis=0)


def _score(
    model: Trained | Ensemble, data: Prepared, split: str, *, tuning: bool = False
) -> Scores:
    """The model's probabilities on a split of the sample; ``tuning``: every case outside test
    (train and val alike: none of them trained this model), named ``val``."""
    splits = ("train", "val") if tuning else (split,)
    idx = np.concatenate([data.indices(s) for s in splits]).astype(np.int64)
    return score_cases(model, data, idx, split)


def _members(run: Path, model: Trained | Ensemble) -> list[Path]:
    """The checkpoints the new folder points at: the run's, or its ensemble's members."""
    if isinstance(model, Ensemble):
        return [run / str(m) for m in model.record["members"]]
    return [RunFolder(run).best if run.is_dir() else run]


def _provenance(
    run: Path,
    data: str,
    model: Trained | Ensemble,
    lead: Trained,
    prepared: Prepared,
    source: Decision,
    decision: Decision,
) -> dict[str, Any]:
    """Which site each part comes from: the weights (and the training data), the tuning and
    the check cases, the operating point before and after."""
    names = list(model.class_names)

    def counts(splits: tuple[str, ...]) -> dict[str, int]:
        total = _class_counts(prepared, splits)
        return {n: int(c) for n, c in zip(names, total, strict=True)}

    before, after = source.to_record(), decision.to_record()
    return {
        "from": str(run.resolve()),
        "trained_on": str(lead.metadata.get("data_path") or lead.metadata["config"]["data"]),
        "site_data": str(Path(data).resolve()) if Path(data).exists() else str(data),
        "tuning_cases": counts(("train", "val")),
        "check_cases": counts(("test",)),
        "decision_before": {k: before.get(k) for k in ("policy", "value", "chosen_on")},
        "decision_after": {k: after.get(k) for k in ("policy", "value", "chosen_on")},
    }


def _warnings(tuning: Scores) -> list[str]:
    """The one warning a small sample earns: few tuning cases of a class."""
    counts = np.bincount(tuning.labels, minlength=tuning.probs.shape[1])
    few = int(counts.min()) if len(counts) else 0
    if few >= 20:
        return []
    return [
        f"the site's sample holds only {few} tuning case(s) of its rarest class: the "
        "operating point and the calibration rest on them (wide CIs); add cases where you can"
    ]
