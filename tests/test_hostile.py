"""Hostile probes end to end (issue 22): a full disk, a cache path that is a file, storage
errors as one line with exit code 2. Concurrent trains, overwrite refusals and fingerprint
mismatches are in test_run_guard.py, output files in test_cli.py, ensemble pins in
test_ensembles.py."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conftest import write_npz, write_tree
from medbalance.cli import app
from medbalance.cli.options import storage_problem

FAST = ["--epochs", "1", "--model", "smallcnn", "--bootstrap", "20", "--device", "cpu"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs: room for a run's config and history, not for its 19 MB last.pt."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_exit_2_and_the_same_command_then_works(
    small_disk: Path, tmp_path: Path
) -> None:
    data = write_npz(tmp_path / "d.npz", {"train": (40, 20), "val": (20, 20), "test": (10, 10)})
    run = small_disk / "run"
    full = invoke("train", data, "--out", run, *FAST)
    assert full.exit_code == 2, full.output
    lines = [line for line in full.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: the disk is full") and "run the same command" in lines[-1]
    assert "Traceback" not in full.output and "internal error" not in full.output
    assert not (run / "last.pt").exists()
    subprocess.run(["mount", "-o", "remount,size=128m", str(small_disk)], check=True)
    again = invoke("train", data, "--out", run, *FAST)  # killed before its first checkpoint
    assert again.exit_code == 0, again.output
    assert (run / "last.pt").is_file() and (run / "metrics.json").is_file()
    assert not list(run.glob(".*.part"))


def test_a_cache_path_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_tree(tmp_path / "data", {"a": 12, "b": 12})  # files: presized into the cache
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDBALANCE_CACHE", str(blocker))
    result = invoke("train", data, "--out", tmp_path / "run", *FAST, "--size", "32")
    assert result.exit_code == 2, result.output
    assert f"MEDBALANCE_CACHE={blocker} is not a folder" in result.output
    assert blocker.read_text() == "not a folder" and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/run/last.pt"), "disk is full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/data/run/x"), "disk is full"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "give a writable --out"),
        (OSError(errno.EACCES, "Permission denied", "/root/run"), "cannot write /root/run"),
        (RuntimeError("[enforce fail at inline_container.cc] unexpected pos 2357120 vs 2357016"),
         "disk is full"),
    ],
)  # fmt: skip
def test_storage_errors_are_the_users_to_fix(error: BaseException, said: str) -> None:
    message = storage_problem(error)
    assert message is not None and said in message


def test_a_wrapped_storage_error_is_found_and_others_are_not() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/shard.npy")
        except OSError as inner:
            raise RuntimeError("while writing a shard") from inner
    except RuntimeError as outer:
        assert "disk is full" in (storage_problem(outer) or "")
    assert storage_problem(ValueError("a bug")) is None
    assert storage_problem(OSError(errno.ENOENT, "No such file", "/x")) is None
