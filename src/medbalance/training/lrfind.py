"""The learning-rate finder (Smith 2017, as popularised by fastai).

Train on one batch per step while the learning rate grows exponentially from ``start`` to
``end``; stop when the loss explodes. The suggestion is the learning rate of the steepest descent
of the smoothed loss curve. The model weights are thrown away afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medbalance.core.figures import new_figure, save_png
from medbalance.training.config import TrainConfig

__all__ = ["LRFindResult", "lr_find", "suggest_lr"]


@dataclass(frozen=True)
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    suggestion: float
    plot: Path


def suggest_lr(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Learning rate at the steepest descent of the (already smoothed) loss in log-lr."""
    if len(lrs) < 5:
        return float(lrs[int(np.argmin(losses))] / 10)
    slopes = np.gradient(losses, np.log10(lrs))
    cutoff = int(np.argmin(losses))  # ignore the explosion after the minimum
    k = int(np.argmin(slopes[: max(cutoff, 2)]))
    return float(lrs[k])


def lr_find(
    config: TrainConfig,
    out_dir: Path,
    *,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
) -> LRFindResult:
    """Sweep the learning rate on the training split and write ``lr_find.png``."""
    from medbalance.training.prepare import prepare_run
    from medbalance.training.trainer import Trainer

    run = prepare_run(config)
    device = run.device
    trainer = Trainer(replace(run.config, lr=start), run.data, device)
    optimizer, _ = trainer.optimizer_for("full", 0)
    loss_fn = trainer.loss_for(0, "full")
    gamma = (end / start) ** (1 / (steps - 1))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    step = 0
    trainer.model.train()
    while step < steps:
        for x, y in trainer.loader_for(step, "full"):
            lr = start * gamma**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = trainer.transform(x.to(device), train=True)
            loss = loss_fn(trainer.model(x).float(), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            smooth = 0.9 * smooth + 0.1 * loss.item()
            value = smooth / (1 - 0.9 ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            step += 1
            if step >= steps or not math.isfinite(value) or value > 4 * best:
                step = steps
                break
    suggestion = suggest_lr(np.array(lrs), np.array(losses))
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = out_dir / "lr_find.png"
    _plot(lrs, losses, suggestion, plot)
    return LRFindResult(lrs, losses, suggestion, plot)


def _plot(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    figure, (ax,) = new_figure(6, 4)
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.legend()
    save_png(figure, path)
