"""Benchmark: the presize cache at scale, on generated 512×512 grayscale JPEGs (CPU).

Writes ``max(N) + 1%`` synthetic images once (smooth anatomy-like shading plus noise, each made
unique by a 20-bit marker, JPEG quality 90, about 63 KiB each) under a temporary folder in
``--tmp``, then for each N builds a class-folder tree (``majority/`` and ``minority/``, 9:1) of
hard links to the first N of them and measures, in a **fresh subprocess per N** (so that peak
memory does not accumulate across N):

- ``catalog``: ``load_catalog`` of the tree (folder scan);
- ``build``: ``PresizeCache.ensure`` into an empty cache (presize ``--presize``, ``--workers``
  processes): hashing, decoding, resizing, shard writing;
- cache size on disk (shards + SQLite index);
- ``epoch``: one pass over all N items in a random order in batches of 256 via ``BatchLoader``
  (``Presized.take`` from the memory maps; data loading only, no model). The shards were just
  written, so they are read from the page cache: this is the warm-disk case;
- ``rebuild``: ``ensure`` again with nothing changed (a stat per file, no hashing, no decoding);
- ``incremental``: 1% new files added to the tree, then ``ensure`` (hashes and decodes only them);
- peak memory: ``ru_maxrss`` of the subprocess (includes file-backed pages of the memory-mapped
  shards that the epoch touched), the peak anonymous RSS sampled every 5 ms from
  ``/proc/self/status`` (the process's own allocations), and ``ru_maxrss`` of the largest
  decoding worker.

Each row also records the 1-minute load average and the share of the machine's CPU that other
processes used meanwhile (from ``/proc/stat``); an N measured while others used more than
``--max-others`` of the CPU is measured again (``--max-attempts`` in all; the least disturbed
try is kept). The generated images and caches are deleted at the end (``--keep`` leaves them).

The default sizes take about two minutes on a 2-core machine. The full study, for a user with
more time, is ``--sizes 10000,50000,100000``: about 6.5 GB of JPEGs plus up to 2.5 GB of cache
in ``--tmp`` at once, and roughly 10–15 minutes on 2 cores. Not a test: run it by hand and record
the result in benchmarks/RESULTS.md.

    python benchmarks/cache_scale.py [--sizes 2000,5000,10000,20000] [--workers 2] [--tmp /tmp]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import _bench
import numpy as np

SIDE = 512
N_BASES = 32
MINORITY_EVERY = 10  # item i is minority when i % 10 == 0: a 9:1 imbalance
_bases: list[np.ndarray] = []


# --- synthetic images -------------------------------------------------------------------


def _base(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    img = 0.35 + 0.25 * np.sin(xx * rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(
        yy * rng.uniform(2, 6)
    )
    for _ in range(6):
        cx, cy, sx, sy = rng.uniform(0.2, 0.8, 2).tolist() + rng.uniform(0.05, 0.2, 2).tolist()
        img += rng.uniform(-0.3, 0.3) * np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _init_generator() -> None:
    _bases.extend(_base(k) for k in range(N_BASES))


def _name(i: int) -> str:
    return f"{'minority' if i % MINORITY_EVERY == 0 else 'majority'}/img_{i:07d}.jpg"


def _write(job: tuple[Path, int, int]) -> int:
    from PIL import Image

    pool, start, stop = job
    for i in range(start, stop):
        shift = (i * 37 % SIDE, i * 91 % SIDE)
        img = np.roll(_bases[i % N_BASES], shift, axis=(0, 1))
        for bit in range(20):  # a visible marker makes every image's bytes unique
            img[4:12, 4 + 8 * bit : 12 + 8 * bit] = 255 if (i >> bit) & 1 else 0
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, "JPEG", quality=90)
        (pool / _name(i)).write_bytes(buffer.getvalue())
    return stop - start


def generate(pool: Path, count: int, processes: int) -> None:
    for folder in ("majority", "minority"):
        (pool / folder).mkdir(parents=True, exist_ok=True)
    chunk = 500
    jobs = [(pool, s, min(s + chunk, count)) for s in range(0, count, chunk)]
    with Pool(processes, initializer=_init_generator) as workers:
        for _ in workers.imap_unordered(_write, jobs):
            pass


def link_tree(pool: Path, tree: Path, start: int, stop: int) -> None:
    for folder in ("majority", "minority"):
        (tree / folder).mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        os.link(pool / _name(i), tree / _name(i))


# --- one N, in a fresh process ----------------------------------------------------------


class _AnonPeak:
    """Sample RssAnon from /proc/self/status in a thread; ``peak_mib`` is the maximum seen."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak_kib, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.current_kib())
            time.sleep(self.every_s)

    def __enter__(self) -> _AnonPeak:
        self.peak_kib = self.current_kib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def _maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from medbalance.data.cache import PresizeCache, PresizeSettings
    from medbalance.data.catalog import load_catalog
    from medbalance.data.prepared import BatchLoader

    tree, cache_root = Path(spec["tree"]), Path(spec["cache"])
    settings = PresizeSettings(spec["presize"])
    out: dict[str, Any] = {"n": spec["n"], "load_start": _bench.load()}
    snapshot = _bench.cpu_snapshot()
    out["rss_after_imports_mib"] = _maxrss_mib(resource.RUSAGE_SELF)

    def ensure(key: str) -> Any:
        started = time.perf_counter()
        catalog = load_catalog(str(tree))
        out[f"{key}_catalog_s"] = time.perf_counter() - started
        cache = PresizeCache(settings, cache_root)
        started = time.perf_counter()
        try:
            presized, _ = cache.ensure(catalog, workers=spec["workers"])
        finally:
            cache.close()
        out[f"{key}_s"] = time.perf_counter() - started
        out[f"{key}_decoded"] = cache.decoded
        return presized, catalog

    with _AnonPeak() as anon:
        presized, catalog = ensure("build")
        out["build_anon_peak_mib"] = anon.peak_mib
        out["build_maxrss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
        out["worker_maxrss_mib"] = _maxrss_mib(resource.RUSAGE_CHILDREN)
        files = [p for p in (cache_root / settings.key).iterdir() if p.is_file()]
        out["cache_mib"] = sum(p.stat().st_size for p in files) / 2**20
        out["shards"] = sum(p.suffix == ".npy" for p in files)
        out["load_after_build"] = _bench.load()
        out["others_cpu_build"] = _bench.others_share(snapshot, _bench.cpu_snapshot())

        order = np.random.default_rng(0).permutation(len(presized))
        loader = BatchLoader(presized, catalog.labels, order, spec["batch_size"])
        started = time.perf_counter()
        seen = 0
        for x, _y in loader:
            seen += len(x)
        out["epoch_s"] = time.perf_counter() - started
        if seen != len(catalog):
            raise RuntimeError(f"epoch saw {seen} of {len(catalog)} items")
        out["epoch_anon_peak_mib"] = anon.peak_mib
        out["epoch_maxrss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
        del presized, loader, x, _y

        ensure("rebuild")
        link_tree(Path(spec["pool"]), tree, spec["n"], spec["n"] + spec["extra"])
        ensure("incremental")
        out["incremental_files"] = spec["extra"]
        out["anon_peak_mib"] = anon.peak_mib
    out["maxrss_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
    out["load_end"] = _bench.load()
    out["others_cpu"] = _bench.others_share(snapshot, _bench.cpu_snapshot())
    return out


# --- driver -----------------------------------------------------------------------------


def run_child(work: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Link a tree of the first N images, measure it in a fresh process, clean up."""
    tree, cache = work / f"tree-{n}", work / f"cache-{n}"
    link_tree(work / "pool", tree, 0, n)
    spec = {
        "n": n,
        "extra": max(1, n // 100),
        "tree": str(tree),
        "cache": str(cache),
        "pool": str(work / "pool"),
        "presize": args.presize,
        "workers": args.workers,
        "batch_size": args.batch_size,
    }
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,5000,10000,20000")
    parser.add_argument("--presize", type=int, default=160, help="128 px training × 1.25")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="measure an N again when other processes used more than this share of the CPU",
    )
    parser.add_argument("--max-attempts", type=int, default=2, help="tries per N at most")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sizes = sorted(int(n) for n in args.sizes.split(","))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="medbalance-cache-scale-", dir=args.tmp))
    rows = []
    try:
        pool = work / "pool"
        total = sizes[-1] + max(1, sizes[-1] // 100)
        t0, load0 = time.perf_counter(), _bench.load()
        generate(pool, total, processes=os.cpu_count() or 1)
        generate_s = time.perf_counter() - t0
        jpeg_mib = sum(p.stat().st_size for p in pool.rglob("*.jpg")) / 2**20
        print(
            f"generated {total} JPEGs ({jpeg_mib / total * 1024:.0f} KiB each) in "
            f"{generate_s:.0f} s, load {load0:.1f}",
            file=sys.stderr,
        )
        for n in sizes:
            attempts = []
            for _ in range(args.max_attempts):  # a fresh tree, cache and process each time
                attempts.append(run_child(work, n, args))
                row = attempts[-1]
                print(
                    f"N={n}: build {row['build_s']:.1f} s, others' CPU share "
                    f"{row['others_cpu']:.0%}",
                    file=sys.stderr,
                )
                if row["others_cpu"] <= args.max_others:
                    break
            row = min(attempts, key=lambda r: r["others_cpu"])
            row["attempts"] = len(attempts)
            rows.append(row)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    print(
        "| N | build s (µs/img) | cache MiB (KiB/img) | epoch s (µs/img) | rebuild s "
        "| +1% incremental s (decoded) | peak anon MiB build, epoch | maxrss MiB | "
        "worker maxrss MiB | load (1 min) | others' CPU share build, all |"
    )
    print("|" + "---|" * 11)
    for r in rows:
        n = r["n"]
        loads = [r["load_start"], r["load_after_build"], r["load_end"]]
        print(
            f"| {n:,} | {r['build_s']:.1f} ({r['build_s'] / n * 1e6:.0f}) "
            f"| {r['cache_mib']:.0f} ({r['cache_mib'] * 1024 / n:.1f}) "
            f"| {r['epoch_s']:.2f} ({r['epoch_s'] / n * 1e6:.0f}) | {r['rebuild_s']:.2f} "
            f"| {r['incremental_s']:.2f} ({r['incremental_decoded']}) "
            f"| {r['build_anon_peak_mib']:.0f}, {r['epoch_anon_peak_mib']:.0f} "
            f"| {r['maxrss_mib']:.0f} | {r['worker_maxrss_mib']:.0f} "
            f"| {min(loads):.1f}–{max(loads):.1f} "
            f"| {r['others_cpu_build']:.0%}, {r['others_cpu']:.0%} |"
        )
    result = {
        "rows": rows,
        "generate_s": generate_s,
        "jpeg_kib_each": jpeg_mib / total * 1024,
        "machine": _bench.machine(),
        "args": vars(args),
        "wall_s": wall,
    }
    path = _bench.write_result("cache_scale", result)
    first, last = rows[0], rows[-1]
    growth = last["n"] / first["n"]
    print(
        f"cache_scale: N {first['n']:,} -> {last['n']:,} ({growth:.0f}x): build time "
        f"{last['build_s'] / first['build_s']:.1f}x, epoch time "
        f"{last['epoch_s'] / first['epoch_s']:.1f}x, peak anon memory "
        f"{last['anon_peak_mib'] / first['anon_peak_mib']:.2f}x, rebuild "
        f"{last['rebuild_s']:.2f} s at N={last['n']:,} -> {path}"
    )


if __name__ == "__main__":
    main()
