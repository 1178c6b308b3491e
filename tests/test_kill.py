"""kill -9 at any moment of a run (an epoch, a checkpoint write, the evaluation, the report),
then the resumed or repeated command: the same metrics as an uninterrupted run, and a clean
folder (no temporary files, nothing from two runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_npz

ARGS = ["--epochs", "4", "--model", "smallcnn", "--bootstrap", "50", "--device", "cpu"]
STABLE = ("metrics", "per_class", "confusion_matrix", "threshold", "n", "checkpoint_epoch")


def _train(data: Path, out: Path, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "medbalance", "train", str(data), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("ab") as sink:  # a file, not a pipe: nothing to drain, nothing left open
        return subprocess.Popen(
            [*command, *ARGS, *extra], env=env, stdout=sink, stderr=subprocess.STDOUT
        )


def _metrics(run: Path) -> dict[str, object]:
    result = json.loads((run / "metrics.json").read_text())
    return {key: result[key] for key in STABLE}


def _history_rows(run: Path) -> int:
    history = run / "history.csv"
    return len(history.read_text().splitlines()) - 1 if history.is_file() else 0


# each kill lands in one phase of the run, found by the files it has written so far, so a slow
# or fast machine kills in the same places
PHASES = {
    "before the first epoch ends": lambda run: (run / "config.json").is_file(),
    "between epochs": lambda run: _history_rows(run) >= 2,
    "while writing the report": lambda run: (run / "metrics.json").is_file(),
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_9_anywhere_then_resume_gives_the_same_run(
    reference: tuple[Path, dict[str, object]], tmp_path: Path, phase: str
) -> None:
    data, expected = reference
    run, log = tmp_path / "killed", tmp_path / "log.txt"
    process = _train(data, run, log=log)
    deadline = time.perf_counter() + 240
    while not PHASES[phase](run):
        assert process.poll() is None, f"the run ended before {phase}: {log.read_text()[-2000:]}"
        assert time.perf_counter() < deadline, log.read_text()[-2000:]
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resume = ("--resume",) if (run / "last.pt").is_file() else ()
    assert _train(data, run, *resume, log=log).wait() == 0, log.read_text()[-2000:]
    assert _metrics(run) == expected, f"killed {phase}"
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".part")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("kill")
    data = write_npz(root / "d.npz", {"train": (90, 30), "val": (30, 30), "test": (20, 20)})
    log = root / "log.txt"
    assert _train(data, root / "reference", log=log).wait() == 0, log.read_text()
    return data, _metrics(root / "reference")


@pytest.mark.slow
def test_kill_9_during_presize_then_again_gives_the_same_cache(tmp_path: Path) -> None:
    from conftest import write_tree
    from medbalance.data.cache import presize
    from medbalance.data.catalog import load_catalog

    # 2,500 images: a first shard of 2,048 is written, then the process is killed mid-build
    data = write_tree(tmp_path / "data", {"a": 1250, "b": 1250}, size=48, ext=".png")
    env = {**os.environ, "MEDBALANCE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "medbalance", "presize", str(data), "--size", "64"]
    command += ["--workers", "1"]
    log = tmp_path / "log.txt"
    with log.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    shards = tmp_path / "cache" / "presize" / "v1-80px-pad"
    deadline = time.perf_counter() + 120
    while not list(shards.glob("*.npy")) and process.poll() is None:
        assert time.perf_counter() < deadline, log.read_text()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "presize finished before it could be killed"
    with log.open("ab") as sink:
        assert (
            subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode == 0
        )
    catalog = load_catalog(str(data))
    cached, _, _ = presize(catalog, 80, cache_root=tmp_path / "cache" / "presize")
    fresh, _, _ = presize(catalog, 80, cache_root=tmp_path / "fresh")
    idx = np.arange(len(catalog))
    np.testing.assert_array_equal(cached.take(idx), fresh.take(idx))
