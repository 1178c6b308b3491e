"""Tests for medbalance.core.run_folder: one owner of the run folder's names, strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medbalance.core.run_folder import RunFolder


def test_names_and_strict_json(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert (
        folder.metrics().name == "metrics.json" and folder.metrics("val").name == "metrics_val.json"
    )
    assert folder.predictions("val").name == "predictions_val.csv"
    folder.write_metrics({"a": math.nan, "b": [np.float32(0.5), math.inf], "c": np.int64(3)})
    text = folder.metrics().read_text()
    assert json.loads(text) == {"a": None, "b": [0.5, None], "c": 3}
    assert "NaN" not in text and "Infinity" not in text
    assert folder.read_metrics() == {"a": None, "b": [0.5, None], "c": 3}


def test_history_and_predictions_round_trip(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_history(
        [
            {"epoch": 0, "phase_name": "full", "seconds": 1.5},
            {"epoch": 1, "phase_name": "full", "seconds": 2.0},
        ]
    )
    assert folder.train_seconds() == 3.5
    assert folder.read_history()[1] == {"epoch": 1.0, "phase_name": "full", "seconds": 2.0}
    folder.predictions().write_text(
        "id,path,true_label,prob_a,prob_b,predicted_label,threshold\n"
        "x,,a,0.9,0.1,a,0.5\ny,,b,0.2,0.8,b,0.5\n"
    )
    rows = folder.read_predictions(["a", "b"])
    assert rows.ids == ["x", "y"] and rows.labels.tolist() == [0, 1]
    assert rows.preds.tolist() == [0, 1] and rows.probs.shape == (2, 2)
    with pytest.raises(ValueError, match="no column prob_c"):
        folder.read_predictions(["a", "c"])


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.config.write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json should hold a JSON object"):
        folder.read_config()
    folder.config.write_text("{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        folder.read_config()
    assert not folder.is_evaluated()


def test_text_cells_are_spreadsheet_safe_and_read_back(tmp_path: Path) -> None:
    from medbalance.core.files import from_spreadsheet_safe, spreadsheet_safe

    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert spreadsheet_safe("-2+3") == "'-2+3" and spreadsheet_safe("normal") == "normal"
    for text in ("=x", "+x", "-x", "@x", "\tx", "plain", "'quoted"):
        assert from_spreadsheet_safe(spreadsheet_safe(text)) == text
    folder = RunFolder(tmp_path)
    folder.predictions().write_text(
        "id,path,true_label,prob_=a,prob_b,predicted_label,threshold\n'@id,,'=a,0.9,0.1,'=a,0.5\n"
    )
    rows = folder.read_predictions(["=a", "b"])
    assert rows.ids == ["@id"] and rows.labels.tolist() == [0] and rows.preds.tolist() == [0]


def test_device_names() -> None:
    import torch

    from medbalance.core.device import select_device

    assert select_device("cpu:0") == torch.device("cpu", 0)
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="--device must be auto, cpu, cuda, cuda:N or mps"):
        select_device("gpu")
