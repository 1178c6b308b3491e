"""Distributed training on PyTorch's own engine: torch.distributed + DistributedDataParallel.

``torchrun --nproc-per-node N -m medbalance train ...`` (or ``medbalance train --nproc N``) starts
N processes that each call :func:`medbalance.training.engine.fit`. Here are the few pieces fit
needs:

* :func:`setup` joins the process group that torchrun describes in the environment (``gloo`` on
  CPU, ``nccl`` on CUDA) and picks this process's device;
* :func:`shard` gives a rank its part of an evaluation split, without padding, and
  :func:`gather_rows` puts every rank's predictions back in order, so each item is counted exactly
  once and metrics equal the single-process ones;
* :func:`mean_over_ranks` averages a number (the training loss) over ranks.

Training samplers shard themselves (see :mod:`medbalance.training.samplers`); only rank 0 writes
files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "gather_rows", "mean_over_ranks", "setup", "shard", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistInfo(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, owns)
    return info, device


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(indices: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's items of an evaluation split: every world_size-th, no padding."""
    return indices[info.rank :: info.world_size] if info.enabled else indices


def gather_rows(rows: np.ndarray, info: DistInfo) -> np.ndarray:
    """Undo :func:`shard`: rows of every rank, back in the split's order (each item once)."""
    if not info.enabled:
        return rows
    parts: list[np.ndarray | None] = [None] * info.world_size
    dist.all_gather_object(parts, rows)
    total = sum(len(p) for p in parts if p is not None)
    out = np.empty((total, *rows.shape[1:]), dtype=rows.dtype)
    for rank, part in enumerate(parts):
        if part is not None:
            out[rank :: info.world_size] = part
    return out


def mean_over_ranks(value: float, weight: int, info: DistInfo) -> float:
    """Weighted mean of a per-rank number over all ranks."""
    if not info.enabled:
        return value
    device = torch.device("cuda", info.local_rank) if dist.get_backend() == "nccl" else None
    pair = torch.tensor([value * weight, float(weight)], dtype=torch.float64, device=device)
    dist.all_reduce(pair)
    return float(pair[0] / pair[1])
