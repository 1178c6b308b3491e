"""Tests for medbalance.training.guard through the command line: a finished run is never
overwritten or mixed with another, --resume continues only the same run, and every refusal is one
line with exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conftest import write_npz
from medbalance.cli import app

FAST = ["--epochs", "2", "--model", "smallcnn", "--bootstrap", "20", "--device", "cpu"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("guard")
    os.environ["MEDBALANCE_CACHE"] = str(root / "cache")
    data = write_npz(root / "a.npz", {"train": (60, 20), "val": (20, 20), "test": (16, 16)})
    run = root / "run"
    here = Path.cwd()
    os.chdir(root)  # trained on a relative path, as typed: "a.npz"
    try:
        result = invoke("train", "a.npz", "--out", run, *FAST)
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    return data, run


@pytest.fixture
def run(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained[1], copy)
    return copy


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_finished_run_is_not_overwritten(trained: tuple[Path, Path], run: Path) -> None:
    other = write_npz(run.parent / "b.npz", {"train": (40, 40), "val": (20, 20), "test": (8, 8)})
    before = _snapshot(run)
    message = refused(invoke("train", other, "--out", run, *FAST))
    assert f"{run} already holds a run" in message and "--overwrite" in message
    assert _snapshot(run) == before


def test_overwrite_replaces_the_run_and_keeps_other_files(
    trained: tuple[Path, Path], run: Path
) -> None:
    (run / "notes.txt").write_text("mine")
    (run / ".metrics.json.abc.part").write_text("orphan of a killed write")
    result = invoke("train", trained[0], "--out", run, *FAST, "--epochs", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / "notes.txt").read_text() == "mine"
    assert not list(run.glob(".*.part"))
    assert len((run / "history.csv").read_text().splitlines()) == 2  # header + 1 epoch
    assert not list(run.glob(".replaced-*")) and not (run / ".medbalance.lock").exists()


# --- issue 22: every check before anything moves; the old run comes back on failure --------


@pytest.mark.parametrize(
    "bad",
    [
        ["--weights", "missing.safetensors"],
        ["--sampler", "oversampel"],
        ["--decision", "offsets:balanced"],  # a multi-class rule on binary data: a data check
    ],
)
def test_overwrite_checks_everything_before_touching_the_run(
    trained: tuple[Path, Path], run: Path, bad: list[str]
) -> None:
    before = _snapshot(run)
    result = invoke("train", trained[0], "--out", run, *FAST, "--overwrite", *bad)
    assert result.exit_code == 2, result.output
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.iterdir()) == sorted(before)


def test_overwrite_with_unreadable_data_keeps_the_run(run: Path, tmp_path: Path) -> None:
    before = _snapshot(run)
    refused(invoke("train", tmp_path / "no-such-data", "--out", run, *FAST, "--overwrite"))
    assert _snapshot(run) == before


def test_overwrite_never_empties_a_folder_that_is_not_a_run(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("metrics.json", "report.html", "predictions.csv"):
        (mine / name).write_text(f"my {name}")
    message = refused(invoke("train", trained[0], "--out", mine, *FAST, "--overwrite"))
    assert "is not a medbalance training run" in message
    assert {p.name: p.read_text() for p in mine.iterdir()} == {
        n: f"my {n}" for n in ("metrics.json", "report.html", "predictions.csv")
    }


def test_out_inside_the_data_folder_is_refused(tmp_path: Path) -> None:
    from conftest import write_tree

    data = write_tree(tmp_path / "data", {"a": 6, "b": 6})
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    for out in (data, data / "run"):
        message = refused(invoke("train", data, "--out", out, *FAST))
        assert "inside the data folder" in message
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_a_failed_overwrite_puts_the_old_run_back(
    trained: tuple[Path, Path], run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medbalance.training import engine

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(engine, "_run_epoch", broken)
    before = _snapshot(run)
    result = invoke("train", trained[0], "--out", run, *FAST, "--overwrite")
    assert result.exit_code != 0 and "the disk went away" in result.output
    assert _snapshot(run) == before
    assert not list(run.glob(".replaced-*"))


def test_a_start_killed_before_its_first_checkpoint_restarts(
    trained: tuple[Path, Path], run: Path, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("config.json", "history.csv"):  # kill -9 after history.csv, before last.pt
        shutil.copy(run / name, killed / name)
    (killed / ".history.csv.x1.part").write_text("half a write")
    here = Path.cwd()
    os.chdir(trained[0].parent)  # the same command as the killed one, typed in the same place
    try:
        result = invoke("train", "a.npz", "--out", killed, *FAST)
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    assert (killed / "last.pt").is_file() and (killed / "metrics.json").is_file()
    assert not list(killed.glob(".replaced-*")) and not list(killed.glob(".*.part"))


def test_a_second_process_is_refused_naming_the_first(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from medbalance.core.locks import "
         "folder_lock\nwith folder_lock(Path(sys.argv[1])):\n print('held', flush=True); "
         "time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        message = refused(invoke("train", trained[0], "--out", out, *FAST))
        assert f"{out} is in use by process {holder.pid}" in message
        assert [p.name for p in out.iterdir()] == [".medbalance.lock"]  # the holder's only
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    result = invoke("train", trained[0], "--out", out, *FAST, "--epochs", "1")
    assert result.exit_code == 0, result.output  # the kernel freed the killed holder's lock


def test_resume_refuses_a_changed_configuration(trained: tuple[Path, Path], run: Path) -> None:
    before = _snapshot(run)
    args = ("train", trained[0], "--out", run, *FAST, "--resume")
    message = refused(invoke(*args, "--loss", "focal", "--lr", "0.01"))
    assert "--resume" in message and "loss 'ce' -> 'focal'" in message
    assert "lr 0.002 -> 0.01" in message and "may change only" in message
    assert _snapshot(run) == before  # config.json not rewritten


def test_resume_may_change_how_the_run_is_reported(trained: tuple[Path, Path], run: Path) -> None:
    result = invoke("train", trained[0], "--out", run, *FAST, "--resume", "--bootstrap", "30")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["bootstrap"] == 30


def test_resume_of_a_run_older_than_an_option(trained: tuple[Path, Path], run: Path) -> None:
    """A config.json written before --ordinal/--class-order existed lacks those keys: they
    count as their defaults, so --resume continues, and a changed one is still refused."""
    stored = json.loads((run / "config.json").read_text())
    for key in ("ordinal", "class_order"):
        stored.pop(key)
    (run / "config.json").write_text(json.dumps(stored))
    base = ("train", trained[0], "--out", run, *FAST, "--resume")
    assert "class_order None -> " in refused(invoke(*base, "--class-order", "0,1"))
    result = invoke(*base)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "not a readable medbalance training state"), (b"garbage", "not a readable")],
)
def test_resume_from_a_damaged_state(
    trained: tuple[Path, Path], run: Path, content: bytes, why: str
) -> None:
    (run / "last.pt").write_bytes(content)
    message = refused(invoke("train", trained[0], "--out", run, *FAST, "--resume"))
    assert str(run / "last.pt") in message and why in message and "--overwrite" in message


def test_resume_from_a_pickle_runs_no_code(
    trained: tuple[Path, Path], run: Path, tmp_path: Path
) -> None:
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    import torch

    torch.save({"x": Evil()}, run / "last.pt", pickle_module=pickle)
    message = refused(invoke("train", trained[0], "--out", run, *FAST, "--resume"))
    assert "not a readable medbalance training state" in message
    assert not marker.exists()


def test_out_that_is_a_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    message = refused(invoke("train", trained[0], "--out", target, *FAST))
    assert "is a file" in message and target.read_text() == "keep me"


def test_report_refuses_a_folder_mixing_two_runs(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run_id"]  # every evaluation names its run
    metrics["run_id"] = "0123456789ab"
    (run / "metrics.json").write_text(json.dumps(metrics))
    message = refused(invoke("report", run))
    assert "mixes two runs" in message


def test_evaluate_from_another_working_folder(
    trained: tuple[Path, Path], run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run was trained on "a.npz" in another folder: the checkpoint keeps where that is
    assert json.loads((run / "config.json").read_text())["data"] == "a.npz"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("evaluate", run, "--bootstrap", 20, "--no-report")
    assert result.exit_code == 0, result.output
    warned = json.loads((run / "metrics.json").read_text())["warnings"]
    assert not any("changed since training" in w for w in warned)  # same data


def test_resume_refuses_other_pixels_under_the_same_file_names(tmp_path: Path) -> None:
    from PIL import Image

    from conftest import write_tree
    from medbalance.training.config import TrainConfig
    from medbalance.training.engine import fit

    data = write_tree(tmp_path / "data", {"train": {"a": 12, "b": 12}, "val": {"a": 6, "b": 6}})
    config = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), epochs=3, model="smallcnn", size=32,
        batch_size=8, device="cpu", precise_bn=0, bootstrap=0,
    )  # fmt: skip
    first = fit(config, stop_after_epoch=0)  # as if killed after the first epoch
    image = data / "train" / "a" / "img_0.png"
    Image.new("L", (32, 32), color=255).save(image)  # same name, other pixels
    with pytest.raises(
        ValueError,
        match=r"trained on other data .*first differing files: train/a/img_0.png "
        r"\(other pixels\)",
    ):
        fit(config, resume=True)
    assert first.trainer is not None


def test_without_out_each_run_gets_a_new_announced_folder(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.chdir(tmp_path)
    first = invoke("train", trained[0], *FAST, "--epochs", "1")
    assert first.exit_code == 0, first.output
    time.sleep(1.1)  # the folder name carries the time to the second
    second = invoke("train", trained[0], *FAST, "--epochs", "1")
    assert second.exit_code == 0, second.output
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("a-") for f in folders)
    assert all((f / "metrics.json").is_file() for f in folders)
    resumed = invoke("train", trained[0], *FAST, "--resume")
    assert resumed.exit_code == 2 and "--resume needs --out" in resumed.output
