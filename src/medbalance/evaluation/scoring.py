"""Scoring: the one way a model's class probabilities for a split are computed.

Training validates each epoch with :func:`score_split`, the end of a run scores val and test
with it, and ``evaluate`` scores a run's checkpoint with it; :func:`predict_probs` is the
forward pass over a loader that all of them share.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medbalance.core.distributed import DistInfo, gather_rows, shard
from medbalance.data.prepared import BatchLoader, Prepared

__all__ = ["Scores", "autocast", "predict_probs", "score_split"]


@dataclass
class Scores:
    """Probabilities (and logits) of one split, in catalog order."""

    split: str
    indices: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    logits: np.ndarray | None = None


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context for ``precision`` (``fp32``: none)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    loader: BatchLoader,
    transform: nn.Module,
    device: torch.device,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and logits for every item of ``loader``, in order."""
    model.eval()
    all_logits = []
    for x, _ in loader:
        x = transform(x.to(device, non_blocking=True), train=False)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            all_logits.append(model(x).float().cpu())
    if not all_logits:
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)
    logits = torch.cat(all_logits)
    return torch.softmax(logits, dim=1).numpy(), logits.numpy()


def score_split(
    model: nn.Module,
    data: Prepared,
    split: str,
    transform: nn.Module,
    device: torch.device,
    *,
    batch_size: int = 256,
    precision: str = "fp32",
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
) -> Scores:
    """Probabilities and logits of a whole split, in split order (no augmentation); under DDP
    each rank scores its shard and the rows of all ranks are gathered (each item once)."""
    info = dist_info or DistInfo()
    idx = data.indices(split)
    loader = BatchLoader(data.images, data.catalog.labels, shard(idx, info), batch_size)
    probs, logits = predict_probs(
        model, loader, transform, device, precision=precision, channels_last=channels_last
    )
    probs, logits = gather_rows(probs, info), gather_rows(logits, info)
    if not len(idx):
        probs = logits = np.empty((0, len(data.class_names)), np.float32)
    return Scores(split, idx, data.catalog.labels[idx], probs, logits)
