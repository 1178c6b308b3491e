"""Tests for the public Python API: the README example runs, the public names stay, the import
stays light, and the API agrees with the command line's outputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import medbalance as mb

README = Path(__file__).resolve().parents[1] / "README.md"

# The promised public names. Changing this list is an API change: say so in the release notes.
PUBLIC = [
    "ConfigError",
    "Decision",
    "Run",
    "TrainConfig",
    "__version__",
    "compare",
    "cv",
    "ensemble",
    "estimate_prevalence",
    "evaluate",
    "inspect",
    "load_run",
    "losses",
    "metrics",
    "predict",
    "recalibrate",
    "samplers",
    "thresholds",
    "train",
]
BUILDING_BLOCKS = {
    "samplers": ["OversampleSampler", "SAMPLERS", "create_sampler", "parse_sampler_spec"],
    "losses": ["FocalLoss", "LDAMLoss", "LOSSES", "create_loss", "focal_loss"],
    "thresholds": [
        "Decision",
        "OperatingPoint",
        "choose_decision",
        "choose_threshold",
        "decide",
        "tune_rule",
    ],
    "metrics": ["binary_metrics", "bootstrap_ci", "multiclass_metrics", "with_ci"],
}


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python example under 'Use from Python'"
    return match.group(1)


@pytest.mark.slow
def test_readme_example_runs(
    tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tiny_tree == tmp_path / "data"  # the example's "data/"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    run = namespace["run"]
    assert isinstance(run, mb.Run)
    # what the example printed is what the run folder holds
    metrics = (tmp_path / "runs/a/metrics.json").read_text()
    assert '"policy": "sensitivity>=0.95"' in metrics  # the example's last evaluate
    # re-chosen on the run's own val split: stored, so predict and export use what metrics.json
    # reports
    assert run.decision.policy == "sensitivity>=0.95" and run.decision.chosen_on == "val"
    rows = namespace["rows"]
    assert isinstance(rows, list) and len(rows) == 20  # data/test/ holds 20 images
    assert (tmp_path / "cmp/comparison.csv").is_file()


def test_public_names_snapshot() -> None:
    assert sorted(mb.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(mb, name) is not None, name
    for module, names in BUILDING_BLOCKS.items():
        public = getattr(mb, module)
        assert set(names) <= set(public.__all__), module
        for name in public.__all__:
            assert hasattr(public, name), f"medbalance.{module}.{name}"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        mb.trian  # type: ignore[attr-defined]  # noqa: B018


def test_import_stays_light() -> None:
    code = (
        "import sys, medbalance; "
        "heavy = [m for m in ('torch', 'matplotlib', 'sklearn', 'timm') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_train_refuses_an_unknown_option_before_training(tiny_tree: Path, tmp_path: Path) -> None:
    data = tiny_tree
    with pytest.raises(mb.ConfigError, match="did you mean 'sampler'"):
        mb.train(data, out=tmp_path / "r", samplr="oversample")
    with pytest.raises(mb.ConfigError, match="unknown loss 'focl'.*did you mean 'focal'"):
        mb.train(data, out=tmp_path / "r", loss="focl")
    assert not (tmp_path / "r").exists()


def test_load_run_of_a_folder_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a trained run folder"):
        mb.load_run(tmp_path)


@pytest.mark.slow
def test_api_predict_matches_the_cli_csv(tiny_tree: Path, tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from medbalance.cli import app

    data = tiny_tree
    run = mb.train(data, out=tmp_path / "run", epochs=1, size=32, model="smallcnn", bootstrap=20)
    rows = run.predict(data / "test")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        app, ["predict", str(run.checkpoint), str(data / "test"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r.id for r in rows] == [r["id"] for r in csv_rows]
    assert [r.label for r in rows] == [r["predicted_label"] for r in csv_rows]
    for row, written in zip(rows, csv_rows, strict=True):
        assert row.probabilities["pneumonia"] == pytest.approx(
            float(written["prob_pneumonia"]), abs=1e-6
        )
    # the decision the rows used is the run's stored one
    decision = run.decision
    assert decision.threshold is not None
    assert all(
        (r.label == "pneumonia") == (r.probabilities["pneumonia"] >= decision.threshold)
        for r in rows
    )


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda: mb.train("data/", out=3), "out must be a path .* got 3"),
        (lambda: mb.train("data/", resume=True), "resume needs out="),
        (lambda: mb.train(None), "data must be a path .* got None"),
        (lambda: mb.train("data/", out="r", epochs=True), "epochs must be a positive integer"),
        (lambda: mb.cv("data/", folds="x"), "folds must be a whole number >= 2, got 'x'"),
        (lambda: mb.cv("data/", folds=1), "folds must be a whole number >= 2, got 1"),
        (lambda: mb.evaluate(None), "run must be a path .* got None"),
        (lambda: mb.predict("run/", [None]), "inputs must be a path .* got None"),
        (lambda: mb.ensemble("run/", out="e"), "runs must be a list of two or more runs"),
        (lambda: mb.compare("data/", seeds=0), "seeds must be a whole number >= 1, got 0"),
        (lambda: mb.inspect(3), "data must be a path .* got 3"),
    ],
)
def test_api_misuse_is_a_config_error_naming_the_argument(call: Any, said: str) -> None:
    from medbalance.training.config import ConfigError

    with pytest.raises(ConfigError, match=said):
        call()
    assert not Path("None").exists()


@pytest.mark.slow
def test_a_decision_rechosen_on_the_runs_val_moves_every_file_of_the_run(
    tiny_npz: Path, tmp_path: Path
) -> None:
    import json

    run = mb.train(tiny_npz, out=tmp_path / "r", epochs=1, size=28, bootstrap=20, verbose=False)
    assert run.decision.policy == "youden"
    mb.evaluate(run, split="val", threshold="sensitivity>=0.95", report=False, bootstrap=20)
    # the checkpoint, the test metrics, the val metrics and the report all show the new decision
    assert run.decision.policy == "sensitivity>=0.95"
    for name in ("metrics.json", "metrics_val.json"):
        record = json.loads((run.path / name).read_text())["threshold"]
        assert record["policy"] == "sensitivity>=0.95", name
    assert "sensitivity&gt;=0.95" in (run.path / "report.html").read_text()
    # chosen on other data's val split: for that evaluation only; the checkpoint keeps its own
    mb.evaluate(run, tiny_npz, threshold="f1", report=False, bootstrap=20, verbose=False)
    assert run.decision.policy == "sensitivity>=0.95"
