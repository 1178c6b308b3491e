"""``medbalance train``: the command with the most options, grouped into help panels.

``train --help`` lists about fifty options; one flat panel cut names off at 80 columns. Each option
here names its panel (:class:`Panel`), a short metavar and one line of help, so the help reads at
80 columns. The command itself builds the overrides and calls
:func:`~medbalance.workflows.training.train_and_evaluate`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medbalance.cli.options import (
    CALIBRATION_HELP,
    POLICIES_HELP,
    ClassOrder,
    GroupColumn,
    GroupPattern,
    Ordinal,
    Panel,
    ResplitVal,
    TrackTo,
    TrackUri,
    fail,
    parse_class_order,
    parse_options,
)
from medbalance.cli.result_commands import print_metrics
from medbalance.training.names import (
    Device,
    LossName,
    Normalization,
    Precision,
    SamplerName,
    Schedule,
    SelectMetric,
    SelectRule,
    choices,
)

__all__ = ["train"]

log = logging.getLogger("medbalance")


def _opt(*names: str, panel: str, help: str, metavar: str | None = None, **kw: object) -> object:
    """A typer option in ``panel``; ``metavar`` "" for a flag (no ``<bool>`` column)."""
    return typer.Option(*names, rich_help_panel=panel, help=help, metavar=metavar, **kw)  # type: ignore[arg-type]


def train(
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA",
            help="A class-folder tree, CSV manifest, .npz file or MedMNIST name (or data = in "
            "--config).",
            show_default=False,
        ),
    ] = None,
    resplit_val: ResplitVal = None,
    group_pattern: GroupPattern = None,
    group_column: GroupColumn = None,
    skip_unreadable: Annotated[
        bool | None,
        _opt("--skip-unreadable", panel=Panel.DATA, metavar="",
             help="Leave out images that cannot be decoded (listed in the outputs)."),
    ] = None,
    ordinal: Ordinal = None,
    class_order: ClassOrder = None,
    positive_class: Annotated[
        str | None,
        _opt("--positive-class", panel=Panel.DATA, metavar="NAME",
             help="The positive class of a binary task (default: the rarer one)."),
    ] = None,
    model: Annotated[
        str | None,
        _opt("--model", panel=Panel.MODEL, metavar="NAME",
             help="A timm model name or smallcnn (default: by size and device)."),
    ] = None,
    size: Annotated[
        int | None,
        _opt("--size", panel=Panel.MODEL, metavar="PX",
             help="Training image side (default: native up to 224; 128 on a CPU, 224 on a GPU)."),
    ] = None,
    presize: Annotated[
        int | None,
        _opt("--presize", panel=Panel.MODEL, metavar="PX",
             help="Presize cache side (default: 1.25 x size; arrays: at most native)."),
    ] = None,
    pretrained: Annotated[
        bool | None,
        _opt("--pretrained/--no-pretrained", panel=Panel.MODEL, metavar="",
             help="Start from the timm model's ImageNet weights (downloaded)."),
    ] = None,
    weights: Annotated[
        str | None,
        _opt("--weights", panel=Panel.MODEL, metavar="FILE",
             help="Start from local weights (.safetensors or .pth)."),
    ] = None,
    freeze_epochs: Annotated[
        int | None,
        _opt("--freeze-epochs", panel=Panel.MODEL, metavar="N",
             help="Train only the new head for the first N epochs."),
    ] = None,
    normalization: Annotated[
        str | None,
        _opt("--normalization", panel=Panel.MODEL, metavar="NAME",
             help=f"{choices(Normalization)} (minmax: per image, for X-rays)."),
    ] = None,
    augment: Annotated[
        bool | None,
        _opt("--augment/--no-augment", panel=Panel.MODEL, metavar="",
             help="Random crops, rotations and intensity changes while training (on)."),
    ] = None,
    hflip: Annotated[
        bool | None,
        _opt("--hflip/--no-hflip", panel=Panel.MODEL, metavar="",
             help="Also flip left-right (off: anatomy often has a side)."),
    ] = None,
    sampler: Annotated[
        str | None,
        _opt("--sampler", panel=Panel.REMEDY, metavar="NAME",
             help=f"{choices(SamplerName)} | oversample:ALPHA | auto (oversample; none for "
             "grades)."),
    ] = None,
    loss: Annotated[
        str | None, _opt("--loss", panel=Panel.REMEDY, metavar="NAME", help=choices(LossName))
    ] = None,
    loss_option: Annotated[
        list[str] | None,
        _opt("--loss-option", panel=Panel.REMEDY, metavar="K=V",
             help="An option of the loss, e.g. gamma=2 or tau=1 (repeatable)."),
    ] = None,
    drw: Annotated[
        bool,
        _opt("--drw", panel=Panel.REMEDY, metavar="",
             help="Deferred re-weighting from 2/3 of the epochs."),
    ] = False,
    drw_epoch: Annotated[
        int | None,
        _opt("--drw-epoch", panel=Panel.REMEDY, metavar="N",
             help="Deferred re-weighting from epoch N."),
    ] = None,
    crt: Annotated[
        int | None,
        _opt("--crt", panel=Panel.REMEDY, metavar="N",
             help="Classifier re-training epochs after the run (frozen backbone)."),
    ] = None,
    epoch_samples: Annotated[
        int | None,
        _opt("--epoch-samples", panel=Panel.REMEDY, metavar="N", min=1,
             help="Images the sampler draws per epoch (default: the train size)."),
    ] = None,
    epochs: Annotated[
        int | None,
        _opt("--epochs", panel=Panel.SCHEDULE, metavar="N",
             help="Epochs (default: planned from the data; see --steps)."),
    ] = None,
    steps: Annotated[
        int | None,
        _opt("--steps", panel=Panel.SCHEDULE, metavar="N",
             help="Plan the epochs for N optimizer steps (instead of --epochs)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        _opt("--batch-size", panel=Panel.SCHEDULE, metavar="N", help="Images per batch (64)."),
    ] = None,
    lr: Annotated[
        float | None,
        _opt("--lr", panel=Panel.SCHEDULE, metavar="X",
             help="Peak learning rate (default 2e-3; 0.1 with --loss aucm; see lr-find)."),
    ] = None,
    schedule: Annotated[
        str | None,
        _opt("--schedule", panel=Panel.SCHEDULE, metavar="NAME", help=choices(Schedule)),
    ] = None,
    weight_decay: Annotated[
        float | None,
        _opt("--weight-decay", panel=Panel.SCHEDULE, metavar="X",
             help="AdamW weight decay (default 1e-4)."),
    ] = None,
    ema: Annotated[
        float | None,
        _opt("--ema", panel=Panel.SCHEDULE, metavar="DECAY",
             help="Keep a moving average of the weights, e.g. 0.999 (off)."),
    ] = None,
    precise_bn: Annotated[
        int | None,
        _opt("--precise-bn", panel=Panel.SCHEDULE, metavar="N", min=0,
             help="Re-estimate BatchNorm on N train images before each validation (1024; 0 "
             "off)."),
    ] = None,
    seed: Annotated[
        int | None, _opt("--seed", panel=Panel.SCHEDULE, metavar="N", help="Seed (0).")
    ] = None,
    select: Annotated[
        str | None,
        _opt("--select", panel=Panel.DECISION, metavar="NAME",
             help=f"The val metric reported and selected by: {choices(SelectMetric)}."),
    ] = None,
    select_rule: Annotated[
        str | None,
        _opt("--select-rule", panel=Panel.DECISION, metavar="RULE",
             help=f"{choices(SelectRule)}: the final epoch (default), the best val value, or "
             "the latest within one standard error of the best."),
    ] = None,
    patience: Annotated[
        int | None,
        _opt("--patience", panel=Panel.DECISION, metavar="N",
             help="Stop after N epochs without val progress (off)."),
    ] = None,
    threshold: Annotated[
        str | None,
        _opt("--threshold", "--decision", panel=Panel.DECISION, metavar="POLICY",
             help=f"The operating point, chosen on val (default by task: youden, "
             f"offsets:balanced, expected-grade): {POLICIES_HELP}."),
    ] = None,
    guarantee: Annotated[
        float | None,
        _opt("--guarantee", panel=Panel.DECISION, metavar="LEVEL",
             help="With 'sensitivity>=X' or 'specificity>=X': choose the threshold so that "
             "the rate's lower confidence bound on val (Clopper-Pearson) at LEVEL, e.g. "
             "0.95, is at least X; refused when val has too few cases for it."),
    ] = None,
    calibration: Annotated[
        str | None,
        _opt("--calibration", panel=Panel.DECISION, metavar="METHOD", help=CALIBRATION_HELP),
    ] = None,
    out: Annotated[
        str | None,
        _opt("--out", "-o", panel=Panel.OUTPUT, metavar="DIR",
             help="Run folder (default: a new runs/DATA-DATE-TIME)."),
    ] = None,
    config_file: Annotated[
        Path | None,
        _opt("--config", panel=Panel.OUTPUT, metavar="FILE",
             help="TOML/YAML/JSON config; the options given here override it."),
    ] = None,
    resume: Annotated[
        bool,
        _opt("--resume", panel=Panel.OUTPUT, metavar="",
             help="Continue --out's last.pt: the same run (only --device, --bootstrap, "
             "--compile and the data's path may change)."),
    ] = False,
    overwrite: Annotated[
        bool,
        _opt("--overwrite", panel=Panel.OUTPUT, metavar="",
             help="Replace the run that --out holds (refused otherwise)."),
    ] = False,
    bootstrap: Annotated[
        int | None,
        _opt("--bootstrap", panel=Panel.OUTPUT, metavar="N", min=0,
             help="Bootstrap resamples for the 95% CIs (1000)."),
    ] = None,
    track: TrackTo = None,
    track_uri: TrackUri = None,
    device: Annotated[
        str | None,
        _opt("--device", panel=Panel.HARDWARE, metavar="NAME", help=choices(Device)),
    ] = None,
    precision: Annotated[
        str | None,
        _opt("--precision", panel=Panel.HARDWARE, metavar="NAME",
             help=f"{choices(Precision)} (auto: bf16 where the hardware has it)."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        _opt("--channels-last/--no-channels-last", panel=Panel.HARDWARE, metavar="",
             help="Channels-last memory layout."),
    ] = None,
    compile_model: Annotated[
        bool | None,
        _opt("--compile/--no-compile", panel=Panel.HARDWARE, metavar="",
             help="torch.compile the model."),
    ] = None,
    nproc: Annotated[
        int | None,
        _opt("--nproc", panel=Panel.HARDWARE, metavar="N", min=1,
             help="Processes on this machine (DDP via torchrun); one per GPU."),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        _opt("--sync-bn/--no-sync-bn", panel=Panel.HARDWARE, metavar="",
             help="SyncBatchNorm under DDP."),
    ] = None,
) -> None:  # fmt: skip
    """Train a classifier with an imbalance remedy; writes the run folder.

    The run folder holds config.json, history.csv, best.safetensors (with the operating point
    chosen on val), last.pt (for --resume), metrics.json, predictions.csv and report.html.
    """
    from medbalance.training.config import ConfigError, load_config

    overrides = dict(
        data=data, out=out, model=model, size=size, presize=presize, epochs=epochs, steps=steps,
        batch_size=batch_size, lr=lr, sampler=sampler, loss=loss,
        loss_options=parse_options(loss_option), drw=drw or None, drw_epoch=drw_epoch,
        crt_epochs=crt, augment=augment, hflip=hflip, pretrained=pretrained, weights=weights,
        freeze_epochs=freeze_epochs, select=select, select_rule=select_rule, patience=patience,
        positive_class=positive_class, seed=seed, device=device, precision=precision,
        resplit_val=resplit_val, group_pattern=group_pattern, group_column=group_column,
        skip_unreadable=skip_unreadable, sync_bn=sync_bn, compile=compile_model,
        precise_bn=precise_bn, threshold=threshold, guarantee=guarantee, bootstrap=bootstrap,
        schedule=schedule, calibration=calibration,
        weight_decay=weight_decay, epoch_samples=epoch_samples, normalization=normalization,
        channels_last=channels_last, ema=ema, ordinal=ordinal,
        class_order=parse_class_order(class_order), track=track, track_uri=track_uri,
    )  # fmt: skip
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(code=_relaunch_with_torchrun(nproc))
    try:
        if resume and out is None and config_file is None:
            raise ConfigError("--resume needs --out RUN_DIR, the run folder to continue")
        config = load_config(config_file, overrides, new_out=True)
        from medbalance.workflows.training import train_and_evaluate

        result = train_and_evaluate(config, resume=resume, overwrite=overwrite)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        fail(error)
    _print_result(result)


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same ``train`` command under torchrun with ``nproc`` processes."""
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            args.append(arg)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "medbalance",
        *args,
    ]
    log.info("launching: %s", " ".join(command))
    return subprocess.call(command)


def _print_result(result: object) -> None:
    from medbalance.training.engine import RunResult

    if not isinstance(result, RunResult) or os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    typer.echo(
        f"best epoch {result.best_epoch} by val {result.config.select} = {result.best_value:.4f}"
    )
    if result.evaluation:
        print_metrics(result.evaluation)
    typer.echo(f"run folder: {result.run_dir} (report.html, metrics.json, predictions.csv)")
