"""The ``inspect``, ``evaluate``, ``predict``, ``report`` and ``export`` commands, through typer.

One tiny smallcnn run is trained once for the module with the ``train`` command on a generated
split tree; the tests work on copies of it. Exit codes as the README documents them: 0 ok, 1 the
data has errors (inspect) or an input was unreadable (predict), 2 bad input with a one-line
``error: ...`` message and never a traceback.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conftest import write_tree
from medbalance.cli import app
from medbalance.core.checkpoint import read_metadata

CLASSES = ["normal", "pneumonia"]
COUNTS = {
    "train": {"normal": 40, "pneumonia": 10},
    "val": {"normal": 12, "pneumonia": 12},
    "test": {"normal": 10, "pneumonia": 10},
}
METRIC_KEYS = {
    "auroc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "accuracy",
    "mcc",
    "average_precision",
    "brier",
    "ece",
}

runner = CliRunner()


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output
    return result


def bad_input(result: Result) -> str:
    """Assert a clean exit 2 (no uncaught exception) and return its one ``error:`` line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data tree, run folder): one epoch of smallcnn at 32 px, trained with ``train``."""
    root = tmp_path_factory.mktemp("cli")
    data = write_tree(root / "data", COUNTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBALANCE_CACHE", str(root / "cache"))
        result = invoke(
            "train",
            *(data, "--out", root / "run", "--model", "smallcnn", "--size", 32),
            *("--epochs", 1, "--batch-size", 16, "--bootstrap", 20, "--device", "cpu"),
        )
    ok(result)
    return data, root / "run"


@pytest.fixture
def data(trained: tuple[Path, Path]) -> Path:
    return trained[0]


@pytest.fixture
def run(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the module's run folder (the commands rewrite files in it)."""
    return Path(shutil.copytree(trained[1], tmp_path / "run"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- inspect ----------------------------------------------------------------------------------


def test_inspect_writes_summary_with_class_counts_and_warns(data: Path, tmp_path: Path) -> None:
    result = ok(invoke("inspect", data, "--out", tmp_path / "inspect"))
    out = tmp_path / "inspect"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == CLASSES and summary["n_items"] == 94
    assert {split: summary["counts"][split] for split in COUNTS} == COUNTS
    assert summary["counts"]["overall"] == {"normal": 62, "pneumonia": 32}
    assert summary["imbalance_ratio"]["train"] == pytest.approx(4.0)
    # a warning (24 val images) keeps exit code 0 and is both printed and stored
    assert [f["code"] for f in summary["findings"]] == ["tiny-val"]
    assert summary["findings"][0]["level"] == "warning"
    assert "tiny-val" in result.output and "--resplit-val" in result.output
    for name in ("class_counts.png", "samples.png"):
        assert (out / name).stat().st_size > 1000, name
    printed = result.output.replace("\n", "")  # rich wraps long paths
    assert f"wrote {out / 'summary.json'}" in printed


def test_inspect_unreadable_image_exits_1_unless_skipped(data: Path, tmp_path: Path) -> None:
    tree = Path(shutil.copytree(data, tmp_path / "data"))
    (tree / "train" / "normal" / "broken.png").write_bytes(b"not an image")
    failed = invoke("inspect", tree, "--out", tmp_path / "strict")
    assert failed.exit_code == 1, failed.output
    assert "Traceback" not in failed.output and "broken.png" in failed.output
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    assert [Path(u["path"]).name for u in summary["unreadable"]] == ["broken.png"]
    assert any(f["level"] == "error" and f["code"] == "unreadable" for f in summary["findings"])

    ok(invoke("inspect", tree, "--out", tmp_path / "skip", "--skip-unreadable"))
    skipped = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert skipped["counts"]["train"] == COUNTS["train"]  # the broken file is left out
    assert all(f["level"] != "error" for f in skipped["findings"])


def test_inspect_missing_path_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_data"
    message = bad_input(invoke("inspect", missing, "--out", tmp_path / "out"))
    assert f"{missing}: no such file or folder; check the path" in message
    assert not (tmp_path / "out").exists()


def test_inspect_pool_too_small_to_split_names_the_data(tmp_path: Path) -> None:
    pool = write_tree(tmp_path / "tiny_pool", {"a": 3, "b": 3})
    message = bad_input(invoke("inspect", pool, "--out", tmp_path / "out"))
    assert "tiny_pool" in message and "too few to carve" in message and "add images" in message


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluate_rewrites_test_metrics_predictions_and_report(run: Path) -> None:
    for name in ("metrics.json", "predictions.csv", "report.html"):
        (run / name).unlink()
    result = ok(invoke("evaluate", run, "--bootstrap", 20))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 20
    assert metrics["class_names"] == CLASSES and metrics["positive_class"] == "pneumonia"
    assert metrics["threshold"]["policy"] == "youden"  # the one stored at training
    assert metrics["threshold"]["chosen_on"] == "val"
    assert set(metrics["metrics"]) == METRIC_KEYS
    for key, entry in metrics["metrics"].items():
        lo, hi = entry["ci"]
        assert lo - 1e-9 <= entry["value"] <= hi + 1e-9, key
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    rows = read_csv(run / "predictions.csv")
    assert len(rows) == 20
    for row in rows:
        assert float(row["threshold"]) == pytest.approx(metrics["threshold"]["value"], abs=1e-5)
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "test split (n=20)" in result.output and "chosen on val" in result.output


def test_evaluate_threshold_policy_is_rechosen_on_val(run: Path) -> None:
    result = ok(
        invoke(
            "evaluate", run, "--threshold", "sensitivity>=0.95", "--bootstrap", 20, "--no-report"
        )
    )
    point = json.loads((run / "metrics.json").read_text())["threshold"]
    assert point["policy"] == "sensitivity>=0.95" and point["chosen_on"] == "val"
    assert 0.0 < point["value"] < 1.0
    rows = read_csv(run / "predictions.csv")
    assert len(rows) == 20
    for row in rows:
        assert float(row["threshold"]) == pytest.approx(point["value"], abs=1e-5)
    assert "sensitivity>=0.95" in result.output


def test_decision_is_another_name_for_threshold(run: Path) -> None:
    ok(invoke("evaluate", run, "--decision", "specificity>=0.9", "--bootstrap", 20, "--no-report"))
    assert json.loads((run / "metrics.json").read_text())["threshold"]["policy"] == (
        "specificity>=0.9"
    )


def test_evaluate_threshold_policy_is_stored_in_the_checkpoint(run: Path) -> None:
    ok(
        invoke(
            "evaluate", run, "--threshold", "sensitivity>=0.95", "--bootstrap", 20, "--no-report"
        )
    )
    assert read_metadata(run / "best.safetensors")["threshold"]["policy"] == "sensitivity>=0.95"


@pytest.mark.parametrize(
    ("policy", "hint"),
    [
        ("sensitivty>=0.95", "did you mean 'sensitivity>=0.95'?"),
        ("bogus", "valid forms: youden, f1"),
    ],
)
def test_evaluate_bad_policy_exits_2_and_keeps_the_metrics(
    run: Path, policy: str, hint: str
) -> None:
    before = (run / "metrics.json").read_bytes()
    message = bad_input(invoke("evaluate", run, "--threshold", policy, "--no-report"))
    assert f"unknown threshold policy '{policy}'" in message and hint in message
    assert (run / "metrics.json").read_bytes() == before


def test_evaluate_a_folder_that_is_not_a_run_exits_2(data: Path) -> None:
    message = bad_input(invoke("evaluate", data, "--no-report"))
    assert f"{data}/best.safetensors: no such checkpoint" in message
    assert "give the best.safetensors of a run" in message


def test_evaluate_bad_split_exits_2(run: Path) -> None:
    message = bad_input(invoke("evaluate", run, "--split", "train"))
    assert "--split must be test or val" in message and "'train'" in message


def test_evaluate_other_data_with_other_classes_exits_2(run: Path, tmp_path: Path) -> None:
    other = write_tree(tmp_path / "other", {"benign": 20, "malignant": 20})
    before = (run / "metrics.json").read_bytes()
    message = bad_input(invoke("evaluate", run, other, "--no-report"))
    assert "['benign', 'malignant'] differ from the model's ['normal', 'pneumonia']" in message
    assert (run / "metrics.json").read_bytes() == before


def test_evaluate_external_test_only_folder(run: Path, data: Path, tmp_path: Path) -> None:
    external = tmp_path / "other_hospital"
    shutil.copytree(data / "test", external / "test")
    ok(invoke("evaluate", run, external, "--split", "test", "--bootstrap", 20, "--no-report"))
    assert json.loads((run / "metrics.json").read_text())["n"] == 20


# --- predict ----------------------------------------------------------------------------------


def test_predict_scores_folders_files_and_manifests(run: Path, data: Path, tmp_path: Path) -> None:
    images = Path(shutil.copytree(data / "test", tmp_path / "images"))
    manifest = tmp_path / "manifest.csv"  # paths are relative to the CSV's folder
    manifest.write_text("path,label\nimages/normal/img_0.png,normal\nimages/pneumonia/img_1.png,\n")
    out = tmp_path / "predictions.csv"
    result = ok(
        invoke(
            "predict",
            run / "best.safetensors",
            images,
            data / "val" / "pneumonia" / "img_3.png",
            manifest,
            "--out",
            out,
        )
    )
    assert "scored 23 image(s)" in result.output
    rows = read_csv(out)
    assert len(rows) == 23
    assert list(rows[0]) == [
        "id",
        "prob_normal",
        "prob_pneumonia",
        "calibrated_normal",
        "calibrated_pneumonia",
        "predicted_label",
        "threshold",
        "error",
        "set",
        "refer",
    ]
    stored = read_metadata(run / "best.safetensors")["threshold"]["value"]
    for row in rows:
        assert row["error"] == "" and row["set"] == row["refer"] == ""  # no --conformal
        p0, p1 = float(row["prob_normal"]), float(row["prob_pneumonia"])
        assert p0 + p1 == pytest.approx(1.0, abs=1e-5)
        c0, c1 = float(row["calibrated_normal"]), float(row["calibrated_pneumonia"])
        assert c0 + c1 == pytest.approx(1.0, abs=1e-5)
        threshold = float(row["threshold"])
        assert threshold == pytest.approx(stored, abs=1e-5)
        assert row["predicted_label"] == ("pneumonia" if p1 >= threshold else "normal")


def test_predict_unreadable_inputs_get_a_row_and_exit_1(
    run: Path, data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "predictions.csv"
    image = data / "test" / "normal" / "img_0.png"
    result = invoke(
        "predict", run / "best.safetensors", image, broken, tmp_path / "gone.png", "--out", out
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "scored 1 image(s)" in result.output
    assert "unreadable:" in result.stderr and "broken.png" in result.stderr
    rows = {Path(r["id"]).name: r for r in read_csv(out)}
    assert set(rows) == {"img_0.png", "broken.png", "gone.png"}
    assert rows["img_0.png"]["error"] == "" and rows["img_0.png"]["prob_pneumonia"] != ""
    assert "cannot be decoded" in rows["broken.png"]["error"]
    assert "no such file" in rows["gone.png"]["error"]
    assert rows["gone.png"]["prob_pneumonia"] == "" and rows["gone.png"]["predicted_label"] == ""


def test_predict_missing_checkpoint_exits_2(data: Path, tmp_path: Path) -> None:
    missing = tmp_path / "best.safetensors"
    message = bad_input(invoke("predict", missing, data / "test", "--out", tmp_path / "p.csv"))
    assert f"{missing}: no such checkpoint" in message
    assert not (tmp_path / "p.csv").exists()


def _corrupt(tmp_path: Path) -> Path:
    run = tmp_path / "corrupt"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"not a checkpoint")
    return run


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_corrupt_checkpoint_exits_2(command: str, data: Path, tmp_path: Path) -> None:
    run = _corrupt(tmp_path)
    checkpoint = run / "best.safetensors"
    args = {
        "evaluate": ("evaluate", run, "--no-report"),
        "predict": ("predict", checkpoint, data / "test", "--out", tmp_path / "p.csv"),
        "export": ("export", checkpoint, "--format", "torchscript"),
    }[command]
    message = bad_input(invoke(*args))
    assert "best.safetensors" in message


# --- report -----------------------------------------------------------------------------------


def test_report_redraws_the_html_page(run: Path) -> None:
    (run / "report.html").unlink()
    result = ok(invoke("report", run))
    assert f"report: {run / 'report.html'}" in result.output
    page = (run / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(page) > 10_000
    for heading in ("Data", "Operating point", "Confusion matrix", "Metrics with 95% CIs"):
        assert f"<h2>{heading}" in page, heading
    assert "chosen on val" in page and "youden" in page
    assert 'src="http' not in page  # self-contained


def test_report_without_metrics_says_evaluate_first(run: Path) -> None:
    (run / "metrics.json").unlink()
    message = bad_input(invoke("report", run))
    assert "metrics.json not found" in message and "evaluate the run first" in message
    assert f"medbalance evaluate {run}" in message


# --- export -----------------------------------------------------------------------------------


def test_export_torchscript_writes_model_and_sidecar(run: Path) -> None:
    import torch

    result = ok(invoke("export", run / "best.safetensors", "--format", "torchscript"))
    model_path = run / "best.torchscript.pt"
    sidecar_path = run / "best.torchscript.pt.json"
    assert f"wrote {model_path} and {sidecar_path}" in result.output
    sidecar = json.loads(sidecar_path.read_text())
    stored = read_metadata(run / "best.safetensors")["threshold"]
    assert sidecar["model_format"] == "torchscript" and sidecar["model_file"] == model_path.name
    assert sidecar["class_names"] == CLASSES and sidecar["positive_class"] == "pneumonia"
    assert sidecar["threshold"] == pytest.approx(stored["value"])
    assert sidecar["operating_point"]["policy"] == "youden"
    assert sidecar["operating_point"]["chosen_on"] == "val"
    assert (sidecar["channels"], sidecar["image_size"]) == (1, 32)
    assert sidecar["normalization"]["kind"] == "minmax"
    module = torch.jit.load(str(model_path))
    outputs = module(torch.rand(3, 1, 32, 32))
    probabilities = outputs[1] if isinstance(outputs, tuple | list) else outputs
    assert probabilities.shape == (3, 2)


def test_export_to_a_chosen_path(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "exported" / "model.pt"
    target.parent.mkdir()
    ok(invoke("export", run / "best.safetensors", "--format", "torchscript", "--out", target))
    assert target.stat().st_size > 1000
    assert json.loads(target.with_name("model.pt.json").read_text())["class_names"] == CLASSES


@pytest.mark.parametrize("fmt", ["tflite", "TorchScript"])
def test_export_unknown_format_exits_2(run: Path, fmt: str) -> None:
    message = bad_input(invoke("export", run / "best.safetensors", "--format", fmt))
    assert f"unknown export format '{fmt}'" in message
    assert "valid forms: onnx, torchscript" in message
    assert not list(run.glob("best.*.json"))


def test_export_missing_checkpoint_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "best.safetensors"
    message = bad_input(invoke("export", missing, "--format", "torchscript"))
    assert f"{missing}: no such checkpoint" in message


def test_metrics_json_is_strict_and_says_why_a_metric_is_undefined(run: Path) -> None:
    # threshold 1: no image is called positive, so PPV is undefined
    ok(invoke("evaluate", run, "--threshold", "1", "--bootstrap", 20, "--no-report"))
    text = (run / "metrics.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    metrics = json.loads(text, parse_constant=refuse)["metrics"]
    assert metrics["ppv"]["value"] is None
    assert metrics["ppv"]["undefined"] == "no image was called positive"
    assert "undefined" not in metrics["npv"]


# --- a path the user names is never overwritten without --overwrite, a run's files never ----


@pytest.mark.parametrize("name", ["best.safetensors", "predictions.csv", "last.pt", "config.json"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_predict_never_writes_onto_a_file_of_a_run(
    run: Path, data: Path, name: str, overwrite: list[str]
) -> None:
    before = (run / name).read_bytes()
    message = bad_input(
        invoke("predict", run / "best.safetensors", data / "test", "--out", run / name, *overwrite)
    )
    assert f"{run / name} is a file of the medbalance folder" in message
    assert "not even with --overwrite" in message
    assert (run / name).read_bytes() == before


def test_predict_refuses_a_link_to_a_run_file(run: Path, data: Path, tmp_path: Path) -> None:
    link = tmp_path / "looks-new.csv"
    link.symlink_to(run / "best.safetensors")
    before = (run / "best.safetensors").read_bytes()
    message = bad_input(invoke("predict", run, data / "test", "--out", link, "--overwrite"))
    assert "is a file of the medbalance folder" in message
    assert (run / "best.safetensors").read_bytes() == before


def test_predict_replaces_a_users_file_only_with_overwrite(
    run: Path, data: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    message = bad_input(invoke("predict", run, data / "test", "--out", mine))
    assert f"--out {mine} already exists" in message and "--overwrite" in message
    assert mine.read_text() == "my,own\n1,2\n"
    ok(invoke("predict", run, data / "test", "--out", mine, "--overwrite"))
    assert len(read_csv(mine)) == 20


def test_export_never_writes_onto_a_run_file_or_an_existing_file(run: Path, tmp_path: Path) -> None:
    before = (run / "last.pt").read_bytes()
    for extra in ([], ["--overwrite"]):
        message = bad_input(
            invoke("export", run, "--format", "torchscript", "--out", run / "last.pt", *extra)
        )
        assert "is a file of the medbalance folder" in message
    assert (run / "last.pt").read_bytes() == before
    mine = tmp_path / "model.pt"
    mine.write_text("keep me")
    message = bad_input(invoke("export", run, "--format", "torchscript", "--out", mine))
    assert "already exists" in message and mine.read_text() == "keep me"
    ok(invoke("export", run, "--format", "torchscript", "--out", mine, "--overwrite"))
    assert mine.stat().st_size > 1000


def test_an_images_score_depends_on_that_image_alone(run: Path, tmp_path: Path) -> None:
    """Any image, in any company (8- and 16-bit, colour, constant), scores the same as alone."""
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from PIL import Image

    from medbalance.evaluation.ensemble import load_model
    from medbalance.evaluation.predict import iter_predictions

    trained = load_model(run)
    kinds = st.sampled_from(["u8", "u16", "rgb", "const8", "const16"])
    images = st.lists(st.tuples(kinds, st.integers(8, 48), st.integers(0, 2**16)), min_size=2,
                      max_size=5)  # fmt: skip

    def write(k: int, kind: str, side: int, seed: int) -> Path:
        rng = np.random.default_rng(seed)
        if kind == "u8":
            array = rng.integers(0, 256, (side, side), dtype=np.uint8)
        elif kind == "u16":
            array = rng.integers(0, 65536, (side, side), dtype=np.uint16)
        elif kind == "rgb":
            array = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        else:
            dtype = np.uint8 if kind == "const8" else np.uint16
            array = np.full((side, side), seed % 200 + 1, dtype=dtype)
        path = tmp_path / f"img{k}.png"
        Image.fromarray(array).save(path)
        return path

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(images)
    def check(spec: list[tuple[str, int, int]]) -> None:
        paths = [write(k, *item) for k, item in enumerate(spec)]
        together = list(iter_predictions(trained, [str(p) for p in paths], batch_size=64))
        for path, row in zip(paths, together, strict=True):
            alone = next(iter_predictions(trained, [str(path)]))
            for name, value in alone.probabilities.items():
                assert abs(row.probabilities[name] - value) < 1e-6, (path, spec)

    check()
