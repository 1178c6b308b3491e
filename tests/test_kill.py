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


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_gives_the_same_run(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "d.npz", {"train": (90, 30), "val": (30, 30), "test": (20, 20)})
    reference = tmp_path / "reference"
    log = tmp_path / "log.txt"
    started = time.perf_counter()
    assert _train(data, reference, log=log).wait() == 0, log.read_text()
    total = time.perf_counter() - started
    expected = _metrics(reference)
    for k, fraction in enumerate((0.35, 0.6, 0.8, 0.93)):
        run = tmp_path / f"killed{k}"
        process = _train(data, run, log=log)
        time.sleep(fraction * total)
        process.send_signal(signal.SIGKILL)
        process.wait()
        resume = ("--resume",) if (run / "last.pt").is_file() else ()
        assert _train(data, run, *resume, log=log).wait() == 0, log.read_text()[-2000:]
        assert _metrics(run) == expected, f"killed at {fraction:.0%} of the run"
        leftovers = [p.name for p in run.iterdir() if p.name.endswith(".part")]
        assert not leftovers, leftovers
