"""Tests for ``medbalance recalibrate``: a run's calibration, operating point and conformal scores
re-fitted on a labelled sample from another site, the weights shared, the sample's test split
checking the result once."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_npz, write_tree
from medbalance.cli.app import app

runner = CliRunner()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run trained at one site (3:8 positives in train) and a site sample where the
    positive class is common (25 of 35 per split)."""
    from medbalance.training.config import TrainConfig
    from medbalance.workflows.training import train_and_evaluate

    root = tmp_path_factory.mktemp("recal")
    os.environ["MEDBALANCE_CACHE"] = str(root / "cache")
    data = write_npz(root / "d.npz", {"train": (40, 15), "val": (15, 15), "test": (12, 12)})
    config = TrainConfig(
        data=str(data), out=str(root / "run"), epochs=1, model="smallcnn", bootstrap=50,
        device="cpu", seed=0,
    )  # fmt: skip
    train_and_evaluate(config)
    site = write_npz(
        root / "site.npz", {"train": (10, 25), "val": (10, 25), "test": (10, 25)}, seed=7
    )
    return root / "run", site


@pytest.fixture(scope="module")
def recalibrated(trained: tuple[Path, Path]) -> Path:
    run, site = trained
    out = run.parent / "site_model"
    result = runner.invoke(
        app, ["recalibrate", str(run), str(site), "--out", str(out), "--bootstrap", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "tuned on 70 site case(s), checked on 35" in result.output
    return out


def test_the_site_sample_chooses_the_operating_point_and_the_weights_are_shared(
    trained: tuple[Path, Path], recalibrated: Path
) -> None:
    from medbalance.evaluation.thresholds import choose_threshold

    run, _ = trained
    assert not list(recalibrated.glob("*.safetensors"))  # no copy of the weights
    record = json.loads((recalibrated / "ensemble.json").read_text())
    assert record["members"] == ["../run/best.safetensors"]
    run_meta = json.loads((run / "metrics.json").read_text())
    assert record["member_run_ids"] == [run_meta["run_id"]]
    assert record["decision"]["chosen_on"] == record["chosen_on"] == "site"
    # the threshold is the run's policy (youden) on the 70 tuning rows of the site's sample
    tuning = _rows(recalibrated / "predictions_val.csv")
    assert len(tuning) == 70
    y = np.array([r["true_label"] == "1" for r in tuning])
    p = np.array([float(r["prob_1"]) for r in tuning])
    assert record["decision"]["value"] == pytest.approx(choose_threshold("youden", y, p).value)
    # the calibration knows the site's class shares (20 of 70 negatives)
    assert record["calibration"]["chosen_on"] == "site"
    assert record["calibration"]["tuning_prior"] == pytest.approx([20 / 70, 50 / 70])
    metrics = json.loads((recalibrated / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 35
    site = metrics["recalibration"]
    assert site["tuning_cases"] == {"0": 20, "1": 50}
    assert site["check_cases"] == {"0": 10, "1": 25}
    assert site["decision_before"]["chosen_on"] == "val"
    assert site["decision_before"]["value"] == pytest.approx(run_meta["threshold"]["value"])
    page = (recalibrated / "report.html").read_text()
    assert "Model weights" in page and "shared, not copied" in page
    assert "70 cases (20 0, 50 1) outside the sample" in page


def test_predict_and_evaluate_use_the_sites_decision(
    trained: tuple[Path, Path], recalibrated: Path, tmp_path: Path
) -> None:
    _, site = trained
    threshold = json.loads((recalibrated / "ensemble.json").read_text())["decision"]["value"]
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(recalibrated), str(site), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    called = [r["predicted_label"] == "1" for r in rows]
    assert called == [float(r["prob_1"]) >= threshold for r in rows]
    # evaluate without data re-evaluates the site sample's test split
    result = runner.invoke(
        app, ["evaluate", str(recalibrated), "--bootstrap", "20", "--prevalence", "0.2",
              "--estimate-prevalence"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((recalibrated / "metrics.json").read_text())
    assert metrics["n"] == 35 and metrics["threshold"]["chosen_on"] == "site"
    # another prevalence and the estimated one, from the site's calibration
    site = metrics["site"]
    assert site["at_prior"]["prior"] == {"0": 0.8, "1": 0.2}
    assert site["evaluated_prior"] == pytest.approx({"0": 10 / 35, "1": 25 / 35})
    assert 0.0 < site["estimated_prior"]["1"]["value"] < 1.0


def test_a_new_policy_is_chosen_on_the_site_cases(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, site = trained
    out = tmp_path / "sens"
    result = runner.invoke(
        app,
        ["recalibrate", str(run), str(site), "--out", str(out), "--bootstrap", "20",
         "--threshold", "sensitivity>=0.9", "--calibration", "vector"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "ensemble.json").read_text())["calibration"]["method"] == "vector"
    decision = json.loads((out / "ensemble.json").read_text())["decision"]
    assert decision["policy"] == "sensitivity>=0.9" and decision["sensitivity"] >= 0.9
    # re-chosen later on the same site cases, never on the check split
    result = runner.invoke(
        app, ["evaluate", str(out), "--threshold", "youden", "--bootstrap", "20"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "ensemble.json").read_text())["decision"]["chosen_on"] == "site"


def test_a_sample_without_splits_is_split_and_its_test_part_checks(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = trained
    sample = write_tree(tmp_path / "sample", {"0": 30, "1": 30}, size=28, seed=3)
    out = tmp_path / "tree_site"
    result = runner.invoke(
        app, ["recalibrate", str(run), str(sample), "--out", str(out), "--bootstrap", "20"]
    )
    assert result.exit_code == 0, result.output
    site = json.loads((out / "metrics.json").read_text())["recalibration"]
    tuning, check = sum(site["tuning_cases"].values()), sum(site["check_cases"].values())
    assert tuning + check == 60 and 6 <= check <= 12


def _refused(args: list[str]) -> str:
    result = runner.invoke(app, ["recalibrate", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_bad_requests_are_refused_before_anything_is_written(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, site = trained
    before = sorted(p.name for p in run.iterdir())
    assert "is the run itself" in _refused([str(run), str(site), "--out", str(run)])
    assert sorted(p.name for p in run.iterdir()) == before
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert "is not empty" in _refused([str(run), str(site), "--out", str(full)])
    assert (full / "notes.txt").read_text() == "mine"
    other = write_tree(tmp_path / "other", {"cat": 20, "dog": 20}, size=28)
    out = tmp_path / "never"
    assert "differ from the model's" in _refused([str(run), str(other), "--out", str(out)])
    only_test = write_npz(tmp_path / "t.npz", {"test": (10, 10)})
    assert "outside its test split" in _refused([str(run), str(only_test), "--out", str(out)])
    # a guarantee that 50 positives cannot give: the count needed, not a silent miss
    message = _refused(
        [str(run), str(site), "--out", str(out), "--threshold", "sensitivity>=0.99",
         "--guarantee", "0.95"]
    )  # fmt: skip
    assert "positive" in message
    assert not out.exists()


def test_a_finished_recalibration_is_not_replaced(
    trained: tuple[Path, Path], recalibrated: Path
) -> None:
    run, site = trained
    record = (recalibrated / "ensemble.json").read_text()
    assert "already holds" in _refused([str(run), str(site), "--out", str(recalibrated)])
    assert (recalibrated / "ensemble.json").read_text() == record


def test_the_python_api(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import medbalance as mb

    run, site = trained
    result = mb.recalibrate(
        run, site, out=tmp_path / "api", bootstrap=20, calibration="bcts", verbose=False
    )
    assert result["recalibration"]["tuning_cases"] == {"0": 20, "1": 50}
    # the bias moves the base rate to the site sample's shares (its defining property)
    assert result["calibration"]["method"] == "bcts"
    record = json.loads((tmp_path / "api" / "ensemble.json").read_text())["calibration"]
    assert record["tuning_prior"] == pytest.approx([20 / 70, 50 / 70])
    with pytest.raises(ValueError, match="one of temperature"):
        mb.recalibrate(run, site, out=tmp_path / "bad", calibration="platt", verbose=False)
    again = mb.evaluate(tmp_path / "api", bootstrap=20, report=False, verbose=False)
    assert again["threshold"]["chosen_on"] == "site" and again["n"] == 35


def test_the_export_sidecar_carries_the_sites_calibration_and_conformal_sets(
    trained: tuple[Path, Path], recalibrated: Path, tmp_path: Path
) -> None:
    from medbalance.evaluation.export import export_model

    _, site = trained
    _, sidecar_file = export_model(recalibrated, "torchscript", tmp_path / "site.pt")
    sidecar = json.loads(sidecar_file.read_text())
    record = json.loads((recalibrated / "ensemble.json").read_text())
    assert sidecar["calibration"] == record["calibration"]  # the site's, not the run's
    assert sidecar["calibration_rule"].startswith("calibrated = softmax((log p")
    assert sidecar["calibration"]["chosen_on"] == sidecar["conformal"]["chosen_on"] == "site"
    assert sidecar["threshold"] == pytest.approx(record["decision"]["value"])
    # the sets a program makes from the sidecar's thresholds are predict's sets
    out = tmp_path / "p.csv"
    said = runner.invoke(
        app, ["predict", str(recalibrated), str(site), "--out", str(out), "--conformal", "0.9"]
    )
    assert said.exit_code == 0, said.output
    limits = sidecar["conformal"]["thresholds"]["0.9"]
    compared = 0
    for row in _rows(out):
        scores = {name: 1 - float(row[f"prob_{name}"]) for name in ("0", "1")}
        if any(q is not None and abs(scores[n] - q) < 1e-5 for n, q in limits.items()):
            continue  # the CSV's 6 decimals cannot say which side of the threshold it is
        inside = [n for n, q in limits.items() if q is None or scores[n] <= q]
        assert (row["set"].split("|") if row["set"] else []) == inside
        compared += 1
    assert compared >= 30
