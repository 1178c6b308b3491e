"""What a run tells its user: the header, epoch lines in a notebook, ``verbose=False`` and
``--quiet``, and where progress bars are drawn."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import medbalance as mb
from medbalance.core import feedback
from medbalance.training.budget import Plan
from medbalance.training.config import ResolvedConfig
from medbalance.training.header import CV_ADVISED_UP_TO, cv_advice, header_lines


@pytest.fixture
def unconfigured_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging as a fresh notebook kernel has it: no root handlers, medbalance's level unset."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger("medbalance"), "handlers", [])
    monkeypatch.setattr(logging.getLogger("medbalance"), "level", logging.NOTSET)


@pytest.mark.usefixtures("unconfigured_logging")
def test_api_train_speaks_on_stdout_and_verbose_false_keeps_quiet(
    tiny_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = dict(epochs=2, size=28, bootstrap=20, device="cpu")
    mb.train(tiny_npz, out=tmp_path / "a", **options)
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("training ") and said[0].endswith("a")
    header = {line.split()[0]: line for line in said[1:12]}
    assert set(header) == {
        "data", "task", "model", "remedy", "epochs", "selection", "decision", "precision",
        "device", "output", "advice",
    }  # fmt: skip
    assert "small data (100 training images)" in header["advice"]  # 100 is below the suite's
    assert "train 100, val 40, test 40 images, 2 classes, 4.0:1 in train" in header["data"]
    assert "youden, chosen on val at the end (the binary default)" in header["decision"]
    assert "2 (--epochs 2;" in header["epochs"]
    assert said[12].split()[0] == "warning" and "40 images" in said[12]  # after the header
    assert [line.split()[:2] for line in said if line.startswith("epoch ")] == [
        ["epoch", "0"], ["epoch", "1"],
    ]  # fmt: skip
    assert said[-1] == f"report: {tmp_path / 'a' / 'report.html'}"
    # the data's warnings follow the run: metrics.json, the report, and evaluate after it
    warned = json.loads((tmp_path / "a" / "metrics.json").read_text())["warnings"]
    assert any("40 images" in w for w in warned)
    page = (tmp_path / "a" / "report.html").read_text()
    assert "40 images" in page
    assert "Small data (100 training images)" in page and "medbalance cv may do better" in page
    again = mb.evaluate(tmp_path / "a", bootstrap=20, verbose=False)
    assert again["warnings"] == warned
    capsys.readouterr()

    mb.train(tiny_npz, out=tmp_path / "b", verbose=False, **options)
    assert capsys.readouterr().out == ""
    assert logging.getLogger("medbalance").level == logging.NOTSET  # restored after the call
    assert logging.getLogger("medbalance").handlers == []


def _resolved(names: tuple[str, ...], **given: object) -> ResolvedConfig:
    values: dict[str, object] = dict(
        data="grades/", out="runs/g", size=64, presize=80, model="smallcnn", lr=2e-3, epochs=12,
        ordinal=False, class_names=names, positive_index=0,
    )  # fmt: skip
    return ResolvedConfig(**{**values, **given})  # type: ignore[arg-type]


def test_header_states_the_decision_rule_of_the_task_and_why() -> None:
    counts = {"train": [60, 20, 5], "val": [10, 5, 5], "test": [0, 0, 0]}
    plan = Plan(12, 7, "the default budget of 1,000 steps")
    grades = _resolved(("0", "1", "2"), ordinal=True, threshold="expected-grade")
    lines = header_lines(
        mb.TrainConfig(data="grades/"), grades, plan=plan, counts=counts, device="cpu"
    )
    text = "\n".join(lines)
    assert "train 85, val 20 images, 3 classes, 12.0:1 in train" in text  # no empty test
    assert "ordinal grades 0, 1, 2 (CORN head)" in text
    assert "expected-grade, chosen on val at the end (the ordinal default)" in text
    assert "12 (the default budget of 1,000 steps; 84 optimizer steps)" in text
    assert "size: the default on a CPU; model: the default for 64 px on a CPU" in text
    assert lines[-2].split() == ["output", "runs/g"]
    assert lines[-1].startswith("advice     small data (85 training images)")
    plain = _resolved(("a", "b", "c"), threshold="offsets:balanced")
    given = mb.TrainConfig(data="x/", threshold="argmax", model="resnet18")
    text = "\n".join(header_lines(given, plain, plan=plan, counts=counts, device="cuda"))
    assert "3 classes (a, b, c)" in text
    assert "offsets:balanced, chosen on val at the end (--threshold)" in text
    assert "model: --model" in text and "size: the default on a GPU" in text


def test_header_advises_cv_only_at_or_below_the_suite_size() -> None:
    plan = Plan(60, 2, "the default budget of 1,000 steps")
    run = _resolved(("a", "b"), threshold="youden")
    given = mb.TrainConfig(data="x/")

    def advice(train: list[int], **options: bool) -> list[str]:
        counts = {"train": train, "val": [10, 10], "test": [10, 10]}
        lines = header_lines(given, run, plan=plan, counts=counts, device="cpu", **options)
        return [line for line in lines if line.startswith("advice")]

    small = advice([CV_ADVISED_UP_TO - 100, 100])
    assert len(small) == 1 and f"small data ({CV_ADVISED_UP_TO:,} training images)" in small[0]
    assert "5-fold cv ensemble scored" in small[0] and "try `medbalance cv grades/`" in small[0]
    assert advice([CV_ADVISED_UP_TO - 100, 101]) == []  # one image above the size
    assert advice([5000, 500]) == []
    assert advice([30, 10], advise_cv=False) == []  # a fold of cv is already what it advises
    assert cv_advice(0) is None  # nothing trained (evaluate-only data)


def test_bars_only_on_a_terminal_or_in_jupyter_with_widgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(feedback, "in_jupyter", lambda: False)
    assert not feedback.bars_wanted()  # a file or a pipe: the epoch lines are the progress
    monkeypatch.setattr(feedback, "in_jupyter", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    assert not feedback.bars_wanted()
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert feedback.bars_wanted()
    with feedback.speaking(verbose=False):
        assert not feedback.bars_wanted()
    assert feedback.bars_wanted()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(feedback, "in_jupyter", lambda: False)
    assert feedback.bars_wanted()


def test_speaking_leaves_a_program_that_shows_info_itself_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("medbalance")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.INFO)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(sys.stderr)])
    with feedback.speaking():
        assert logger.handlers == []  # the program's own handler shows the records
        logger.info("once")
    assert capsys.readouterr().out == ""


def test_quiet_cli_run_says_nothing_but_writes_the_run(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    command = [sys.executable, "-m", "medbalance", "--quiet", "train", str(tiny_npz)]
    args = ["--out", str(out), "--epochs", "1", "--bootstrap", "20", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "epoch" not in done.stderr and "training" not in done.stderr
    assert "warning" in done.stderr and "40 images" in done.stderr  # warnings still said
    assert json.loads((out / "config.json").read_text())["threshold"] == "youden"
