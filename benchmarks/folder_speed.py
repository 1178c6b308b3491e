"""Benchmark: training from a folder of large JPEGs (chest_xray_mini), cold and warm cache, CPU.

``../shared/data/chest_xray_mini`` holds 184 real chest X-ray JPEGs (up to about 2,500 px) in the
Kaggle ``train/val/test`` layout; the train split has 120. At training sizes 128 and 224 px
(presize 1.25×: 160 and 280, as ``medbalance train`` picks), each round:

1. points ``MEDBALANCE_CACHE`` at a new empty temporary folder;
2. **first epoch** = ``prepare_data`` (catalog, splits, decoding and presizing all 184 images
   into the empty cache, default workers) + one training epoch over the train split;
3. **later epoch** = the next training epoch of the same model (images from the memory-mapped
   cache);
4. **warm start** = ``prepare_data`` again in a new cache object, as a second run would (hash
   look-up by path, size and mtime; nothing decoded).

Training epochs: timm ``resnet18`` (1 channel, from scratch), batch 32, AdamW, cross-entropy,
``BatchTransform`` with the default augmentation, plain shuffle of the train split (no sampler,
no validation pass), fp32 on the CPU. Separately, the cache build alone (``presize`` of all 184
images into an empty cache) is timed with ``workers=1`` and ``workers=2``.

Every figure is the median of ``--repeats`` rounds; the 1-minute load average is recorded
around each, and the share of the machine's CPU that other processes used meanwhile (from
``/proc/stat``; reported as the maximum over rounds). A round in which other processes used
more than ``--max-others`` of the CPU is discarded and run again, up to ``--max-rounds``. Not a test: run it by hand and record the result in benchmarks/RESULTS.md.

    python benchmarks/folder_speed.py [--sizes 128,224] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _bench
import numpy as np
import torch

from medbalance.data.cache import presize
from medbalance.data.catalog import load_catalog
from medbalance.data.prepared import BatchLoader, Prepared, prepare_data
from medbalance.models.augment import AugmentConfig, BatchTransform, NormStats
from medbalance.models.backbones import create_model
from medbalance.training.engine import train_one_epoch
from medbalance.training.losses import create_loss

LR = 2e-3


class _Trainer:
    """One model, optimizer and transform; ``epoch`` runs one shuffled pass over train."""

    def __init__(self, data: Prepared, size: int, batch_size: int) -> None:
        torch.manual_seed(0)
        self.data, self.batch_size = data, batch_size
        self.model = create_model("resnet18", num_classes=2, in_chans=data.channels)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR)
        self.loss_fn = create_loss("ce", data.train_counts())
        self.transform = BatchTransform(AugmentConfig(), size, NormStats("minmax"))
        self.epochs = 0

    def epoch(self) -> int:
        train_idx = self.data.indices("train")
        order = np.random.default_rng((0, self.epochs)).permutation(train_idx)
        loader = BatchLoader(self.data.images, self.data.catalog.labels, order, self.batch_size)
        train_one_epoch(
            self.model,
            loader,
            self.transform,
            self.loss_fn,
            self.optimizer,
            None,
            torch.device("cpu"),
        )
        self.epochs += 1
        return len(order)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def training_round(source: str, size: int, presize_to: int, batch_size: int) -> dict[str, float]:
    loads, snapshot = [_bench.load()], _bench.cpu_snapshot()
    cache = tempfile.mkdtemp(prefix="medbalance-bench-cache-")
    previous = os.environ.get("MEDBALANCE_CACHE")
    os.environ["MEDBALANCE_CACHE"] = cache
    try:
        prepare_s, data = _timed(lambda: prepare_data(source, presize_to=presize_to))
        trainer = _Trainer(data, size, batch_size)
        epoch1_s, n_train = _timed(trainer.epoch)
        loads.append(_bench.load())
        epoch2_s, _ = _timed(trainer.epoch)
        warm_s, _ = _timed(lambda: prepare_data(source, presize_to=presize_to))
        loads.append(_bench.load())
    finally:
        if previous is None:
            os.environ.pop("MEDBALANCE_CACHE", None)
        else:
            os.environ["MEDBALANCE_CACHE"] = previous
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "n_images": len(data.catalog),
        "n_train": n_train,
        "cold_prepare_s": prepare_s,
        "first_epoch_train_s": epoch1_s,
        "first_epoch_s": prepare_s + epoch1_s,
        "later_epoch_s": epoch2_s,
        "warm_prepare_s": warm_s,
        "load_min": min(loads),
        "load_max": max(loads),
        "others_cpu": _bench.others_share(snapshot, _bench.cpu_snapshot()),
    }


def build_round(source: str, presize_to: int, workers: int) -> dict[str, float]:
    catalog = load_catalog(source)
    root = Path(tempfile.mkdtemp(prefix="medbalance-bench-cache-"))
    before, snapshot = _bench.load(), _bench.cpu_snapshot()
    try:
        seconds, _ = _timed(lambda: presize(catalog, presize_to, cache_root=root, workers=workers))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    after = _bench.load()
    return {
        "build_s": seconds,
        "images_per_s": len(catalog) / seconds,
        "load_min": min(before, after),
        "load_max": max(before, after),
        "others_cpu": _bench.others_share(snapshot, _bench.cpu_snapshot()),
    }


def _median_of(rows: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key == "load_min":
            out[key] = min(values)
        elif key in ("load_max", "others_cpu"):
            out[key] = max(values)
        else:
            out[key] = _bench.median(values)
            out[f"{key}_all"] = values
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(_bench.SHARED_DATA / "chest_xray_mini"))
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--presize-factor", type=float, default=1.25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-workers", default="1,2")
    _bench.add_round_options(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the tiny-val warning is expected here
    started = time.perf_counter()
    results: dict[str, Any] = {"sizes": {}}
    for size in map(int, args.sizes.split(",")):
        presize_to = math.ceil(size * args.presize_factor)
        rounds, quiet = _bench.quiet_rounds(
            functools.partial(training_round, args.data, size, presize_to, args.batch_size),
            repeats=args.repeats,
            max_others=args.max_others,
            max_attempts=args.max_rounds,
            others=lambda row: row["others_cpu"],
        )
        training = {**_median_of(rounds), **quiet}
        n_train = training["n_train"]
        training["first_epoch_images_per_s"] = n_train / training["first_epoch_s"]
        training["later_epoch_images_per_s"] = n_train / training["later_epoch_s"]
        builds = {}
        for workers in map(int, args.build_workers.split(",")):
            rounds, quiet = _bench.quiet_rounds(
                functools.partial(build_round, args.data, presize_to, workers),
                repeats=args.repeats,
                max_others=args.max_others,
                max_attempts=args.max_rounds,
                others=lambda row: row["others_cpu"],
            )
            builds[f"workers_{workers}"] = {**_median_of(rounds), **quiet}
        results["sizes"][str(size)] = {"presize": presize_to, "training": training, **builds}
    wall = time.perf_counter() - started
    worker_keys = [f"workers_{w}" for w in map(int, args.build_workers.split(","))]
    print(
        "| size (presize) | first epoch s (prepare + train) | later epoch s | first / later "
        "| img/s first, later | warm prepare s | "
        + " | ".join(f"cache build s, {k.replace('_', '=')}" for k in worker_keys)
        + " | load (1 min) | others' CPU share (max) | rounds kept (discarded) |"
    )
    print("|" + "---|" * (9 + len(worker_keys)))
    for size, r in results["sizes"].items():
        t = r["training"]
        loads = [t["load_min"], t["load_max"]] + [
            r[k][b] for k in worker_keys for b in ("load_min", "load_max")
        ]
        others = max([t["others_cpu"]] + [r[k]["others_cpu"] for k in worker_keys])
        kept = sum([t["quiet_rounds"]] + [r[k]["quiet_rounds"] for k in worker_keys])
        dropped = sum([t["discarded_rounds"]] + [r[k]["discarded_rounds"] for k in worker_keys])
        print(
            f"| {size} ({r['presize']}) | {t['first_epoch_s']:.1f} ({t['cold_prepare_s']:.1f} + "
            f"{t['first_epoch_train_s']:.1f}) | {t['later_epoch_s']:.1f} "
            f"| {t['first_epoch_s'] / t['later_epoch_s']:.2f} "
            f"| {t['first_epoch_images_per_s']:.1f}, {t['later_epoch_images_per_s']:.1f} "
            f"| {t['warm_prepare_s']:.2f} | "
            + " | ".join(f"{r[k]['build_s']:.1f}" for k in worker_keys)
            + f" | {min(loads):.1f}–{max(loads):.1f} | {others:.0%} | {kept} ({dropped}) |"
        )
    results.update(
        machine=_bench.machine(),
        args=vars(args),
        wall_s=wall,
        gpu_busy_fraction_224=None,
        gpu_note="no GPU in this run; the 224 px GPU-busy target is not measured here",
    )
    path = _bench.write_result("folder_speed", results)
    parts = []
    for size, r in results["sizes"].items():
        t = r["training"]
        parts.append(
            f"{size} px: first/later epoch {t['first_epoch_s'] / t['later_epoch_s']:.2f}x "
            f"({t['later_epoch_images_per_s']:.1f} img/s later)"
        )
    if len(worker_keys) == 2:
        for size, r in results["sizes"].items():
            a, b = (r[k]["build_s"] for k in worker_keys)
            parts.append(f"{size} px cache build {worker_keys[0]}/{worker_keys[1]} {a / b:.2f}x")
    print(f"folder_speed: {'; '.join(parts)} -> {path}")


if __name__ == "__main__":
    main()
