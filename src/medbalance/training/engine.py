"""The training loop: plain ``train_one_epoch`` and ``validate`` functions driven by ``fit``.

A run is a sequence of phases, each with its own optimizer and one-cycle schedule:

1. ``frozen`` (``freeze_epochs``): only the new head trains on a frozen pretrained backbone;
2. ``full``: everything trains, earlier layers at lower (discriminative) learning rates;
3. ``crt`` (``crt_epochs``, Kang et al. 2020): the backbone of the best checkpoint is frozen
   (weights and BatchNorm statistics) and a re-initialised head is retrained on class-balanced
   batches with plain cross-entropy.

Deferred re-weighting (``drw_epoch``, Cao et al. 2019) switches the loss to class-balanced
weights at that epoch. Before each validation (not in cRT, whose backbone stays as it was) the
BatchNorm statistics are re-estimated on training images (``precise_bn``), so that evaluation
does not see momentum averages that lag the weights. Every epoch seeds torch from
``(seed, epoch)``, so a resumed run draws the same samples and augmentations as an uninterrupted
one. The test split is never used to choose anything: it is scored once, at the end, with the
checkpoint chosen on validation data.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medbalance.core.device import select_device
from medbalance.core.distributed import DistInfo, barrier, mean_over_ranks
from medbalance.core.feedback import bars_wanted
from medbalance.core.run_folder import RunFolder
from medbalance.data.prepared import BatchLoader, Prepared
from medbalance.evaluation.metrics import classification_metrics
from medbalance.evaluation.scoring import Scores, autocast, score_split
from medbalance.training.config import ResolvedConfig, TrainConfig
from medbalance.training.guard import (
    check_fresh_start,
    drop_set_aside,
    restore_set_aside,
    set_aside,
)
from medbalance.training.prepare import PreparedRun, prepare_run
from medbalance.training.trainer import Trainer, load_resume

__all__ = [
    "RunResult",
    "TrainingDiverged",
    "distributed",
    "fit",
    "split_metrics",
    "train_one_epoch",
    "validate",
]

log = logging.getLogger(__name__)


class TrainingDiverged(ValueError):
    """The loss or the outputs became NaN or infinite: a setting (the learning rate, fp16) to
    change, not a bug; the run stops before the epoch's state is saved."""


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    transform: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    frozen_bn: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean training loss.

    With ``frozen_bn`` every BatchNorm layer stays in evaluation mode: it normalises with its
    stored statistics and does not update them (classifier re-training on a fixed backbone).
    """
    model.train()
    if frozen_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    total, count = 0.0, 0
    for k, (x, y) in enumerate(loader):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with torch.no_grad():
            x = transform(x, train=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at batch {k}: the run diverged; lower "
                "--lr (or --precision fp32) and start again; last.pt keeps the last finished "
                "epoch"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        total += loss.item() * len(y)
        count += len(y)
        if on_batch is not None:
            on_batch(k + 1, len(loader))
    return {"train_loss": total / max(count, 1)}


def validate(
    model: nn.Module,
    data: Prepared,
    split: str,
    transform: nn.Module,
    loss_fn: nn.Module,
    device: torch.device,
    *,
    batch_size: int = 256,
    positive: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on one split (no augmentation).

    Under DDP each rank scores its shard and the predictions are gathered, so every item counts
    exactly once and the metrics equal the single-process ones.
    """
    scores = score_split(
        model,
        data,
        split,
        transform,
        device,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        dist_info=dist_info,
    )
    return split_metrics(scores, data.class_names, loss_fn, positive)


def split_metrics(
    scores: Scores, class_names: Sequence[str], loss_fn: nn.Module, positive: int | None
) -> dict[str, float]:
    """Loss and threshold-free metrics (plus argmax ones) of one scored split."""
    assert scores.logits is not None  # score_split keeps them
    if not np.isfinite(scores.logits).all():
        raise TrainingDiverged(
            f"the model's {scores.split} outputs are not finite numbers: the run diverged; lower "
            "--lr (or --precision fp32) and start again; last.pt keeps the last finished epoch"
        )
    labels = scores.labels
    loss = float(loss_fn(torch.from_numpy(scores.logits), torch.from_numpy(labels)).item())
    metrics = classification_metrics(labels, scores.probs, class_names, positive=positive)
    return {"loss": loss, **metrics}


@dataclass
class RunResult:
    """What ``fit`` leaves behind: the best checkpoint's model (in ``trainer``), its val/test
    metrics without a decision, and its probabilities, scored once in fp32 (``scores``), for
    the workflow to choose the decision and evaluate from. ``evaluation`` is the content of
    ``metrics.json`` once the workflow has evaluated the run."""

    run_dir: Path
    config: ResolvedConfig
    best_epoch: int
    best_value: float
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Scores] = field(default_factory=dict)
    trainer: Trainer | None = None
    finished: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder (rank 0, or no DDP)."""
        return self.trainer is None or self.trainer.dist.is_main


def _better(select: str, row: dict[str, float], best: dict[str, float] | None) -> bool:
    """Whether an epoch beats the best so far on ``val_<select>``; ties go to lower val loss."""
    value = row[f"val_{select}"]
    if math.isnan(value):
        return False
    if best is None:
        return True
    top = best[f"val_{select}"]
    if value == top:
        return row["val_loss"] < best["val_loss"]
    return value < top if select == "loss" else value > top


def standard_error(select: str, row: dict[str, float], n_pos: int, n_neg: int) -> float:
    """The standard error of a binary validation metric: Hanley & McNeil (1982) for AUROC,
    the binomial one for sensitivity and balanced accuracy."""
    if select == "auroc":
        auc = row["val_auroc"]
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
        return math.sqrt(max(var, 0.0) / max(n_pos * n_neg, 1))
    sens, spec = row["val_sensitivity"], row["val_specificity"]
    se_sens = math.sqrt(sens * (1 - sens) / max(n_pos, 1))
    if select == "sensitivity":
        return se_sens
    return 0.5 * math.sqrt(se_sens**2 + spec * (1 - spec) / max(n_neg, 1))


def _keep(
    config: TrainConfig, row: dict[str, float], trainer: Trainer, peak: dict[str, float] | None
) -> bool:
    """Whether this epoch becomes the kept checkpoint, given ``peak``, the epoch with the best
    value so far. ``last`` (the default): always, so the run keeps its final weights (on the
    suite, best-by-val chased the noise of small validation splits). ``best``: it beats the
    peak. ``within-noise``: its value lies within one standard error of the peak's (the later
    weights are kept unless an earlier epoch was better by more than the noise)."""
    if config.select_rule == "last":
        return True
    if config.select_rule != "within-noise" or peak is None:
        return _better(config.select, row, peak)
    value = row[f"val_{config.select}"]
    counts = trainer.data.catalog.class_counts("val")
    n_pos = int(counts[trainer.positive])
    noise = standard_error(config.select, peak, n_pos, int(counts.sum()) - n_pos)
    return not math.isnan(value) and value >= peak[f"val_{config.select}"] - noise


def _peak(select: str, history: list[dict[str, float]]) -> dict[str, float] | None:
    """The epoch with the best validation value so far (None before the first)."""
    peak = None
    for row in history:
        if _better(select, row, peak):
            peak = row
    return peak


def _phases(config: ResolvedConfig) -> list[tuple[str, int, int]]:
    """(phase, first epoch, end epoch) for the whole run."""
    phases = []
    if config.freeze_epochs:
        phases.append(("frozen", 0, config.freeze_epochs))
    phases.append(("full", config.freeze_epochs, config.epochs))
    if config.crt_epochs:
        phases.append(("crt", config.epochs, config.epochs + config.crt_epochs))
    return phases


def _epoch_line(row: dict[str, float], select: str) -> str:
    return (
        f"epoch {int(row['epoch']):3d} [{row.get('phase_name', '')}] "
        f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
        f"val_{select} {row[f'val_{select}']:.4f}  val_bal_acc {row['val_balanced_accuracy']:.4f}"
        f"  ({row['seconds']:.1f}s)"
    )


@contextmanager
def distributed(device_name: str) -> Iterator[tuple[DistInfo, torch.device]]:
    """The process group (under torchrun) and this process's device, for one run."""
    from medbalance.core.distributed import setup, teardown

    dist_info, device = setup(select_device(device_name))
    try:
        yield dist_info, device
    finally:
        teardown(dist_info)


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data: Prepared | None = None,
    stop_after_epoch: int | None = None,
    dist: tuple[DistInfo, torch.device] | None = None,
) -> RunResult:
    """Train and select the best checkpoint on validation data; nothing else.

    Choosing the decision, evaluating and reporting are the workflow's steps
    (:func:`medbalance.workflows.training.train_and_evaluate`); ``fit`` leaves the best
    weights in ``best.safetensors`` (no decision yet) and in ``result.trainer.model``.

    Args:
        config: the run's configuration (``None`` fields are chosen for the data).
        resume: continue from ``RUN_DIR/last.pt`` (the same run: see
            :mod:`medbalance.training.guard`).
        overwrite: replace the run a non-empty ``RUN_DIR`` holds (refused otherwise).
        data: already prepared data (tests and ``compare`` reuse it).
        stop_after_epoch: stop (as if killed) after this epoch; for tests of ``resume``.
        dist: the process group and device from :func:`distributed` (joined here if None).

    Writes ``config.json``, ``history.csv``, ``best.safetensors`` and ``last.pt`` to
    ``config.out``.
    """
    if dist is None:
        with distributed(config.device) as joined:
            return _fit(config, resume, overwrite, data, stop_after_epoch, *joined)
    return _fit(config, resume, overwrite, data, stop_after_epoch, *dist)


def _fit(
    config: TrainConfig,
    resume: bool,
    overwrite: bool,
    data: Prepared | None,
    stop_after_epoch: int | None,
    dist_info: DistInfo,
    device: torch.device,
) -> RunResult:
    replaced: list[Path] = []
    if not resume and dist_info.is_main:  # before the data is read: fail fast, change nothing
        replaced = check_fresh_start(RunFolder(Path(config.out)), config, overwrite=overwrite)
    barrier(dist_info)
    run = prepare_run(config, data=data, device=device, dist_info=dist_info)
    resolved = run.config
    if dist_info.is_main:  # a fold of cv or a compare candidate gets data: no cv advice
        _say_header(config, run, resume, advise_cv=data is None)
    trainer = Trainer(resolved, run.data, device, dist_info)
    state = load_resume(trainer) if resume else None
    aside = None
    if dist_info.is_main:  # only now, with every check passed, the folder is written
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        aside = set_aside(trainer.folder, replaced)  # removed at the first checkpoint
        trainer.folder.remove_orphans()  # of a killed run being resumed
    try:
        if dist_info.is_main:
            resolved.write(trainer.folder.config)
        return _train(trainer, state, stop_after_epoch)
    except BaseException:
        if not trainer.folder.last.is_file():  # no checkpoint yet: the earlier run comes back
            restore_set_aside(trainer.folder, aside)
        raise


def _say_header(given: TrainConfig, run: PreparedRun, resume: bool, *, advise_cv: bool) -> None:
    """The run header (:func:`~medbalance.training.header.header_lines`), one log line each."""
    from medbalance.training.header import header_lines

    counts = {s: run.data.catalog.class_counts(s).tolist() for s in ("train", "val", "test")}
    lines = header_lines(
        given,
        run.config,
        plan=run.plan,
        counts=counts,
        device=str(run.device),
        advise_cv=advise_cv,
    )
    log.info("%s %s", "resuming" if resume else "training", run.config.out)
    for line in lines:
        log.info("  %s", line)
    for warning in run.data.warnings:  # warnings: shown with --quiet too
        log.warning("  warning    %s", warning)


def _train(
    trainer: Trainer, state: dict[str, Any] | None, stop_after_epoch: int | None
) -> RunResult:
    """The epochs of every phase, from ``state`` when resuming; then the best checkpoint."""
    config, dist_info = trainer.config, trainer.dist
    done = int(state["epoch"]) + 1 if state is not None else 0
    patience_left = config.patience
    for phase, start, end in _phases(config):
        if done >= end:
            continue
        if phase == "crt" and (state is None or state["phase"] != "crt"):
            _start_crt(trainer)
        steps = (end - start) * len(trainer.loader_for(start, phase))
        optimizer, scheduler = trainer.optimizer_for(phase, steps)
        if state is not None and state["phase"] == phase:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state["scheduler"]:
                scheduler.load_state_dict(state["scheduler"])
        for epoch in range(max(start, done), end):
            row = _run_epoch(trainer, epoch, phase, optimizer, scheduler)
            peak = _peak(config.select, trainer.history)
            improved = _keep(config, row, trainer, peak)
            progress = _better(config.select, row, peak)  # for early stopping, whatever is kept
            if improved:
                trainer.best_value, trainer.best_epoch = row[f"val_{config.select}"], epoch
                val = {k.removeprefix("val_"): v for k, v in row.items() if k.startswith("val_")}
                trainer.keep_best(epoch, val, trainer.scored_model(phase))
            trainer.history.append(row)
            trainer.write_history()
            trainer.save_state(epoch, phase, optimizer, scheduler)  # the state first, then
            if improved:  # its best.safetensors (a resume rewrites it from the state)
                trainer.write_best()
            if dist_info.is_main:
                drop_set_aside(trainer.folder)  # the replaced run, now that this one has a state
            barrier(dist_info)
            if dist_info.is_main:
                log.info(_epoch_line(row, config.select) + ("  *" if improved else ""))
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return RunResult(
                    trainer.run_dir, config, trainer.best_epoch, trainer.best_value, trainer=trainer
                )
            if config.patience is not None and phase != "crt":
                patience_left = config.patience if progress else (patience_left or 0) - 1
                if patience_left is not None and patience_left < 0:
                    log.info(
                        "early stopping: val_%s did not improve for %d epochs",
                        config.select,
                        config.patience,
                    )
                    break
        state = None
    return _finish(trainer)


def _start_crt(trainer: Trainer) -> None:
    """Load the best weights and give the model a fresh head (classifier re-training)."""
    from safetensors.torch import load_file

    best = trainer.folder.best
    if best.is_file():
        trainer.model.load_state_dict(load_file(str(best), device=str(trainer.device)))
    head = trainer.model.get_classifier()  # type: ignore[operator]  # timm's head API
    for module in head.modules() if isinstance(head, nn.Module) else []:
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def _run_epoch(
    trainer: Trainer,
    epoch: int,
    phase: str,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> dict[str, float]:
    config = trainer.config
    torch.manual_seed(config.seed * 100_003 + epoch * 101 + trainer.dist.rank)
    loader = trainer.loader_for(epoch, phase)
    loss_fn = trainer.loss_for(epoch, phase)
    started = time.perf_counter()
    progress = _progress(f"epoch {epoch}", len(loader))
    with progress as bar:
        train = train_one_epoch(
            trainer.train_model,
            loader,
            trainer.transform,
            loss_fn,
            optimizer,
            scheduler,
            trainer.device,
            precision=config.precision,
            scaler=trainer.scaler,
            channels_last=config.channels_last,
            frozen_bn=phase == "crt",
            on_batch=bar,
            after_step=trainer.update_ema if phase != "crt" else None,
        )
    train["train_loss"] = mean_over_ranks(train["train_loss"], len(loader), trainer.dist)
    scored = trainer.scored_model(phase)
    if phase == "crt":
        trainer.model.eval()  # the frozen backbone's BatchNorm statistics stay as they were
    else:
        trainer.recalibrate_bn(scored)
    val = validate(
        scored,
        trainer.data,
        "val",
        trainer.transform,
        loss_fn,
        trainer.device,
        positive=trainer.positive,
        precision=config.precision,
        channels_last=config.channels_last,
        dist_info=trainer.dist,
    )
    row: dict[str, Any] = {"epoch": epoch, "phase_name": phase, **train}
    row.update({f"val_{k}": v for k, v in val.items()})
    row["lr"] = optimizer.param_groups[-1]["lr"]
    row["seconds"] = time.perf_counter() - started
    return row


class _progress:
    """A rich progress bar where :func:`~medbalance.core.feedback.bars_wanted` (a terminal,
    Jupyter); nothing otherwise (the epoch line is logged)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        if bars_wanted():
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self.update

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _finish(trainer: Trainer) -> RunResult:
    """Load the best checkpoint once and score val and (if present) test with it, in fp32
    (as ``medbalance evaluate`` will), for the metrics here and the workflow's decision."""
    from safetensors.torch import load_file

    best = trainer.folder.best
    if not best.is_file():
        raise RuntimeError(
            f"no epoch produced a finite val_{trainer.config.select}; nothing was selected"
        )
    trainer.model.load_state_dict(load_file(str(best), device=str(trainer.device)))
    loss_fn = trainer.loss_for(0, "full")
    metrics: dict[str, dict[str, float]] = {}
    scores: dict[str, Scores] = {}
    for split in ("val", "test"):
        if len(trainer.data.indices(split)):
            scores[split] = score_split(
                trainer.model,
                trainer.data,
                split,
                trainer.transform,
                trainer.device,
                dist_info=trainer.dist,
            )
            metrics[split] = split_metrics(
                scores[split], trainer.data.class_names, loss_fn, trainer.positive
            )
    barrier(trainer.dist)
    return RunResult(
        trainer.run_dir,
        trainer.config,
        trainer.best_epoch,
        trainer.best_value,
        trainer.history,
        metrics,
        scores=scores,
        trainer=trainer,
        finished=True,
    )
