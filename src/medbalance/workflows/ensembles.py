"""Ensembles of finished train runs: ``medbalance ensemble RUN RUN ... --out DIR``.

The members are runs on the same data with the same val and test splits; their seeds, models and
remedies may differ (a seed ensemble, or the remedies of a ``compare``). The mean of their
probabilities on val chooses the decision (the first run's policy, or ``policy``), and the
ensemble is evaluated once on test at it. ``DIR`` is then an ensemble folder, like a cv folder:
``ensemble.json`` (the members, stored as paths relative to ``DIR``, and the decision),
``metrics.json`` / ``predictions.csv`` (test), ``metrics_val.json`` / ``predictions_val.csv``
(the val cases the decision was chosen on; ``evaluate DIR --decision P`` re-chooses on them),
``config.json`` and ``report.html``. ``evaluate``, ``predict``, ``report`` and ``export`` take it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.locks import is_lock_file, locks_folder
from medbalance.core.run_folder import RunFolder, read_json_object
from medbalance.data.prepared import Prepared, fingerprint
from medbalance.evaluation.calibration import METADATA_KEY as CALIBRATION_KEY
from medbalance.evaluation.calibration import calibration_method, fit_calibration
from medbalance.evaluation.conformal import METADATA_KEY as CONFORMAL_KEY
from medbalance.evaluation.conformal import fit_conformal
from medbalance.evaluation.decision import Decision
from medbalance.evaluation.ensemble import ENSEMBLE_FILE, MEMBER_KEYS, write_ensemble
from medbalance.evaluation.evaluate import evaluate_scores
from medbalance.evaluation.inference import Trained, load_trained
from medbalance.evaluation.scoring import Scores, score_split
from medbalance.workflows.cv import write_ensemble_report
from medbalance.workflows.training import choose_on_val, prepare_for_model

__all__ = ["check_new_folder", "ensemble_runs"]

log = logging.getLogger(__name__)


@locks_folder("out")
def ensemble_runs(
    runs: Sequence[Path],
    out: Path,
    *,
    policy: str | None = None,
    tta: int = 1,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    report: bool = True,
) -> dict[str, Any]:
    """Make ``out`` the ensemble of ``runs``: decision on the mean val probabilities, one test
    evaluation.

    Args:
        runs: two or more run folders (or their ``best.safetensors``).
        out: the ensemble folder; one that already holds an ensemble is refused.
        policy: the decision policy or rule (default: the first run's).
        tta: test-time views for every member (stored with the decision, for ``predict``).
        n_bootstrap: resamples for the 95% CIs.
        seed: seed of the bootstrap.
        device: where the members run.
        report: also write ``report.html``.

    Returns:
        The content of ``metrics.json``.

    Raises:
        ValueError: fewer than two runs, a finished ensemble in ``out``, or members that do not
            share their classes, image size, or val and test images.
    """
    out = Path(out)
    if len(runs) < 2:
        raise ValueError("an ensemble needs two or more runs; give their folders")
    check_new_folder(out)
    checkpoints = [RunFolder(Path(r)).best if Path(r).is_dir() else Path(r) for r in runs]
    _check_distinct(checkpoints)
    members = [load_trained(c, device=device, tta=tta) for c in checkpoints]
    data = [prepare_for_model(m, None) for m in members]
    _check_members(checkpoints, members, data)
    val, test = _mean_scores(members, data[0], "val"), _mean_scores(members, data[0], "test")
    decision = _choose(members, val, policy or members[0].decision.policy, tta)
    out.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out)
    first = members[0].metadata
    calibration = fit_calibration(
        val.labels, val.probs, train_counts=first["train_counts"],
        model_prior=first.get("model_prior"), method=calibration_method(first),
    )  # fmt: skip
    evaluate = functools.partial(
        evaluate_scores, n_bootstrap=n_bootstrap, seed=seed, calibration=calibration
    )
    tuning = evaluate(data[0], val, decision)
    tuning.write_to(folder.metrics("val"), folder.predictions("val"))
    evaluation = evaluate(data[0], test, decision)
    evaluation.result["ensemble"] = {"members": len(members), "combine": "mean"}
    evaluation.write(folder)
    folder.write_json(
        folder.config, {**members[0].metadata["config"], "runs": list(map(str, runs))}
    )
    extra = {"runs": len(runs), "chosen_on": "val", CALIBRATION_KEY: calibration.to_record()}
    extra[CONFORMAL_KEY] = fit_conformal(val.labels, val.probs, members[0].class_names).to_record()
    write_ensemble(out, checkpoints, decision, extra)
    if report:
        write_ensemble_report(out, data[0], evaluation)
    log.info("ensemble of %d runs: %s", len(runs), out)
    return evaluation.result


def check_new_folder(out: Path, *, marker: str = "runs", what: str = "an ensemble") -> None:
    """``out`` is new, empty, or holds ``what`` that was interrupted before it finished (its
    ``config.json`` has ``marker``): never a finished ensemble, a run or anything else of the
    user's."""
    if (out / ENSEMBLE_FILE).exists():
        raise ValueError(f"{out} already holds {what}; choose another --out (nothing changed)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new folder for {what} (nothing changed)")
    if not out.exists() or all(is_lock_file(p) for p in out.iterdir()):
        return
    config = out / RunFolder.CONFIG
    interrupted = config.is_file() and marker in read_json_object(config)
    if not interrupted:
        raise ValueError(
            f"{out} is not empty (it may hold a run); give a new --out for {what} (nothing changed)"
        )


def _check_distinct(checkpoints: list[Path]) -> None:
    """Each run once: the same checkpoint twice (or once through a link) is one member."""
    seen: dict[Path, Path] = {}
    for checkpoint in checkpoints:
        real = checkpoint.resolve()
        if real in seen:
            raise ValueError(
                f"{checkpoint} and {seen[real]} are the same run; an ensemble of one run twice "
                "is that run: give each run once"
            )
        seen[real] = checkpoint


def _check_members(checkpoints: list[Path], members: list[Trained], data: list[Prepared]) -> None:
    """One task: the same classes, image size and val and test images for every member."""
    first, first_data = members[0], data[0]
    for checkpoint, member, prepared in zip(checkpoints[1:], members[1:], data[1:], strict=True):
        for key in MEMBER_KEYS:
            if member.metadata[key] != first.metadata[key]:
                raise ValueError(
                    f"{checkpoint}: {key} {member.metadata[key]!r} differs from "
                    f"{checkpoints[0]}'s {first.metadata[key]!r}; an ensemble's members solve "
                    "one task at one image size"
                )
        for split in ("val", "test"):
            if _origins(prepared, split) != _origins(first_data, split):
                raise ValueError(
                    f"{checkpoint} has other {split} images than {checkpoints[0]}; the members "
                    "of an ensemble need one val and one test split: train them on the same "
                    "data with the same split options (--resplit-val draws with --seed), or "
                    "use medbalance cv"
                )
    if not len(first_data.indices("val")) or not len(first_data.indices("test")):
        raise ValueError(f"{checkpoints[0]}'s data needs a val and a test split for an ensemble")


def _origins(data: Prepared, split: str) -> str:
    """What a split holds: the data fingerprint of its items (origins, labels, pixels)."""
    catalog = data.catalog
    return fingerprint(catalog.subset(catalog.splits == split))


def _mean_scores(members: list[Trained], data: Prepared, split: str) -> Scores:
    scored = [score_split(m.model, data, split, m.transform, m.device) for m in members]
    probs = np.mean([s.probs for s in scored], axis=0)
    return Scores(split, scored[0].indices, scored[0].labels, probs)


def _choose(members: list[Trained], val: Scores, policy: str, tta: int) -> Decision:
    """The decision on the mean val probabilities; their prior is the mean of the members'."""
    priors = [m.metadata.get("model_prior") for m in members]
    known = [np.asarray(p, dtype=np.float64) for p in priors if p is not None]
    prior = np.mean(known, axis=0).tolist() if len(known) == len(priors) else None
    return choose_on_val(members[0], val, policy, tta=tta, model_prior=prior)
