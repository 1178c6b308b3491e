"""One training run's parts: the device, the config resolved for the data, and :class:`Trainer`.

:func:`resolve` fills the "choose for the data" fields of a :class:`TrainConfig` (image size,
presize, model, learning rate). :class:`Trainer` builds the model, the batch transform and its
normalisation, and per epoch and phase the sampler, the loss (with deferred re-weighting) and the
optimizer and schedule; it saves the resumable state. ``engine.fit`` drives it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medbalance import __version__
from medbalance.core.checkpoint import save_weights
from medbalance.core.distributed import DistInfo
from medbalance.core.files import atomic_write
from medbalance.core.run_folder import RunFolder
from medbalance.data.prepared import BatchLoader, Prepared
from medbalance.training.config import ResolvedConfig
from medbalance.training.guard import new_run_id
from medbalance.training.priors import learned_prior

__all__ = ["Trainer", "load_resume"]


_DRW_BASE = {
    "weighted-ce": ("ce", {"label_smoothing"}),
    "cb-ce": ("ce", {"label_smoothing"}),
    "cost-ce": ("ce", {"label_smoothing"}),
    "cb-focal": ("focal", {"gamma"}),
}


class Trainer:
    """Everything one run is made of: model, transform, positive class, and per phase the
    sampler, loss and optimizer; it also writes ``last.pt`` and ``history.csv``."""

    def __init__(
        self,
        config: ResolvedConfig,
        data: Prepared,
        device: torch.device,
        dist_info: DistInfo | None = None,
    ) -> None:
        from medbalance.models.augment import AugmentConfig, BatchTransform, fit_normalization
        from medbalance.models.backbones import create_model

        self.config, self.data, self.device = config, data, device
        self.dist = dist_info or DistInfo()
        self.folder = RunFolder(Path(config.out))
        self.run_dir = self.folder.path
        torch.manual_seed(config.seed)
        self.model = create_model(
            config.model,
            num_classes=len(data.class_names),
            in_chans=data.channels,
            pretrained=config.pretrained,
            weights=config.weights,
            ordinal=config.ordinal,
        ).to(device)
        if config.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.train_model: nn.Module = self.model
        train_idx = data.indices("train")
        sample = data.images.take(train_idx[:: max(1, len(train_idx) // 512)])
        self.norm = fit_normalization(config.normalization, sample)
        augment = AugmentConfig(enabled=config.augment, hflip=config.hflip, degrees=config.degrees)
        self.transform = BatchTransform(augment, config.size, self.norm).to(device)
        self.positive = config.positive_index
        self.ema = _make_ema(self.model, config.ema)
        self.run_id = new_run_id()  # load_resume keeps the resumed run's id
        # the best epoch's weights and checkpoint metadata (CPU copy), kept in last.pt too so a
        # resume always restores the best.safetensors that belongs to its state
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_meta: dict[str, Any] | None = None
        self.history: list[dict[str, float]] = []
        self.evaluation: dict[str, Any] = {}
        self.best_value, self.best_epoch = math.nan, -1
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if config.precision == "fp16" and device.type == "cuda"
            else None
        )

    # --- pieces -------------------------------------------------------------------------

    def loss_for(self, epoch: int, phase: str) -> nn.Module:
        from medbalance.training.class_weights import drw_weights
        from medbalance.training.losses import create_loss

        counts = self.data.train_counts()
        if phase == "crt":
            return create_loss("ce", counts).to(self.device)
        name, options = self.config.loss, dict(self.config.loss_options)
        if name == "aucm":  # one loss for the run: its min-max variables train with the model
            return self._auc_loss()
        if self.config.drw_epoch is not None and epoch >= self.config.drw_epoch:
            # losses that derive their own weights from the counts hand over to their base loss
            if name in _DRW_BASE:
                name, keep = _DRW_BASE[name]
                options = {k: v for k, v in options.items() if k in keep}
            options["class_weight"] = drw_weights(counts)
        return create_loss(name, counts, **options).to(self.device)

    def loader_for(self, epoch: int, phase: str) -> BatchLoader:
        from medbalance.training.samplers import create_sampler

        labels = self.data.catalog.labels
        train_idx = self.data.indices("train")
        spec = "oversample" if phase == "crt" else self.config.sampler
        sampler = create_sampler(
            spec,
            labels[train_idx],
            seed=self.config.seed,
            batch_size=self.config.batch_size,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            num_samples=self.config.epoch_samples,
            positive=self.positive,  # dual: the class the loss and the metrics rank first
        )
        if sampler is None:
            generator = np.random.default_rng((self.config.seed, epoch))
            order = generator.permutation(train_idx)
            world = self.dist.world_size
            order = np.resize(order, -(-len(order) // world) * world)[self.dist.rank :: world]
        else:
            sampler.set_epoch(epoch)
            order = train_idx[np.fromiter(iter(sampler), dtype=np.int64)]
        drop_last = len(order) % self.config.batch_size == 1
        return BatchLoader(
            self.data.images,
            labels,
            order,
            self.config.batch_size,
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda",
        )

    def optimizer_for(
        self, phase: str, steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        from medbalance.models.backbones import (
            head_parameters,
            param_groups,
            set_backbone_trainable,
        )

        config = self.config
        if phase in ("frozen", "crt"):
            set_backbone_trainable(self.model, False)
            groups: list[dict[str, Any]] = [
                {"params": head_parameters(self.model), "lr": config.lr}
            ]
        else:
            set_backbone_trainable(self.model, True)
            mult = config.backbone_lr_mult if (config.pretrained or config.weights) else 1.0
            groups = param_groups(
                self.model, config.lr, backbone_lr_mult=mult, weight_decay=config.weight_decay
            )
        self.train_model = self._wrap()
        optimizer: torch.optim.Optimizer
        if config.loss == "aucm" and phase != "crt":  # PESG, as the AUC-margin authors train it
            from medbalance.training.losses import PESG

            loss = self._auc_loss()
            auc_groups = [
                {"params": [loss.aucm.a, loss.aucm.b], "lr": config.lr, "weight_decay": 0.0},
                {"params": [loss.aucm.alpha], "lr": config.lr, "ascent": True},
            ]
            optimizer = PESG(auc_groups + groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        if config.schedule == "constant" or steps < 10:  # one-cycle needs room for its phases
            return optimizer, None
        if config.schedule == "cosine":
            return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=steps, pct_start=0.25
        )

    def _auc_loss(self) -> Any:
        """The run's one AUC-margin loss (built on first use; MONAI is imported then)."""
        if getattr(self, "_auc_loss_module", None) is None:
            from medbalance.training.losses import create_loss

            options = {**self.config.loss_options, "positive": self.positive}
            counts = self.data.train_counts()
            self._auc_loss_module = create_loss("aucm", counts, **options).to(self.device)
        return self._auc_loss_module

    def _wrap(self) -> nn.Module:
        """The training forward: DDP over this phase's trainable parameters, optionally compiled."""
        model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        if self.config.compile:
            model = torch.compile(model)  # type: ignore[assignment]
        return model

    def metadata(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        config = self.config
        return {
            "format": "medbalance-checkpoint/1",
            "version": __version__,
            "model": config.model,
            "class_names": list(self.data.class_names),
            "positive_class": self.data.class_names[self.positive],
            "channels": self.data.channels,
            "image_size": config.size,
            "presize": config.presize,
            "fit": "pad",
            "normalization": self.norm.to_dict(),
            "train_counts": self.data.train_counts(),
            "model_prior": learned_prior(config, self.data.train_counts()),
            "ordinal": config.ordinal,  # a CORN head; grades in class_names order
            "data_fingerprint": self.data.fingerprint,
            "data_warnings": list(self.data.warnings),  # evaluate carries them on
            "data_path": _resolvable(config.data),
            "run_id": self.run_id,
            "epoch": epoch,
            "val_metrics": metrics,
            "config": config.to_dict(),
        }

    def scored_model(self, phase: str) -> nn.Module:
        """The weights validation scores and the best checkpoint keeps: the moving average of
        the weights with ``ema`` (not in cRT, whose new head the average has not seen)."""
        return self.ema.module if self.ema is not None and phase != "crt" else self.model

    def update_ema(self) -> None:
        """Fold the weights after an optimizer step into their moving average."""
        if self.ema is not None:
            self.ema.update(self.model)

    def recalibrate_bn(self, model: nn.Module | None = None) -> None:
        """Precise BatchNorm (Wu & Johnson, 2021): re-estimate every BatchNorm layer's running
        mean and variance from up to ``config.precise_bn`` training images (seeded choice,
        evaluation transform): the average of the statistics of equal-size batches (a smaller
        last batch is left out, as it would count as much as a full one).

        The momentum average that BatchNorm keeps in training lags the weights by about ten
        steps; on a small data set that is most of the run, and evaluation-mode predictions
        collapse to one class while the ranking (AUROC) looks fine. Every rank uses the same
        images, so the statistics agree under DDP; rank 0's are broadcast to make sure.
        """
        from torch.optim.swa_utils import update_bn

        model = model if model is not None else self.model
        n = self.config.precise_bn
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not n or not norms:
            return
        train_idx = self.data.indices("train")
        rng = np.random.default_rng((self.config.seed, 7))
        chosen = np.sort(rng.permutation(train_idx)[:n])
        if len(chosen) < 2:  # BatchNorm needs two values a channel
            return
        batch = self.config.batch_size
        loader = BatchLoader(
            self.data.images, self.data.catalog.labels, chosen, batch, drop_last=len(chosen) > batch
        )
        inputs = (self.transform(x.to(self.device), train=False) for x, _ in loader)
        update_bn(inputs, model)
        if self.dist.enabled:
            import torch.distributed as dist

            for module in norms:
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)

    # --- persistence --------------------------------------------------------------------

    def keep_best(self, epoch: int, val_metrics: dict[str, float], model: nn.Module) -> None:
        """Remember ``model``'s weights (the scored ones) as the best (written by
        :meth:`write_best`)."""
        self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.best_meta = self.metadata(epoch, val_metrics)

    def write_best(self) -> None:
        """Write ``best.safetensors`` from the kept best weights (rank 0)."""
        if self.dist.is_main and self.best_state is not None and self.best_meta is not None:
            save_weights(self.folder.best, self.best_state, self.best_meta)

    def save_state(self, epoch: int, phase: str, optimizer: Any, scheduler: Any) -> None:
        if not self.dist.is_main:
            return
        state = {
            "epoch": epoch,
            "phase": phase,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "fingerprint": self.data.fingerprint,
            # what each item was (path and content hash), to name the files that changed
            "items": _items(self.data.catalog),
            "run_id": self.run_id,
            # the best weights, unless they are this epoch's (then they are "model" above)
            "best_model": self.best_state if self.best_epoch != epoch else None,
            "best_meta": self.best_meta,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }
        atomic_write(self.folder.last, lambda tmp: torch.save(state, tmp))

    def write_history(self) -> None:
        if self.history and self.dist.is_main:
            self.folder.write_history(self.history)


def load_resume(trainer: Trainer) -> dict[str, Any]:
    """Continue ``trainer`` from ``last.pt`` after checking that it is this run's state: a
    readable training state, of the same data, with a configuration that changes nothing the
    run learns (:mod:`medbalance.training.guard`)."""
    from medbalance.training.guard import check_resume_config, read_training_state

    path = trainer.folder.last
    state = read_training_state(path)
    if state["fingerprint"] != trainer.data.fingerprint:
        changed = _changed_items(state.get("items"), _items(trainer.data.catalog))
        raise ValueError(
            f"--resume: {path} was trained on other data (fingerprint {state['fingerprint']}, "
            f"now {trainer.data.fingerprint}{changed}); resume with the same data, or start "
            "afresh"
        )
    check_resume_config(trainer.folder, trainer.config)
    trainer.model.load_state_dict(state["model"])
    if trainer.ema is not None and state.get("ema") is not None:
        trainer.ema.load_state_dict(state["ema"])
    trainer.history = list(state["history"])
    trainer.best_value, trainer.best_epoch = float(state["best_value"]), int(state["best_epoch"])
    trainer.run_id = str(state.get("run_id") or trainer.run_id)
    best = state.get("best_model")
    if best is None and trainer.best_epoch == int(state["epoch"]):
        best = state["model"]
    trainer.best_state, trainer.best_meta = best, state.get("best_meta")
    # a kill between writing last.pt and best.safetensors (or during either) cannot leave a
    # best.safetensors that does not belong to this state
    trainer.write_best()
    return state


def _items(catalog: Any) -> list[str]:
    """``origin<TAB>content hash<TAB>label<TAB>split`` per item (arrays: no hash)."""
    digests = catalog.digests or [""] * len(catalog)
    rows = zip(
        catalog.origins, digests, catalog.labels.tolist(), catalog.splits.tolist(), strict=True
    )
    return ["\t".join(map(str, row)) for row in rows]


def _changed_items(before: Any, now: list[str]) -> str:
    """``; first differing files: a.png (other pixels), ...`` or nothing when unknown."""
    if not isinstance(before, list):
        return ""  # a state written before items were recorded
    old = {row.split("\t", 1)[0]: row for row in before if isinstance(row, str)}
    new = {row.split("\t", 1)[0]: row for row in now}
    notes = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            notes.append(f"{name} (gone)")
        elif name not in old:
            notes.append(f"{name} (new)")
        elif old[name] != new[name]:
            what = ("other pixels", "another label", "another split")
            parts_old, parts_new = old[name].split("\t"), new[name].split("\t")
            diff = [
                w for w, a, b in zip(what, parts_old[1:], parts_new[1:], strict=False) if a != b
            ]
            notes.append(f"{name} ({', '.join(diff) or 'changed'})")
        if len(notes) == 3:
            break
    return f"; first differing files: {', '.join(notes)}" if notes else ""


def _resolvable(data: str) -> str:
    """The data path as it resolves from any folder (absolute), or a MedMNIST name as given."""
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else data


def _make_ema(model: nn.Module, decay: float | None) -> Any:
    """timm's moving average of the weights (with warm-up, so a short run on a small data set
    is not dominated by the initial weights), or None."""
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True)
