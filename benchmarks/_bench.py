"""Helpers shared by the speed benchmarks: machine description, load average, medians, JSON.

Not a benchmark itself. The scripts in this folder import it as ``_bench`` (Python puts the
script's folder first on ``sys.path``), so run them as ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"


def load() -> float:
    """The one-minute load average (runnable processes; 2.0 fills this 2-core machine)."""
    return os.getloadavg()[0]


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall clock, CPU seconds used by the whole machine, CPU seconds used by this process and
    its finished children), for :func:`others_share`."""
    import resource
    import time

    busy = 0.0
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return time.perf_counter(), busy, own


def others_share(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Share of the machine's CPU capacity that other processes used between two snapshots.

    0 means the measurement had the machine to itself; 0.5 on 2 cores means other jobs kept one
    core busy throughout. Approximate: CPU time of children still running is not counted as ours.
    """
    wall = after[0] - before[0]
    if wall <= 0:
        return 0.0
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others) / (wall * (os.cpu_count() or 1))


def add_round_options(parser: argparse.ArgumentParser) -> None:
    """``--max-others`` and ``--max-rounds``, the arguments of :func:`quiet_rounds`."""
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="discard a round when other processes used more than this share of the CPU",
    )
    parser.add_argument("--max-rounds", type=int, default=6, help="rounds to try at most")


def quiet_rounds(
    run_round: Callable[[], dict[str, Any]],
    *,
    repeats: int,
    max_others: float,
    max_attempts: int,
    others: Callable[[dict[str, Any]], float],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``run_round`` until ``repeats`` rounds ran with other processes using at most
    ``max_others`` of the CPU, or ``max_attempts`` rounds ran.

    On this 2-core machine a torch step slows down several-fold, not two-fold, when another job
    takes one core (its two OpenMP threads wait on each other at every barrier), so a disturbed
    round says little about medbalance. Returns the quiet rounds (all rounds when none was
    quiet) and a record of what was discarded.
    """
    kept, discarded = [], []
    for _ in range(max_attempts):
        result = run_round()
        share = others(result)
        (kept if share <= max_others else discarded).append(result)
        print(f"  round: others' CPU share {share:.0%}", file=sys.stderr, flush=True)
        if len(kept) == repeats:
            break
    record = {
        "quiet_rounds": len(kept),
        "discarded_rounds": len(discarded),
        "max_others": max_others,
        "all_rounds_disturbed": not kept,
    }
    return (kept or discarded), record


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``median (min–max, n=K)`` for a table cell."""
    return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f}, n={len(values)})"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python, torch and its thread count."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages * page_size / 2**30, 1)
    except (OSError, ValueError):
        memory_gib = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "date": datetime.date.today().isoformat(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/out/<name>.json`` and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
