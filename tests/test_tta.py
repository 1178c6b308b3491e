"""Tests for medbalance.models.tta and --tta: fixed, safe views; the average of probabilities;
the operating point chosen with the views that predict then uses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medbalance.models import tta as tta_module
from medbalance.models.tta import MAX_VIEWS, unwrap, view_params, with_tta


class _Mean(nn.Module):
    """Logits from the mean brightness of the left and right halves (sees laterality)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.stack([x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))], 1)


def test_views_are_safe_and_averaged() -> None:
    assert view_params(1) == ((0.0, 0.0, 0.0, 1.0),)
    assert all(zoom > 0 for *_, zoom in view_params(MAX_VIEWS))  # zooms, never a flip (-1)
    with pytest.raises(ValueError, match="1 to 9 views"):
        view_params(10)
    model = _Mean()
    assert with_tta(model, 1) is model
    x = torch.zeros(2, 1, 16, 16)
    x[..., 8:] = 1.0  # the right half bright
    wrapped = tta_module.TestTimeAugmentation(model, 5)
    probs = torch.softmax(wrapped(x), dim=1)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    # the average of the views' probabilities, each computed by hand
    expected = []
    for theta in wrapped.thetas:
        grid = nn.functional.affine_grid(theta.expand(2, 2, 3), list(x.shape), False)
        view = nn.functional.grid_sample(x, grid, "bilinear", "zeros", align_corners=False)
        expected.append(torch.softmax(model(view), 1))
    torch.testing.assert_close(probs, torch.stack(expected).mean(0))
    assert probs[0, 1] > probs[0, 0]  # laterality kept: no view mirrored the image
    assert unwrap(wrapped) is model


@pytest.mark.slow
def test_evaluate_with_tta_rechooses_and_predict_follows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conftest import write_npz
    from medbalance.cli import app
    from medbalance.evaluation.inference import load_trained

    data = write_npz(tmp_path / "d.npz", {"train": (40, 20), "val": (20, 20), "test": (10, 10)})
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), "--epochs", "1", "--model", "smallcnn"]
    assert CliRunner().invoke(app, [*args, "--bootstrap", "20"]).exit_code == 0
    plain = load_trained(run / "best.safetensors")
    result = CliRunner().invoke(app, ["evaluate", str(run), "--tta", "5", "--no-report"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold"]["tta"] == 5 and metrics["threshold"]["chosen_on"] == "val"
    trained = load_trained(run / "best.safetensors")  # the stored decision brings the views
    assert trained.decision.tta == 5 and isinstance(trained.model, tta_module.TestTimeAugmentation)
    # the checkpoint still holds the bare network's weights
    for key, value in unwrap(trained.model).state_dict().items():
        torch.testing.assert_close(value, unwrap(plain.model).state_dict()[key])
    with np.load(data) as arrays:
        batch = arrays["test_images"][:4][:, None]
    assert not np.allclose(trained.probabilities(batch), plain.probabilities(batch))
    shutil.rmtree(run)
