"""Tests for medbalance.workflows.cv: folds, out-of-fold predictions, the OOF operating point,
and the fold ensemble (evaluated once on test, used by predict)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_npz
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.workflows.cv import cross_validate, fold_masks


def test_folds_are_disjoint_stratified_and_keep_patients_together() -> None:
    labels = np.r_[np.zeros(40, int), np.ones(10, int)]
    masks = fold_masks(labels, None, 5, seed=0)
    assert (np.sum(masks, axis=0) == 1).all()  # every item held out exactly once
    assert [int(labels[m].sum()) for m in masks] == [2] * 5  # 10 positives, 2 a fold
    groups = np.repeat(np.arange(25), 2)  # two images a patient
    for mask in fold_masks(labels, groups, 5, seed=1):
        held = set(groups[mask])
        assert not held & set(groups[~mask])
    with pytest.raises(ConfigError, match="5 folds need at least 5 .* the rarest has 3"):
        fold_masks(np.r_[np.zeros(20, int), np.ones(3, int)], None, 5, seed=0)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import os

    root = tmp_path_factory.mktemp("cv")
    os.environ["MEDBALANCE_CACHE"] = str(root / "cache")
    data = write_npz(root / "d.npz", {"train": (45, 15), "val": (15, 15), "test": (10, 10)})
    config = TrainConfig(
        data=str(data), epochs=1, model="smallcnn", bootstrap=50, device="cpu", seed=3
    )
    cross_validate(config, folds=3, out=root / "cv")
    return data, root / "cv"


def test_oof_predictions_cover_train_and_val_once(cv_run: tuple[Path, Path]) -> None:
    _, out = cv_run
    rows = _rows(out / "oof_predictions.csv")
    assert len(rows) == 90 and len({r["id"] for r in rows}) == 90  # 60 train + 30 val
    assert not any(r["id"].startswith("test") for r in rows)  # the test split never enters
    oof = json.loads((out / "oof_metrics.json").read_text())
    assert oof["split"] == "oof" and oof["n"] == 90 and oof["folds"] == 3
    assert oof["threshold"]["chosen_on"] == "oof"


def test_the_operating_point_is_chosen_on_oof(cv_run: tuple[Path, Path]) -> None:
    from medbalance.evaluation.thresholds import choose_threshold

    _, out = cv_run
    rows = _rows(out / "oof_predictions.csv")
    y = np.array([r["true_label"] == "1" for r in rows])
    p = np.array([float(r["prob_1"]) for r in rows])
    expected = choose_threshold("youden", y, p, chosen_on="oof").value
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold"] == {"policy": "youden", "value": expected, "chosen_on": "oof"}
    assert json.loads((out / "ensemble.json").read_text())["decision"]["value"] == expected


def test_the_ensemble_is_the_mean_of_the_fold_models(cv_run: tuple[Path, Path]) -> None:
    _, out = cv_run
    ensemble = _rows(out / "predictions.csv")
    folds = [_rows(out / "folds" / f"fold{k}" / "predictions.csv") for k in range(3)]
    assert len(ensemble) == 20 and all(len(f) == 20 for f in folds)
    mean = np.mean([[float(r["prob_1"]) for r in fold] for fold in folds], axis=0)
    np.testing.assert_allclose([float(r["prob_1"]) for r in ensemble], mean, atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["ensemble"] == {"members": 3, "combine": "mean"}
    assert len(_rows(out / "folds.csv")) == 3 and (out / "report.html").is_file()


def test_predict_with_the_cv_folder_uses_the_ensemble(
    cv_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from PIL import Image

    import medbalance as mb

    data, out = cv_run
    with np.load(data) as arrays:
        images = arrays["test_images"][:4]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    rows = mb.predict(out, tmp_path)
    decision = json.loads((out / "ensemble.json").read_text())["decision"]
    assert len(rows) == 4 and all(r.threshold == decision["value"] for r in rows)
    singles = [mb.predict(out / "folds" / f"fold{k}", tmp_path) for k in range(3)]
    for k, row in enumerate(rows):
        mean = np.mean([s[k].probabilities["1"] for s in singles])
        assert row.probabilities["1"] == pytest.approx(mean, abs=1e-6)


def test_a_second_cv_run_trains_nothing_again(
    cv_run: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    data, out = cv_run
    before = (out / "metrics.json").read_text()
    config = TrainConfig(
        data=str(data), epochs=1, model="smallcnn", bootstrap=50, device="cpu", seed=3
    )
    with caplog.at_level(logging.INFO, logger="medbalance"):
        cross_validate(config, folds=3, out=out)
    assert caplog.text.count("(done)") == 3
    assert (out / "metrics.json").read_text() == before


def test_evaluate_the_cv_folder_and_rechoose_on_oof(
    cv_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    from typer.testing import CliRunner

    from medbalance.cli import app

    _, original = cv_run
    out = Path(shutil.copytree(original, tmp_path / "cv"))
    before = json.loads((out / "metrics.json").read_text())
    again = CliRunner().invoke(app, ["evaluate", str(out), "--bootstrap", "50", "--no-report"])
    assert again.exit_code == 0, again.output
    after = json.loads((out / "metrics.json").read_text())["metrics"]
    # the same ensemble, decision and test cases (the CIs' bootstrap seed is evaluate's)
    assert {k: v["value"] for k, v in after.items()} == {
        k: v["value"] for k, v in before["metrics"].items()
    }
    strict = CliRunner().invoke(
        app, ["evaluate", str(out), "--threshold", "sensitivity>=0.95", "--no-report"]
    )
    assert strict.exit_code == 0, strict.output
    stored = json.loads((out / "ensemble.json").read_text())["decision"]
    assert stored["policy"] == "sensitivity>=0.95" and stored["chosen_on"] == "oof"
    assert json.loads((out / "metrics.json").read_text())["threshold"]["value"] == stored["value"]


def test_export_the_ensemble_as_one_onnx_graph(cv_run: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    import torch

    pytest.importorskip("onnxruntime")
    import onnxruntime

    from medbalance.evaluation.ensemble import load_model
    from medbalance.evaluation.export import export_model

    _, original = cv_run
    out = Path(shutil.copytree(original, tmp_path / "cv"))
    model_file, sidecar_file = export_model(out, "onnx")
    assert model_file == out / "ensemble.onnx"
    sidecar = json.loads(sidecar_file.read_text())
    decision = json.loads((out / "ensemble.json").read_text())["decision"]
    assert sidecar["ensemble"] == {"members": 3, "combine": "mean"}
    assert sidecar["threshold"] == decision["value"] and sidecar["operating_point"] == decision
    ensemble = load_model(out)
    x = torch.rand(5, 1, 28, 28)
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = np.mean(
            [torch.softmax(m.model(x), dim=1).numpy() for m in ensemble.members],
            axis=0,  # type: ignore[union-attr]
        )
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.fixture(scope="module")
def stacked(cv_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 3 fold models combined by stacking (a copy of the cv folder: no fold retrains)."""
    import shutil

    data, original = cv_run
    out = Path(shutil.copytree(original, tmp_path_factory.mktemp("stack") / "cv"))
    config = TrainConfig(
        data=str(data), epochs=1, model="smallcnn", bootstrap=50, device="cpu", seed=3
    )
    cross_validate(config, folds=3, out=out, combine="stack")
    return out


def _stacked_p1(record: dict[str, object], mean_p1: np.ndarray) -> np.ndarray:
    """Class 1's probability from ensemble.json's plain numbers, worked out by hand."""
    stacker = record["stacker"]
    assert isinstance(stacker, dict)
    w, b = np.array(stacker["weights"]), np.array(stacker["bias"])
    logp = np.log(np.c_[1 - mean_p1, mean_p1])
    z = logp @ w.T + b
    return 1 / (1 + np.exp(z[:, 0] - z[:, 1]))


def test_stacking_applies_the_stored_regression_to_the_mean(
    cv_run: tuple[Path, Path], stacked: Path
) -> None:
    _, mean_out = cv_run
    record = json.loads((stacked / "ensemble.json").read_text())
    assert record["combine"] == "stack" and record["stacker"]["n_fit"] == 90
    assert np.array(record["stacker"]["weights"]).shape == (2, 2)
    metrics = json.loads((stacked / "metrics.json").read_text())
    assert metrics["ensemble"] == {"members": 3, "combine": "stack"}
    mean = np.array([float(r["prob_1"]) for r in _rows(mean_out / "predictions.csv")])
    got = np.array([float(r["prob_1"]) for r in _rows(stacked / "predictions.csv")])
    np.testing.assert_allclose(got, _stacked_p1(record, mean), atol=2e-6)  # csv rounding
    assert np.abs(got - mean).max() > 1e-3  # the stacker changed something


def test_stacking_chooses_the_decision_on_cross_validated_outputs(
    cv_run: tuple[Path, Path], stacked: Path
) -> None:
    from medbalance.evaluation.stacking import cross_validated_outputs, fit_stacker
    from medbalance.evaluation.thresholds import choose_threshold

    _, mean_out = cv_run
    raw = _rows(mean_out / "oof_predictions.csv")  # the fold models' own OOF outputs
    y = np.array([int(r["true_label"]) for r in raw])
    p1 = np.array([float(r["prob_1"]) for r in raw])
    probs = np.c_[1 - p1, p1]
    masks = fold_masks(y, None, 3, seed=3)  # the folds cv cut (no patient groups here)
    splits = [(np.flatnonzero(~m), np.flatnonzero(m)) for m in masks]
    honest = cross_validated_outputs(y, probs, splits, positive=1)[:, 1]
    written = _rows(stacked / "oof_predictions.csv")
    assert [r["id"] for r in written] == [r["id"] for r in raw]
    np.testing.assert_allclose([float(r["prob_1"]) for r in written], honest, atol=2e-6)
    in_sample = fit_stacker(y, probs, positive=1).apply(probs)[:, 1]
    assert np.abs(honest - in_sample).max() > 1e-4  # not the stacker that saw them
    expected = choose_threshold("youden", y.astype(bool), np.round(honest, 6), chosen_on="oof")
    metrics = json.loads((stacked / "metrics.json").read_text())
    assert metrics["threshold"]["value"] == pytest.approx(expected.value, abs=1e-5)
    assert metrics["threshold"]["chosen_on"] == "oof"


def test_predict_and_evaluate_use_the_stacker(
    cv_run: tuple[Path, Path], stacked: Path, tmp_path: Path
) -> None:
    import shutil

    from PIL import Image
    from typer.testing import CliRunner

    import medbalance as mb
    from medbalance.cli import app

    with np.load(cv_run[0]) as arrays:
        images = arrays["test_images"][:3]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    record = json.loads((stacked / "ensemble.json").read_text())
    rows = mb.predict(stacked, tmp_path)
    singles = [mb.predict(stacked / "folds" / f"fold{k}", tmp_path) for k in range(3)]
    mean = np.array([np.mean([s[k].probabilities["1"] for s in singles]) for k in range(3)])
    np.testing.assert_allclose(
        [r.probabilities["1"] for r in rows], _stacked_p1(record, mean), atol=1e-5
    )
    out = Path(shutil.copytree(stacked, tmp_path / "cv"))
    before = json.loads((out / "metrics.json").read_text())["metrics"]
    again = CliRunner().invoke(app, ["evaluate", str(out), "--bootstrap", "50", "--no-report"])
    assert again.exit_code == 0, again.output
    after = json.loads((out / "metrics.json").read_text())
    assert after["ensemble"] == {"members": 3, "combine": "stack"}
    # the same decision on the same probabilities (recomputed in float32: equal to ~1e-8)
    assert {k: v["value"] for k, v in after["metrics"].items()} == pytest.approx(
        {k: v["value"] for k, v in before.items()}, abs=1e-6
    )


def test_export_a_stacked_ensemble_puts_the_stacker_in_the_graph(
    stacked: Path, tmp_path: Path
) -> None:
    import shutil

    import torch

    pytest.importorskip("onnxruntime")
    import onnxruntime

    from medbalance.evaluation.ensemble import Ensemble, load_model
    from medbalance.evaluation.export import export_model

    out = Path(shutil.copytree(stacked, tmp_path / "cv"))
    model_file, sidecar_file = export_model(out, "onnx")
    sidecar = json.loads(sidecar_file.read_text())
    record = json.loads((out / "ensemble.json").read_text())
    assert sidecar["ensemble"]["combine"] == "stack"
    assert sidecar["ensemble"]["stacker"]["weights"] == record["stacker"]["weights"]
    ensemble = load_model(out)
    assert isinstance(ensemble, Ensemble)
    x = torch.rand(5, 1, 28, 28)
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"input": x.numpy()})[0]
    with torch.no_grad():
        mean = np.mean([torch.softmax(m.model(x), dim=1).numpy() for m in ensemble.members], 0)
    np.testing.assert_allclose(got[:, 1], _stacked_p1(record, mean[:, 1]), atol=1e-5)


def test_an_unknown_combine_is_refused_before_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medbalance.cli import app

    data = write_npz(tmp_path / "d.npz", {"train": (20, 10), "val": (6, 6), "test": (4, 4)})
    result = CliRunner().invoke(
        app, ["cv", str(data), "--folds", "2", "--combine", "median", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "unknown combine 'median'; valid forms: mean, stack" in result.output
    assert not (tmp_path / "o" / "folds").exists()


@pytest.mark.parametrize(
    "stacker",
    [None, {"weights": [[1.0, "x"], [0.0, 1.0]], "bias": [0.0, 0.0]}, {"weights": [[1.0]]}],
)
def test_a_broken_stacker_record_is_a_one_line_error(
    stacked: Path, tmp_path: Path, stacker: object
) -> None:
    import shutil

    from PIL import Image
    from typer.testing import CliRunner

    from medbalance.cli import app

    out = Path(shutil.copytree(stacked, tmp_path / "cv"))
    record = json.loads((out / "ensemble.json").read_text())
    record["stacker"] = stacker
    (out / "ensemble.json").write_text(json.dumps(record))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["predict", str(out), str(tmp_path / "a.png")])
    assert result.exit_code == 2, result.output
    assert "ensemble.json" in result.output and "stacker" in result.output
    assert "run medbalance cv again" in result.output
    assert "Traceback" not in result.output


def test_folds_keep_identical_images_together() -> None:
    from medbalance.data.catalog_types import Catalog, SourceKind
    from medbalance.data.identical import item_digests, split_groups

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    images = rng.integers(0, 255, (60, 8, 8), dtype=np.uint8)
    images[1::2] = images[0::2]  # every odd row repeats the row before it
    catalog = Catalog(
        Path("x.npz"), SourceKind.NPZ, ("a", "b"), labels, np.array(["train"] * 60),
        tuple(f"train_images[{i}]" for i in range(60)), images=images,
    )  # fmt: skip
    pool = np.arange(60)
    groups, pairs = split_groups(catalog, pool, item_digests(catalog))
    assert pairs == 30 and groups is not None
    for seed in range(3):
        for mask in fold_masks(labels, groups, 5, seed=seed):
            assert (mask[0::2] == mask[1::2]).all()  # each pair in one fold
