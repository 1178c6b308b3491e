"""The public Python API: the command line's jobs as functions, for notebooks and scripts.

::

    import medbalance as mb

    insp = mb.inspect("data/")                      # counts, warnings; .to_dict()
    run = mb.train("data/", out="runs/a", epochs=10, sampler="oversample", loss="ce")
    run.metrics                                     # RUN_DIR/metrics.json
    run.decision                                    # the operating point (a Decision)
    run.predict(["x.png", "more/"])                 # one Prediction per image
    run = mb.load_run("runs/a"); mb.evaluate(run, "other_site/")
    cmp = mb.compare("data/", remedies=["baseline", "oversample"], seeds=2, out="cmp/")

Every function takes the command's options as keywords, with the same names and defaults, and
raises ``ValueError`` (``ConfigError`` for configuration) or ``FileNotFoundError`` where the
command would print its one-line error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medbalance.core.feedback import speaking
from medbalance.core.run_folder import RunFolder
from medbalance.training.config import ConfigError, load_config

if TYPE_CHECKING:
    from medbalance.comparison.report import Comparison
    from medbalance.data.inspection import Inspection
    from medbalance.evaluation.decision import Decision
    from medbalance.evaluation.predict import Prediction
    from medbalance.workflows.cv import CVResult

__all__ = [
    "Run", "compare", "cv", "ensemble", "estimate_prevalence", "evaluate", "inspect", "load_run",
    "predict", "recalibrate", "train",
]  # fmt: skip

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Run:
    """A trained run folder. Reads its files when asked, so it always shows what is on disk."""

    path: Path

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def metrics(self) -> dict[str, Any]:
        """The test evaluation: the same dict as ``RUN_DIR/metrics.json``."""
        return self.folder.read_metrics()

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (``config.json``)."""
        return self.folder.read_config()

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per epoch (``history.csv``)."""
        return self.folder.read_history()

    @property
    def decision(self) -> Decision:
        """The operating point stored in the checkpoint, chosen on validation data."""
        from medbalance.evaluation.decision import read_decision

        return read_decision(self.folder.read_metadata())

    @property
    def checkpoint(self) -> Path:
        return self.folder.best

    def predict(
        self,
        inputs: Sequence[PathLike] | PathLike,
        *,
        batch_size: int = 64,
        device: str = "auto",
        conformal: float | None = None,
    ) -> list[Prediction]:
        """Score images, folders, CSV manifests or ``.npz`` files (see :func:`predict`)."""
        return predict(self, inputs, batch_size=batch_size, device=device, conformal=conformal)

    def evaluate(self, data: PathLike | None = None, **options: Any) -> dict[str, Any]:
        """Evaluate again, on the run's data or other data (see :func:`evaluate`)."""
        return evaluate(self, data, **options)

    def report(self) -> Path:
        """Redraw ``report.html`` from the run's files; returns its path."""
        from medbalance.reporting.report import report_from_run

        return report_from_run(self.path)

    def export(self, format: str = "onnx", out: PathLike | None = None) -> tuple[Path, Path]:
        """Write the model as ONNX or TorchScript with its JSON sidecar; returns both paths."""
        from medbalance.evaluation.export import export_model

        return export_model(self.checkpoint, format, Path(out) if out is not None else None)  # type: ignore[arg-type]


def load_run(path: PathLike) -> Run:
    """The run in ``path``.

    Raises:
        FileNotFoundError: no ``best.safetensors`` there (not a trained run).
    """
    run = Run(Path(path))
    if not run.folder.best.is_file():
        raise FileNotFoundError(
            f"{run.folder.best}: no such checkpoint; {path} is not a trained run folder"
        )
    return run


def inspect(
    data: PathLike,
    *,
    out: PathLike | None = None,
    group_pattern: str | None = None,
    group_column: str | None = None,
    allow_outside: bool = False,
    resplit_val: float | None = None,
    skip_unreadable: bool = False,
    seed: int = 0,
    workers: int | None = None,
) -> Inspection:
    """Counts, imbalance, image properties, duplicates, leaks and shortcuts of a data set
    (``medbalance inspect``); with ``out`` also writes ``summary.json`` and the two figures."""
    from medbalance.data.inspection import inspect_catalog, write_inspection
    from medbalance.data.splits import load_split_catalog

    if out is not None:
        _path("out", out)
    catalog = load_split_catalog(
        str(_path("data", data)),
        group_pattern=group_pattern,
        group_column=group_column,
        allow_outside=allow_outside,
        val_fraction=resplit_val,
        seed=seed,
    )
    result = inspect_catalog(catalog, skip_unreadable=skip_unreadable, workers=workers)
    if out is not None:
        write_inspection(result, catalog, Path(out))
    return result


def train(
    data: PathLike,
    *,
    out: PathLike | None = None,
    config: PathLike | None = None,
    drw: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = True,
    **options: Any,
) -> Run:
    """Train, choose the operating point on val, evaluate and report (``medbalance train``).

    Args:
        data: a folder, CSV manifest, ``.npz`` file or MedMNIST name.
        out: the run folder.
        config: a TOML/YAML/JSON config file; ``options`` override it.
        drw: deferred re-weighting from 2/3 of the epochs (unless ``drw_epoch`` is given).
        resume: continue a killed run from ``out/last.pt`` (the same configuration; only
            ``device``, ``bootstrap``, ``compile`` and the data's path may change).
        overwrite: replace the run that ``out`` holds; without it such a folder is refused.
        verbose: show the run's header, one line per epoch and a progress bar (in Jupyter with
            ipywidgets); ``False`` shows warnings only.
        **options: any :class:`~medbalance.training.config.TrainConfig` field, e.g.
            ``epochs=10, sampler="oversample", loss="ce", threshold="sensitivity>=0.95"``.

    Raises:
        ConfigError: an unknown option (with the nearest name) or a value breaking a rule.
    """
    from medbalance.workflows.training import train_and_evaluate

    if resume and out is None:
        raise ConfigError("resume needs out=, the run folder to continue")
    overrides = {
        **options, "data": str(_path("data", data)),
        "out": None if out is None else str(_path("out", out)), "drw": drw or None,
    }  # fmt: skip
    resolved = load_config(Path(config) if config is not None else None, overrides, new_out=True)
    with speaking(verbose):
        result = train_and_evaluate(resolved, resume=resume, overwrite=overwrite)
    return Run(result.run_dir)


def evaluate(
    run: Run | PathLike,
    data: PathLike | None = None,
    *,
    split: str = "test",
    threshold: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device: str = "auto",
    report: bool = True,
    tta: int | None = None,
    guarantee: float | None = None,
    prevalence: float | None = None,
    class_prior: str | None = None,
    estimate_prevalence: bool = False,
    conformal: float | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (or a CV folder's ensemble) on its own or other data
    (``medbalance evaluate``); returns the content of ``metrics.json`` (``metrics_val.json``
    for ``split="val"``). ``tta`` views re-choose the operating point on val with them;
    ``guarantee`` (e.g. 0.95) re-chooses a ``sensitivity>=X`` / ``specificity>=X`` threshold
    so that the rate's lower confidence bound on val meets ``X``. ``prevalence`` (two classes)
    or ``class_prior`` (``"a=0.7,b=0.2,c=0.1"``) re-targets PPV and NPV to another site's
    prior, ``estimate_prevalence`` estimates the evaluated images' prior from their calibrated
    probabilities (both in ``metrics.json``'s ``site``); ``conformal`` (a level, e.g. 0.9)
    adds ``conformal``: each class's coverage and mean set size of the class-conditional
    conformal sets calibrated on the tuning cases, and the refer rate, with CIs (a class with
    too few tuning cases for the level is named in ``warnings``); ``verbose=False`` shows
    warnings only."""
    from medbalance.evaluation.conformal import check_level
    from medbalance.workflows.training import evaluate_run

    if split not in ("test", "val"):
        raise ConfigError(f"split must be test or val, got {split!r}")
    _count("bootstrap", bootstrap, 0)
    if tta is not None:
        _count("tta", tta, 1)
    if prevalence is not None and class_prior is not None:
        raise ConfigError("give prevalence (two classes) or class_prior, not both")
    if conformal is not None:
        check_level(conformal)
    with speaking(verbose):
        return evaluate_run(
            _run_path(run),
            data=None if data is None else str(_path("data", data)),
            split=split,
            policy=threshold,
            n_bootstrap=bootstrap,
            seed=seed,
            device=device,
            report=report,
            tta=tta,
            guarantee=guarantee,
            prior=prevalence if prevalence is not None else class_prior,
            estimate_prior=estimate_prevalence,
            conformal=conformal,
        )


def predict(
    run: Run | PathLike,
    inputs: Sequence[PathLike] | PathLike,
    *,
    batch_size: int = 64,
    device: str = "auto",
    conformal: float | None = None,
) -> list[Prediction]:
    """Score images with a run, its ``best.safetensors`` or a CV folder (the fold ensemble) at
    the stored operating point.

    An input that cannot be read gets a :class:`Prediction` with ``error`` set and no
    probabilities; none is dropped. With ``conformal`` (a level, e.g. 0.9) each prediction
    also carries ``set``, its conformal set (class names; it may be empty) from the tuning
    scores stored with the decision, and ``refer``: whether the set is not exactly one class.
    """
    from medbalance.evaluation.conformal import check_level, missing_scores
    from medbalance.evaluation.ensemble import load_model
    from medbalance.evaluation.predict import iter_predictions

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    items = [_path("inputs", item) for item in items]
    _count("batch_size", batch_size, 1)
    level = None if conformal is None else check_level(conformal)
    trained = load_model(_run_path(run), device=device)
    if level is not None and trained.conformal is None:
        raise missing_scores(_run_path(run))
    rows = iter_predictions(
        trained, [str(i) for i in items], batch_size=batch_size, conformal=level
    )
    return list(rows)


def estimate_prevalence(
    run: Run | PathLike,
    inputs: Sequence[PathLike] | PathLike,
    *,
    bootstrap: int = 1000,
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """The class prior of unlabelled images (``predict --estimate-prevalence``): EM of Saerens
    et al. on the run's bias-corrected calibration, with a 95% bootstrap CI, beside the prior
    the model was tuned at and trained at. It assumes the images differ from the tuning cases
    only in how common each class is; with a few labelled cases, :func:`recalibrate` does more.

    Returns:
        ``{"n", "estimated_prior": {class: {"value", "ci"}}, "tuning_prior", "training_prior"}``
        (``None`` when no image could be scored).
    """
    from medbalance.evaluation.ensemble import load_model
    from medbalance.evaluation.predict import check_calibrated, iter_predictions, site_prior

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    items = [_path("inputs", item) for item in items]
    _count("bootstrap", bootstrap, 0)
    _count("batch_size", batch_size, 1)
    trained = load_model(_run_path(run), device=device)
    check_calibrated(trained, _run_path(run))
    rows = iter_predictions(trained, [str(i) for i in items], batch_size=batch_size)
    kept = [row.probabilities for row in rows if not row.error]
    found = site_prior(trained, kept, bootstrap)
    if found is None:
        raise ValueError(f"no image of {', '.join(map(str, items))} could be scored")
    return found


def compare(
    data: PathLike,
    *,
    remedies: Sequence[str] | str = "baseline,oversample",
    out: PathLike = "compare",
    seeds: int = 3,
    jobs: int = 1,
    budget_minutes: float | None = None,
    metric: str | None = None,
    config: PathLike | None = None,
    folds: int | None = None,
    verbose: bool = True,
    **options: Any,
) -> Comparison:
    """Train each remedy with the same data, splits, model and seeds, and compare them on the
    same test cases with paired bootstrap CIs (``medbalance compare``).

    Args:
        data: the data set.
        remedies: preset names or remedy files, as a list or ``"a,b"``; ``"all"`` for every
            preset.
        out: the comparison folder; each run is an ordinary run folder under ``out/runs``.
        seeds: seeds per remedy.
        jobs: runs trained at a time.
        budget_minutes: start no run that would end after this.
        metric: the metric of the verdict (default: quadratic kappa when every run is
            ordinal, else AUROC, macro one-vs-rest for multi-class runs).
        config: a config file for what every run shares; ``options`` override it.
        folds: run every remedy and seed as a K-fold cv and pair them on the out-of-fold cases.
        verbose: show each run's header and epoch lines; ``False`` shows warnings only.
        **options: shared :class:`~medbalance.training.config.TrainConfig` fields
            (``epochs``, ``model``, ``size`` ...).
    """
    from medbalance.workflows.compare import compare as run_compare

    base = load_config(
        Path(config) if config is not None else None,
        {**options, "data": str(_path("data", data))},
    )
    _count("seeds", seeds, 1)
    _count("jobs", jobs, 1)
    if folds is not None:
        _count("folds", folds, 2)
    with speaking(verbose):
        return run_compare(
            base,
            remedies if isinstance(remedies, str) else ",".join(remedies),
            _path("out", out),
            seeds=seeds,
            jobs=jobs,
            budget_minutes=budget_minutes,
            metric=metric,
            folds=folds,
        )


def cv(
    data: PathLike,
    *,
    folds: int = 5,
    out: PathLike = "cv",
    config: PathLike | None = None,
    tta: int = 1,
    combine: str = "mean",
    verbose: bool = True,
    **options: Any,
) -> CVResult:
    """K-fold cross-validation (``medbalance cv``): K fold models, the operating point chosen
    on out-of-fold predictions, and their ensemble evaluated once on test.

    Args:
        data: the data set; train+val are pooled into the folds, test is never touched.
        folds: K.
        out: the CV folder (``predict(out, ...)`` uses its ensemble).
        tta: test-time augmentation views for the OOF and test probabilities.
        combine: ``mean`` of the fold models' probabilities, or ``stack``: that mean through a
            logistic regression fit on the out-of-fold probabilities.
        config: a config file every fold shares; ``options`` override it.
        verbose: show each fold's header and epoch lines; ``False`` shows warnings only.
        **options: :class:`~medbalance.training.config.TrainConfig` fields.
    """
    from medbalance.workflows.cv import cross_validate

    data_path = str(_path("data", data))
    base = load_config(Path(config) if config is not None else None, {**options, "data": data_path})
    _count("folds", folds, 2)
    _count("tta", tta, 1)
    with speaking(verbose):
        return cross_validate(base, folds=folds, out=_path("out", out), tta=tta, combine=combine)


def ensemble(
    runs: Sequence[Run | PathLike],
    *,
    out: PathLike = "ensemble",
    threshold: str | None = None,
    tta: int = 1,
    bootstrap: int = 1000,
    device: str = "auto",
    report: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """An ensemble of finished runs (``medbalance ensemble``): the mean of their probabilities,
    the decision chosen on val, evaluated once on test; ``predict(out, ...)`` uses it.

    Args:
        runs: two or more runs (or run folders) on the same data and splits.
        out: the ensemble folder.
        threshold: the decision policy or rule (default: the first run's).
        tta: test-time views per member.
        bootstrap: resamples for the 95% CIs.
        device: where the members run.
        report: also write ``report.html``.
        verbose: ``False`` shows warnings only.

    Returns:
        The content of ``out/metrics.json``.
    """
    from medbalance.workflows.ensembles import ensemble_runs

    if isinstance(runs, str | os.PathLike):
        raise ConfigError(f"runs must be a list of two or more runs, got {runs!r}")
    _count("tta", tta, 1)
    _count("bootstrap", bootstrap, 0)
    with speaking(verbose):
        return ensemble_runs(
            [_run_path(r, "runs") for r in runs], _path("out", out), policy=threshold, tta=tta,
            n_bootstrap=bootstrap, device=device, report=report,
        )  # fmt: skip


def recalibrate(
    run: Run | PathLike,
    data: PathLike,
    *,
    out: PathLike = "recalibrated",
    threshold: str | None = None,
    guarantee: float | None = None,
    calibration: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device: str = "auto",
    report: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Re-fit a run for another site on a labelled sample from it (``medbalance recalibrate``):
    the calibration, the operating point and the conformal scores, tuned on the sample's cases
    outside its test split and checked once on its test split; the weights are shared.
    ``predict(out, ...)`` and ``evaluate(out)`` use the site's model.

    Args:
        run: a run, run folder, or cv or ensemble folder.
        data: the site's labelled sample, in the run's classes.
        out: the new folder (new or empty).
        threshold: the operating point's policy (default: the run's).
        guarantee: the confidence of a ``sensitivity>=X`` / ``specificity>=X`` bound on the
            site's tuning cases (default: the run's, unless ``threshold`` is given).
        calibration: ``temperature``, ``vector``, ``bcts`` or ``isotonic`` (default: the
            run's method).
        bootstrap: resamples for the 95% CIs.
        seed: seed of the bootstrap.
        device: where the model runs.
        report: also write ``report.html``.
        verbose: ``False`` shows warnings only.

    Returns:
        The content of ``out/metrics.json`` (its ``recalibration`` says where each part comes
        from).
    """
    from medbalance.workflows.recalibrate import recalibrate_run

    _count("bootstrap", bootstrap, 0)
    with speaking(verbose):
        return recalibrate_run(
            _run_path(run), str(_path("data", data)), _path("out", out), policy=threshold,
            guarantee=guarantee, calibration=calibration, n_bootstrap=bootstrap, seed=seed,
            device=device, report=report,
        )  # fmt: skip


def _run_path(run: Run | PathLike, name: str = "run") -> Path:
    return run.path if isinstance(run, Run) else _path(name, run)


def _path(name: str, value: object) -> Path:
    """A path argument: a non-empty ``str`` or ``os.PathLike`` (never ``None`` as "None")."""
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike) or not str(value):
        raise ConfigError(
            f'{name} must be a path (a str or pathlib.Path), got {value!r}; e.g. {name}="runs/a"'
        )
    return Path(value)


def _count(name: str, value: object, low: int) -> int:
    """A whole-number argument of at least ``low`` (``True`` is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value
