"""Benchmark: medbalance's training loop against a plain PyTorch loop (PneumoniaMNIST, CPU).

Same model (timm ``resnet18``, 1 input channel, 2 classes, from scratch), batch 128, AdamW
(lr 2e-3), cross-entropy, fp32, at 28 px and 64 px, three ways:

- **reference**: the loop of the MedMNIST v2 experiments script: a torch ``Dataset`` that
  returns PIL images, per-item torchvision transforms (``Resize(64)`` at 64 px,
  ``RandomAffine(10°, translate 5%, scale 0.9–1.1)``, ``ToTensor``, ``Normalize(0.5, 0.5)``) in a
  ``DataLoader`` with ``shuffle=True``, timed with ``num_workers=0`` and ``num_workers=2``; the
  faster of the two is the reference;
- **medbalance**: images presized once to uint8 arrays (``medbalance.data.cache.presize``, at the
  presize ``medbalance train`` itself picks: 28 at 28 px, 80 at 64 px), ``BatchLoader``,
  ``BatchTransform`` (default medical augmentation, min-max normalisation) and
  ``train_one_epoch``;
- **bare step**: forward + backward + AdamW step on one random tensor of the same shape, i.e. the
  cost of the model alone.

Also timed, without any model: each data pipeline alone (reference ``DataLoader`` iteration;
medbalance ``BatchLoader`` + ``BatchTransform``), i.e. the most images per second each could
feed to an infinitely fast accelerator from this CPU. These are timed over all
``--warmup + --batches`` batches from the start of iteration (worker start-up included), because
without a model step the reference's prefetched batches would otherwise look free.

Each measurement builds a fresh model (seed 0), runs ``--warmup`` batches (worker start-up and
first-call allocations land here), then times ``--batches`` batches; the per-image time is
extrapolated to one epoch of the 4,708 training images. The three ways are interleaved in each of
``--repeats`` rounds and the median is reported, with the 1-minute load average around each
measurement and the share of the machine's CPU that other processes used meanwhile (from
``/proc/stat``; the best indicator of whether other jobs disturbed a figure). The ratios are
given both as ratios of the medians and per round (variants of one round ran back to back).
A round in which other processes used more than ``--max-others`` of the CPU is discarded and
run again, up to ``--max-rounds`` rounds: on 2 cores a torch step slows down several-fold when
another job takes one core, so such a round measures the other job, not medbalance.

Not a test: run it by hand and record the result in benchmarks/RESULTS.md.

    python benchmarks/speed_reference.py [--sizes 28,64] [--repeats 3] [--batches 12]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import _bench
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medbalance.models._compat import ensure_torchvision

ensure_torchvision()

import timm  # noqa: E402  (needs ensure_torchvision first)
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from medbalance.core.device import choose_precision  # noqa: E402
from medbalance.data.cache import presize  # noqa: E402
from medbalance.data.catalog import load_catalog  # noqa: E402
from medbalance.data.prepared import BatchLoader  # noqa: E402
from medbalance.models.augment import AugmentConfig, BatchTransform, NormStats  # noqa: E402
from medbalance.models.backbones import create_model  # noqa: E402
from medbalance.training.config import TrainConfig  # noqa: E402
from medbalance.training.engine import train_one_epoch  # noqa: E402
from medbalance.training.losses import create_loss  # noqa: E402
from medbalance.training.prepare import resolve_sizes  # noqa: E402

EPOCH_IMAGES = 4708  # PneumoniaMNIST training split
LR = 2e-3


class PILImages(Dataset):
    """What ``medmnist.PneumoniaMNIST`` does: a PIL image per item, then the transform."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Any], torch.Tensor]
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _window(stamps: list[float], warmup: int, batches: int) -> float:
    """Seconds per image over the timed batches (stamps are taken after each batch)."""
    return (stamps[warmup + batches - 1] - stamps[warmup - 1]) / batches


def reference_loader(
    images: np.ndarray, labels: np.ndarray, size: int, workers: int, batch_size: int
) -> DataLoader:  # type: ignore[type-arg]
    steps = [transforms.Resize(size)] if size != images.shape[1] else []
    steps += [
        transforms.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.5], std=[0.5]),
    ]
    dataset = PILImages(images, labels, transforms.Compose(steps))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True
    )


def time_reference(
    images: np.ndarray, labels: np.ndarray, size: int, workers: int, args: argparse.Namespace
) -> float:
    loader = reference_loader(images, labels, size, workers, args.batch_size)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    model.train()
    stamps, losses = [], []
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        stamps.append(time.perf_counter())
        if len(stamps) == args.warmup + args.batches:
            break
    del loader  # shuts the workers down outside the timed window
    return _window(stamps, args.warmup, args.batches) / args.batch_size


def time_medbalance(
    presized: Any,
    labels: np.ndarray,
    train_idx: np.ndarray,
    size: int,
    args: argparse.Namespace,
    auto: bool = False,
) -> float:
    """medbalance's loop; with ``auto``, at the precision ``--precision auto`` picks here."""
    precision, channels_last, _ = (
        choose_precision(torch.device("cpu")) if auto else ("fp32", False, "")
    )
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2, in_chans=1)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    counts = np.bincount(labels[train_idx], minlength=2).tolist()
    loss_fn = create_loss("ce", counts)
    transform = BatchTransform(AugmentConfig(), size, NormStats("minmax"))
    order = np.random.default_rng(0).permutation(train_idx)
    order = order[: (args.warmup + args.batches) * args.batch_size]
    loader = BatchLoader(presized, labels, order, args.batch_size)
    stamps: list[float] = []
    train_one_epoch(
        model,
        loader,
        transform,
        loss_fn,
        optimizer,
        None,
        torch.device("cpu"),
        precision=precision,
        channels_last=channels_last,
        on_batch=lambda done, total: stamps.append(time.perf_counter()),
    )
    return _window(stamps, args.warmup, args.batches) / args.batch_size


def time_reference_pipeline(
    images: np.ndarray, labels: np.ndarray, size: int, workers: int, args: argparse.Namespace
) -> float:
    """The reference's data loading alone (no model): the most a fast GPU could be fed.

    Timed from the start of iteration (worker start-up included, as every epoch pays it), since
    without a model the workers' prefetched batches would otherwise come for free.
    """
    loader = reference_loader(images, labels, size, workers, args.batch_size)
    started, count = time.perf_counter(), 0
    for _ in loader:
        count += 1
        if count == args.warmup + args.batches:
            break
    seconds = time.perf_counter() - started
    del loader
    return seconds / (count * args.batch_size)


def time_medbalance_pipeline(
    presized: Any, labels: np.ndarray, train_idx: np.ndarray, size: int, args: argparse.Namespace
) -> float:
    """medbalance's data loading and batch transform alone (no model), timed the same way."""
    transform = BatchTransform(AugmentConfig(), size, NormStats("minmax"))
    order = np.random.default_rng(0).permutation(train_idx)
    order = order[: (args.warmup + args.batches) * args.batch_size]
    started = time.perf_counter()
    with torch.no_grad():
        for x, _ in BatchLoader(presized, labels, order, args.batch_size):
            transform(x, train=True)
    return (time.perf_counter() - started) / len(order)


def time_bare(size: int, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2, in_chans=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    x = torch.randn(args.batch_size, 1, size, size)
    y = torch.randint(0, 2, (args.batch_size,))
    model.train()
    stamps = []
    for _ in range(args.warmup + args.batches):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return _window(stamps, args.warmup, args.batches) / args.batch_size


def measure(fn: Callable[..., float], *args: Any) -> dict[str, float]:
    """Run one timing, ``fn(*args)`` (seconds per image), with the load around it."""
    before, snapshot = _bench.load(), _bench.cpu_snapshot()
    per_image = fn(*args)
    return {
        "epoch_s": per_image * EPOCH_IMAGES,
        "images_per_s": 1.0 / per_image,
        "load_before": before,
        "load_after": _bench.load(),
        "others_cpu": _bench.others_share(snapshot, _bench.cpu_snapshot()),
    }


def one_round(
    ref_images: np.ndarray,
    ref_labels: np.ndarray,
    presized: Any,
    labels: np.ndarray,
    train_idx: np.ndarray,
    size: int,
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """Every variant once, back to back, so drifting load hits them alike."""
    workers = [int(w) for w in args.workers.split(",")]
    row = {}
    for w in workers:
        row[f"reference_w{w}"] = measure(time_reference, ref_images, ref_labels, size, w, args)
    row["medbalance"] = measure(time_medbalance, presized, labels, train_idx, size, args)
    row["medbalance_auto"] = measure(time_medbalance, presized, labels, train_idx, size, args, True)
    row["bare"] = measure(time_bare, size, args)
    for w in workers:
        row[f"reference_pipeline_w{w}"] = measure(
            time_reference_pipeline, ref_images, ref_labels, size, w, args
        )
    row["medbalance_pipeline"] = measure(
        time_medbalance_pipeline, presized, labels, train_idx, size, args
    )
    return row


def summarise(runs: Iterable[dict[str, float]]) -> dict[str, Any]:
    runs = list(runs)
    epochs = [r["epoch_s"] for r in runs]
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    return {
        "epoch_s": _bench.median(epochs),
        "epoch_s_all": epochs,
        "images_per_s": EPOCH_IMAGES / _bench.median(epochs),
        "load_min": min(loads),
        "load_max": max(loads),
        "others_cpu_all": [r["others_cpu"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(_bench.SHARED_DATA / "pneumoniamnist.npz"))
    parser.add_argument("--sizes", default="28,64")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,2", help="reference DataLoader workers to try")
    _bench.add_round_options(parser)
    parser.add_argument(
        "--presize", type=int, help="medbalance presize (default: what medbalance train picks)"
    )
    args = parser.parse_args()
    if args.warmup < 1 or args.batches < 1:
        parser.error("--warmup and --batches must be at least 1")
    started = time.perf_counter()
    with np.load(args.data) as archive:
        ref_images = archive["train_images"]
        ref_labels = archive["train_labels"].reshape(-1).astype(np.int64)
    catalog = load_catalog(args.data)
    native = int(catalog.images.shape[1]) if catalog.images is not None else None
    train_idx = catalog.indices("train")
    results: dict[str, Any] = {"sizes": {}}
    for size in map(int, args.sizes.split(",")):
        config = resolve_sizes(TrainConfig(data=args.data, size=size), native, torch.device("cpu"))
        presize_to = args.presize or config.presize
        assert presize_to is not None
        t0 = time.perf_counter()
        presized, catalog, _ = presize(catalog, presize_to)
        presize_s = time.perf_counter() - t0
        workers = [int(w) for w in args.workers.split(",")]

        rounds, quiet = _bench.quiet_rounds(
            functools.partial(
                one_round, ref_images, ref_labels, presized, catalog.labels, train_idx, size, args
            ),
            repeats=args.repeats,
            max_others=args.max_others,
            max_attempts=args.max_rounds,
            others=lambda row: max(m["others_cpu"] for m in row.values()),
        )
        runs = {name: [r[name] for r in rounds] for name in rounds[0]}
        summary = {name: summarise(r) for name, r in runs.items()}
        best = min(workers, key=lambda w: summary[f"reference_w{w}"]["epoch_s"])
        summary["reference"] = {"workers": best, **summary[f"reference_w{best}"]}
        mb, ref, bare = (summary[k]["epoch_s"] for k in ("medbalance", "reference", "bare"))
        per_round = {  # the variants of one round ran back to back, under similar load
            name: [
                a / b
                for a, b in zip(summary[x]["epoch_s_all"], summary[y]["epoch_s_all"], strict=True)
            ]
            for name, x, y in (
                ("medbalance_over_reference", "medbalance", "reference"),
                ("medbalance_over_bare", "medbalance", "bare"),
                ("medbalance_auto_over_reference", "medbalance_auto", "reference"),
            )
        }
        others = [v for k in runs for v in summary[k]["others_cpu_all"]]
        results["sizes"][str(size)] = {
            "presize": presize_to,
            "presize_s": presize_s,
            **summary,
            "medbalance_over_reference": mb / ref,
            "medbalance_auto_over_reference": summary["medbalance_auto"]["epoch_s"] / ref,
            "medbalance_over_bare": mb / bare,
            "reference_over_bare": ref / bare,
            "per_round_ratios": per_round,
            "others_cpu_max": max(others),
            **quiet,
            "others_cpu_median": _bench.median(others),
        }
    wall = time.perf_counter() - started
    print(
        "| size | reference s/epoch (workers) | medbalance s/epoch | bare model s/epoch "
        "| medbalance / reference | medbalance / bare | load (1 min) | others' CPU share "
        "| rounds kept (discarded) |"
    )
    print("|" + "---|" * 9)
    for size, r in results["sizes"].items():
        loads = [
            r[k][b] for k in ("reference", "medbalance", "bare") for b in ("load_min", "load_max")
        ]
        print(
            f"| {size} | {r['reference']['epoch_s']:.1f} ({r['reference']['workers']}) "
            f"| {r['medbalance']['epoch_s']:.1f} | {r['bare']['epoch_s']:.1f} "
            f"| {r['medbalance_over_reference']:.2f} | {r['medbalance_over_bare']:.2f} "
            f"| {min(loads):.1f}–{max(loads):.1f} "
            f"| {r['others_cpu_median']:.0%} (max {r['others_cpu_max']:.0%}) "
            f"| {r['quiet_rounds']} ({r['discarded_rounds']}) |"
        )
    print()
    print(
        "| size | data pipeline only, img/s: "
        + ", ".join(f"reference w={w}" for w in workers)
        + " | medbalance | medbalance / best reference |"
    )
    print("|" + "---|" * 4)
    for size, r in results["sizes"].items():
        ref_rates = [r[f"reference_pipeline_w{w}"]["images_per_s"] for w in workers]
        mb_rate = r["medbalance_pipeline"]["images_per_s"]
        print(
            f"| {size} | {', '.join(f'{v:.0f}' for v in ref_rates)} | {mb_rate:.0f} "
            f"| {mb_rate / max(ref_rates):.1f}x faster |"
        )
    results.update(machine=_bench.machine(), args=vars(args), wall_s=wall)
    path = _bench.write_result("speed_reference", results)
    print()
    print("| size | medbalance auto s/epoch | auto / reference (fp32 loop) | reference / auto |")
    print("|---|---|---|---|")
    for size, r in results["sizes"].items():
        auto_ratio = r["medbalance_auto_over_reference"]
        print(
            f"| {size} | {r['medbalance_auto']['epoch_s']:.1f} | {auto_ratio:.2f} "
            f"| {1 / auto_ratio:.2f}x faster |"
        )
    parts = [
        f"{size} px: medbalance/reference {r['medbalance_over_reference']:.2f}x, "
        f"medbalance/bare model {r['medbalance_over_bare']:.2f}x"
        for size, r in results["sizes"].items()
    ]
    print(f"speed_reference: {'; '.join(parts)} (targets <=0.5x at 64 px, <=1.15x) -> {path}")


if __name__ == "__main__":
    main()
