"""Throughput from the presize cache: images per second and the share of time spent waiting for data.

Trains ResNet-18 and ResNet-50 at 224 px (presize 280) on generated images served by medbalance's
presize cache, BatchLoader and on-device batch augmentation, with the fast-path settings a GPU run
uses (bf16 autocast, channels_last, pinned memory, non-blocking copies). "Data wait" is the time
the training loop spends blocked on the next batch (plus the host-to-device copy), as a share of
the wall time; the issue's target is at least 90% busy, i.e. a data wait of at most 10%.

    python benchmarks/gpu_throughput.py --device cuda      # where a GPU is available
    python benchmarks/gpu_throughput.py --device cpu --steps 5 --batch-size 16   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medbalance.data.cache import presize
from medbalance.data.catalog import load_catalog
from medbalance.data.prepared import BatchLoader
from medbalance.models.augment import AugmentConfig, BatchTransform, NormStats
from medbalance.models.backbones import create_model


def _make_images(root: Path, n: int, side: int = 512) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("b" if i % 10 == 0 else "a")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (side, side), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def _run(
    model_name: str, loader_order: np.ndarray, images, labels, args, device
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    model = create_model(model_name, num_classes=2, in_chans=1).to(device)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    transform = BatchTransform(AugmentConfig(), 224, NormStats("minmax")).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = BatchLoader(
        images, labels, loader_order, args.batch_size, pin_memory=device.type == "cuda"
    )
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wait = seen = 0.0
    started = None
    iterator = iter(loader)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync()
            started, wait, seen = time.perf_counter(), 0.0, 0.0
        t0 = time.perf_counter()
        x, y = next(iterator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        wait += time.perf_counter() - t0
        with torch.no_grad():
            x = transform(x, train=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=args.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    sync()
    assert started is not None
    total = time.perf_counter() - started
    return {"images_per_s": seen / total, "data_wait_share": wait / total, "seconds": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--models", default="resnet18,resnet50")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MEDBALANCE_CACHE", str(Path(tmp) / "cache"))
        _make_images(Path(tmp) / "data", args.images)
        catalog = load_catalog(Path(tmp) / "data")
        images, catalog, _ = presize(catalog, 280)
        need = (args.warmup + args.steps) * args.batch_size
        order = np.resize(np.random.default_rng(0).permutation(len(catalog)), need)
        rows = {
            m: _run(m, order, images, catalog.labels, args, device) for m in args.models.split(",")
        }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    for model_name, row in rows.items():
        print(
            f"{model_name} @224 on {name}: {row['images_per_s']:.0f} img/s, "
            f"data wait {100 * row['data_wait_share']:.1f}% (busy {100 * (1 - row['data_wait_share']):.1f}%)"
        )
    out = Path("benchmarks/out/gpu_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": name, "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
