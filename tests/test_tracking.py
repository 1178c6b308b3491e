"""MLflow tracking (workflows/tracking.py): real stores, read back through MLflow's own API."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

import medbalance as mb  # noqa: E402
from medbalance.core.run_folder import RunFolder  # noqa: E402
from medbalance.training.config import ConfigError, TrainConfig  # noqa: E402
from medbalance.workflows.tracking import EXPERIMENT, metric_key  # noqa: E402

TINY = {"epochs": 2, "size": 28, "bootstrap": 20, "verbose": False}
ARTIFACTS = {"report.html", "metrics.json", "predictions.csv", "config.json", "best.safetensors"}


@pytest.fixture(autouse=True)
def _offline_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the environment's tracking settings."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def _runs(uri: str) -> Any:
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[EXPERIMENT])
    finally:
        mlflow.set_tracking_uri(None)


def _store(tmp_path: Path) -> str:
    return (tmp_path / "mlruns").as_uri()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def tracker_warnings() -> Iterator[list[str]]:
    handler = _Records()
    logger = logging.getLogger("medbalance.workflows.tracking")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_track_is_a_checked_choice() -> None:
    with pytest.raises(ConfigError, match=r"track must be one of none, mlflow, got 'mlfow'.*"):
        TrainConfig(data="x", track="mlfow")
    with pytest.raises(ConfigError, match=r"track_uri 'mlruns' needs track 'mlflow'"):
        TrainConfig(data="x", track_uri="mlruns")


def test_import_stays_light() -> None:
    code = (
        "import sys, medbalance, medbalance.workflows.training, medbalance.workflows.compare; "
        "assert 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_logs_config_history_metrics_decision_and_files(
    tiny_npz: Path, tmp_path: Path
) -> None:
    uri = _store(tmp_path)
    run = mb.train(tiny_npz, out=tmp_path / "run", track="mlflow", track_uri=uri, **TINY)
    found = _runs(uri)
    assert len(found) == 1
    client = MlflowClient(uri)
    logged = client.get_run(found.run_id[0])
    assert logged.info.status == "FINISHED"
    params, tags = logged.data.params, logged.data.tags
    config = run.config
    for key, value in config.items():  # the resolved config, every key
        expected = value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, dict) and value:
            continue  # flattened into key.subkey
        assert params[key] == expected, key
    assert params["epochs"] == "2" and params["seed"] == "0" and params["track"] == "mlflow"
    meta = RunFolder(run.path).read_metadata()
    assert params["data_fingerprint"] == meta["data_fingerprint"]
    assert tags["medbalance.data_fingerprint"] == meta["data_fingerprint"]
    assert tags["medbalance.version"] == mb.__version__
    assert tags["medbalance.torch_version"]
    assert tags["mlflow.runName"] == "run"
    # per-epoch metrics with their step
    history = run.history
    for column in ("train_loss", "val_loss", "val_auroc", "val_sensitivity/0"):
        points = client.get_metric_history(logged.info.run_id, metric_key(column))
        assert [p.step for p in sorted(points, key=lambda p: p.step)] == [0, 1]
        assert [p.value for p in sorted(points, key=lambda p: p.step)] == pytest.approx(
            [row[column] for row in history]
        )
    # the final metrics equal metrics.json's, CI bounds included
    metrics = run.metrics
    logged_metrics = logged.data.metrics
    for key, entry in metrics["metrics"].items():
        assert logged_metrics[f"test_{key}"] == pytest.approx(entry["value"]), key
        low, high = entry["ci"]
        assert logged_metrics[f"test_{key}_ci_low"] == pytest.approx(low)
        assert logged_metrics[f"test_{key}_ci_high"] == pytest.approx(high)
    # the decision
    decision = metrics["threshold"]
    assert params["decision.policy"] == decision["policy"]
    assert params["decision.chosen_on"] == "val"
    assert float(params["decision.value"]) == pytest.approx(decision["value"])
    # the run's files
    names = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert names >= ARTIFACTS | {"decision.json"}


def test_compare_logs_a_parent_with_one_child_per_remedy_and_seed(
    tiny_npz: Path, tmp_path: Path
) -> None:
    uri = _store(tmp_path)
    comparison = mb.compare(
        tiny_npz, remedies="baseline", seeds=2, out=tmp_path / "cmp", track="mlflow",
        track_uri=uri, **TINY,
    )  # fmt: skip
    found = _runs(uri)
    assert len(found) == 3  # the runs inside are not logged on their own
    parent_tag = "tags.mlflow.parentRunId"
    parents = found[found[parent_tag].isna()]
    children = found[found[parent_tag].notna()]
    assert len(parents) == 1 and len(children) == 2
    parent = parents.iloc[0]
    assert set(children[parent_tag]) == {parent.run_id}
    assert parent["tags.medbalance.verdict"] == comparison.verdict
    assert parent["tags.medbalance.kind"] == "compare"
    assert sorted(children["tags.mlflow.runName"]) == ["baseline/seed0", "baseline/seed1"]
    client = MlflowClient(uri)
    assert "comparison.json" in {a.path for a in client.list_artifacts(parent.run_id)}
    for _, child in children.iterrows():
        seed = int(child["params.seed"])
        expected = RunFolder(tmp_path / "cmp" / "runs" / "baseline" / f"seed{seed}").read_metrics()
        assert child["metrics.test_auroc"] == pytest.approx(expected["metrics"]["auroc"]["value"])
        assert {a.path for a in client.list_artifacts(child.run_id)} >= ARTIFACTS


def test_cv_command_logs_a_parent_with_one_child_per_fold(tiny_npz: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medbalance.cli import app

    uri = _store(tmp_path)
    args = [
        "cv", str(tiny_npz), "--out", str(tmp_path / "cv"), "--folds", "2", "--epochs", "2",
        "--size", "28", "--bootstrap", "20", "--track", "mlflow", "--track-uri", uri,
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    found = _runs(uri)
    parent_tag = "tags.mlflow.parentRunId"
    parents = found[found[parent_tag].isna()]
    children = found[found[parent_tag].notna()]
    assert len(parents) == 1 and sorted(children["tags.mlflow.runName"]) == ["fold0", "fold1"]
    parent = parents.iloc[0]
    assert parent["tags.medbalance.kind"] == "cv"
    assert parent["params.decision.chosen_on"] == "oof"
    ensemble = RunFolder(tmp_path / "cv").read_metrics()
    assert parent["metrics.test_auroc"] == pytest.approx(ensemble["metrics"]["auroc"]["value"])


def test_a_store_that_cannot_be_written_warns_once_and_the_run_finishes(
    tiny_npz: Path, tmp_path: Path, tracker_warnings: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = (blocker / "mlruns").as_uri()
    run = mb.train(tiny_npz, out=tmp_path / "run", track="mlflow", track_uri=uri, **TINY)
    assert len(tracker_warnings) == 1
    assert f"MLflow tracking to {uri} failed" in tracker_warnings[0]
    assert "the run and its files are complete" in tracker_warnings[0]
    folder = RunFolder(run.path)
    assert folder.is_evaluated() and folder.best.is_file() and folder.report.is_file()


def test_a_server_that_is_down_warns_once(
    tiny_npz: Path, tmp_path: Path, tracker_warnings: list[str]
) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    run = mb.train(tiny_npz, out=tmp_path / "run", track="mlflow", track_uri=uri, **TINY)
    assert len(tracker_warnings) == 1 and f"MLflow tracking to {uri} failed" in tracker_warnings[0]
    assert RunFolder(run.path).is_evaluated()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.load(response))


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free port of 127.0.0.1; skipped when it cannot start."""
    try:
        port = _free_port()
    except OSError as error:
        pytest.skip(f"no free port on 127.0.0.1 to bind: {error}")
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", str(tmp_path / "server-store"),
        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.skip(f"mlflow server exited ({server.returncode}); port {port} taken?")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.skip("mlflow server did not come up within 60 s")
                time.sleep(1)
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow
def test_train_logs_to_a_server_over_http(
    tiny_npz: Path, tmp_path: Path, mlflow_server: str, tracker_warnings: list[str]
) -> None:
    run = mb.train(tiny_npz, out=tmp_path / "run", track="mlflow", track_uri=mlflow_server, **TINY)
    assert tracker_warnings == []
    api = f"{mlflow_server}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name={EXPERIMENT}")
    found = _post(
        f"{api}/runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]]}
    )
    assert len(found["runs"]) == 1
    logged = found["runs"][0]
    assert logged["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in logged["data"]["metrics"]}
    expected = run.metrics["metrics"]["auroc"]
    assert metrics["test_auroc"] == pytest.approx(expected["value"])
    assert metrics["test_auroc_ci_low"] == pytest.approx(expected["ci"][0])
    params = {p["key"]: p["value"] for p in logged["data"]["params"]}
    assert params["model"] == run.config["model"]
    artifacts = _get(f"{api}/artifacts/list?run_id={logged['info']['run_id']}")
    assert {f["path"] for f in artifacts["files"]} >= ARTIFACTS
