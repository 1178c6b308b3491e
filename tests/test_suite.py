"""Smoke test of benchmarks/suite.py on tiny generated data, one seed: the record, the rule
grid (whose default pair must equal what the run itself reported), the cache and the tables."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import write_tree

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("suite")
    monkeypatch.setattr(module, "SUITE_OUT", tmp_path / "out")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    return module


def test_candidates_parse_options_and_task_scopes(suite: ModuleType) -> None:
    got = suite.Candidate.parse("c1: steps=1000 ordinal:ordinal=true sampler=oversample:0.5")
    assert got.for_kind("binary") == {"steps": 1000, "sampler": "oversample:0.5"}
    assert got.for_kind("ordinal")["ordinal"] is True
    with pytest.raises(SystemExit, match="scope 'grades' is not one of"):
        suite.Candidate.parse("c2: grades:ordinal=true")


def test_selection_rules_read_validation_only(suite: ModuleType) -> None:
    rows = [
        {"epoch": 0, "val_auroc": 0.80, "val_loss": 0.9},
        {"epoch": 1, "val_auroc": 0.86, "val_loss": 0.5},
        {"epoch": 2, "val_auroc": 0.85, "val_loss": 0.6},
        {"epoch": 3, "val_auroc": 0.70, "val_loss": 1.2},
    ]
    assert suite.select_epoch("best", rows, 20, 20) == 1
    assert suite.select_epoch("within-noise", rows, 20, 20) == 2  # 0.01 is inside the noise
    assert suite.select_epoch("val-loss", rows, 20, 20) == 1
    assert suite.select_epoch("last", rows, 20, 20) == 3


@pytest.mark.parametrize("kind", ["binary", "ordinal"])
def test_one_set_one_seed(suite: ModuleType, tmp_path: Path, kind: str) -> None:
    if kind == "binary":
        counts = {"train": {"a": 30, "b": 10}, "val": {"a": 10, "b": 10}, "test": {"a": 8, "b": 8}}
    else:
        per = {"train": 12, "val": 6, "test": 6}
        counts = {s: {"0": n, "1": n, "2": n} for s, n in per.items()}
    data = write_tree(tmp_path / "data", counts)
    tiny = suite.SuiteSet("tiny", str(data), kind)  # an absolute path stands for itself
    candidate = suite.Candidate.parse("smoke: epochs=2 model=smallcnn size=32 precise_bn=0")
    records = suite.run_all([candidate], [tiny], "full", 1)
    record = records[0]
    assert (record["epochs"], record["set"], record["seed"]) == (2, "tiny", 0)
    # number-named classes train as grades (CORN, expected-grade); the last epoch is kept
    default = "youden" if kind == "binary" else "expected-grade"
    for key, value in record["test"].items():  # the run's own numbers are the grid's default
        assert record["grid"][f"last|{default}"][key] == pytest.approx(value, abs=1e-6), key
    if kind == "ordinal":
        assert "quadratic_kappa" in record["test"]
        assert "last|expected-grade" in record["grid"]
    cached = tmp_path / "records" / "full" / "smoke" / "tiny" / "s0.json"
    assert json.loads(cached.read_text()) == record
    again = suite.run_all([candidate], [tiny], "full", 1)  # read back, not trained again
    assert again == records
    table = suite.table(records)
    assert "| tiny | smoke | 1 |" in table and "| smoke | `epochs=2" in table
    assert "| tiny | smoke | last |" in suite.grid_table(records)


def test_the_suite_sets_are_the_seven_of_issue_21(suite: ModuleType) -> None:
    assert len(suite.SETS) == 7
    assert {s.kind for s in suite.SETS} == {"binary", "multiclass", "ordinal"}
    assert all(s.options.get("size", 64) <= 128 for s in suite.SETS)
    del sys.modules["suite"]
