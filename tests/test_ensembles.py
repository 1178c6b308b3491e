"""Tests for ``medbalance ensemble``: finished runs combined, the decision chosen on their mean val
probabilities, one test evaluation, and the folder used by predict and evaluate."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_npz
from medbalance.cli.app import app

runner = CliRunner()


def _probs(path: Path, column: str = "prob_1") -> np.ndarray:
    with path.open(newline="") as handle:
        return np.array([float(row[column]) for row in csv.DictReader(handle)])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    import os

    from medbalance.training.config import TrainConfig
    from medbalance.workflows.training import train_and_evaluate

    root = tmp_path_factory.mktemp("ens")
    os.environ["MEDBALANCE_CACHE"] = str(root / "cache")
    data = write_npz(root / "d.npz", {"train": (40, 15), "val": (15, 15), "test": (12, 12)})
    runs = []
    for seed in (0, 1):
        config = TrainConfig(
            data=str(data), out=str(root / f"seed{seed}"), epochs=1, model="smallcnn",
            bootstrap=50, device="cpu", seed=seed,
        )  # fmt: skip
        train_and_evaluate(config)
        runs.append(root / f"seed{seed}")
    return data, runs


@pytest.fixture(scope="module")
def ensemble_dir(two_runs: tuple[Path, list[Path]]) -> Path:
    _, runs = two_runs
    out = runs[0].parent / "ens"
    result = runner.invoke(
        app, ["ensemble", *map(str, runs), "--out", str(out), "--bootstrap", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 on test (n=24)" in result.output
    return out


def test_the_ensemble_is_the_mean_of_its_runs_at_a_decision_chosen_on_val(
    two_runs: tuple[Path, list[Path]], ensemble_dir: Path
) -> None:
    from medbalance.evaluation.thresholds import choose_threshold

    _, runs = two_runs
    mean = np.mean([_probs(run / "predictions.csv") for run in runs], axis=0)
    np.testing.assert_allclose(_probs(ensemble_dir / "predictions.csv"), mean, atol=2e-6)
    metrics = json.loads((ensemble_dir / "metrics.json").read_text())
    assert metrics["ensemble"] == {"members": 2, "combine": "mean"} and metrics["n"] == 24
    assert metrics["threshold"]["chosen_on"] == "val"
    assert metrics["threshold"]["policy"] == "youden"  # the runs' own policy
    with (ensemble_dir / "predictions_val.csv").open(newline="") as handle:
        val = list(csv.DictReader(handle))
    assert len(val) == 30
    y = np.array([row["true_label"] == "1" for row in val])
    expected = choose_threshold("youden", y, np.array([float(r["prob_1"]) for r in val]))
    assert metrics["threshold"]["value"] == pytest.approx(expected.value, abs=1e-5)
    record = json.loads((ensemble_dir / "ensemble.json").read_text())
    assert record["members"] == ["../seed0/best.safetensors", "../seed1/best.safetensors"]
    page = (ensemble_dir / "report.html").read_text()
    assert "An ensemble of 2 models" in page and "history.csv not found" not in page


def test_predict_and_evaluate_take_the_ensemble_folder(
    two_runs: tuple[Path, list[Path]], ensemble_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    import medbalance as mb

    data, runs = two_runs
    with np.load(data) as arrays:
        for i, image in enumerate(arrays["test_images"][:3]):
            Image.fromarray(image).save(tmp_path / f"{i}.png")
    rows = mb.predict(ensemble_dir, tmp_path)
    singles = [mb.predict(run, tmp_path) for run in runs]
    for k, row in enumerate(rows):
        mean = np.mean([s[k].probabilities["1"] for s in singles])
        assert row.probabilities["1"] == pytest.approx(mean, abs=1e-6)
    out = Path(shutil.copytree(ensemble_dir, tmp_path / "moved" / "ens"))
    for run in runs:  # the members travel with the folder's relative paths
        shutil.copytree(run, tmp_path / "moved" / run.name)
    again = runner.invoke(
        app, ["evaluate", str(out), "--decision", "sensitivity>=0.9", "--bootstrap", "50"]
    )
    assert again.exit_code == 0, again.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold"]["policy"] == "sensitivity>=0.9"
    assert metrics["threshold"]["chosen_on"] == "val"  # re-chosen on the val cases, not test
    stored = json.loads((out / "ensemble.json").read_text())["decision"]
    assert stored["policy"] == "sensitivity>=0.9"  # so predict applies it too


def test_bad_ensembles_are_one_line_errors_and_change_nothing(
    two_runs: tuple[Path, list[Path]], ensemble_dir: Path, tmp_path: Path
) -> None:
    from medbalance.training.config import TrainConfig
    from medbalance.workflows.training import train_and_evaluate

    _, runs = two_runs
    one = runner.invoke(app, ["ensemble", str(runs[0]), "--out", str(tmp_path / "a")])
    assert one.exit_code == 2 and "two or more runs" in one.output
    before = (ensemble_dir / "ensemble.json").read_bytes()
    again = runner.invoke(app, ["ensemble", *map(str, runs), "--out", str(ensemble_dir)])
    assert again.exit_code == 2 and "already holds an ensemble" in again.output
    assert (ensemble_dir / "ensemble.json").read_bytes() == before
    run_before = {f.name: f.read_bytes() for f in runs[1].iterdir() if f.is_file()}
    into_a_run = runner.invoke(app, ["ensemble", *map(str, runs), "--out", str(runs[1])])
    assert into_a_run.exit_code == 2 and "is not empty" in into_a_run.output
    assert {f.name: f.read_bytes() for f in runs[1].iterdir() if f.is_file()} == run_before
    # the same counts, so the same item names (val_images[0] ...), but other pixels (seed 1)
    counts = {"train": (40, 15), "val": (15, 15), "test": (12, 12)}
    other = write_npz(tmp_path / "o.npz", counts, seed=1)
    config = TrainConfig(
        data=str(other), out=str(tmp_path / "other"), epochs=1, model="smallcnn", bootstrap=20,
        device="cpu",
    )  # fmt: skip
    train_and_evaluate(config)
    mixed = runner.invoke(
        app, ["ensemble", str(runs[0]), str(tmp_path / "other"), "--out", str(tmp_path / "b")]
    )
    assert mixed.exit_code == 2, mixed.output
    assert "other val images than" in mixed.output and "Traceback" not in mixed.output
    assert not (tmp_path / "b").exists()


def test_the_python_api_takes_runs_and_folders(
    two_runs: tuple[Path, list[Path]], ensemble_dir: Path, tmp_path: Path
) -> None:
    import medbalance as mb

    _, runs = two_runs
    result = mb.ensemble([mb.load_run(runs[0]), runs[1]], out=tmp_path / "api", bootstrap=50)
    assert result["ensemble"] == {"members": 2, "combine": "mean"}
    cli = json.loads((ensemble_dir / "metrics.json").read_text())
    assert result["metrics"] == cli["metrics"]  # the same ensemble as the command's
    with pytest.raises(ValueError, match="two or more runs"):
        mb.ensemble([runs[0]], out=tmp_path / "one")


def test_the_same_run_twice_is_refused(two_runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, runs = two_runs
    link = tmp_path / "alias"
    link.symlink_to(runs[0], target_is_directory=True)
    for given in ([runs[0], runs[0]], [runs[0], link]):
        result = runner.invoke(app, ["ensemble", *map(str, given), "--out", str(tmp_path / "e")])
        assert result.exit_code == 2, result.output
        assert "are the same run" in result.output and "give each run once" in result.output
    assert not (tmp_path / "e").exists()


def test_a_member_retrained_later_is_refused(
    two_runs: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from medbalance.training.config import TrainConfig
    from medbalance.workflows.training import train_and_evaluate

    data, runs = two_runs
    copies = [Path(shutil.copytree(r, tmp_path / r.name)) for r in runs]
    out = tmp_path / "ens"
    made = runner.invoke(app, ["ensemble", *map(str, copies), "--out", str(out)])
    assert made.exit_code == 0, made.output
    record = json.loads((out / "ensemble.json").read_text())
    assert len(record["member_run_ids"]) == 2 and None not in record["member_run_ids"]
    config = TrainConfig(
        data=str(data), out=str(copies[1]), epochs=1, model="smallcnn", bootstrap=20,
        device="cpu", seed=5,
    )  # fmt: skip
    train_and_evaluate(config, overwrite=True)  # the member is now another run
    used = runner.invoke(app, ["predict", str(out), str(data), "--out", str(tmp_path / "p.csv")])
    assert used.exit_code == 2, used.output
    assert "is another run now" in used.output and "make the ensemble again" in used.output
    assert not (tmp_path / "p.csv").exists()
