"""gradcam.py: captum Grad-CAM maps, the target layer, and overlays."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from medbalance.evaluation.ensemble import Ensemble
from medbalance.evaluation.gallery import model_gradcam
from medbalance.evaluation.gradcam import find_target_layer, gradcam_maps, overlay
from medbalance.evaluation.inference import Trained
from medbalance.models.backbones import create_model


def _head_modules(model: nn.Module) -> set[int]:
    return {id(m) for m in model.get_classifier().modules()}  # type: ignore[operator]


class _Spotter(nn.Module):
    """Class 1's logit is the mean brightness, class 0's its negative: evidence is where x is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["smallcnn", "resnet18", "efficientnet_b0"])
def test_target_layer_is_the_last_backbone_conv(name: str) -> None:
    model = create_model(name, num_classes=2, in_chans=1)
    layer = find_target_layer(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert isinstance(layer, nn.Conv2d) and id(layer) not in _head_modules(model)
    assert layer is [m for m in convs if id(m) not in _head_modules(model)][-1]


def test_target_layer_needs_a_convolution() -> None:
    with pytest.raises(ValueError, match=r"Sequential has no nn.Conv2d outside its classifier"):
        find_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
@pytest.mark.parametrize("training", [True, False])
def test_maps_leave_the_model_unchanged(name: str, training: bool) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_chans=1, drop_rate=0.2).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    maps = gradcam_maps(model, torch.randn(3, 1, 32, 32), torch.tensor([0, 1, 1]))
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm stats too
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_smallcnn_maps_span_zero_to_one() -> None:
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, in_chans=1).eval()
    maps = gradcam_maps(model, torch.randn(4, 1, 32, 32), torch.tensor([1, 1, 1, 1]))
    peaks = maps.reshape(4, -1).max(axis=1)
    assert ((peaks == 1.0) | (peaks == 0.0)).all() and (peaks == 1.0).any()  # per-map min-max


def test_maps_point_at_the_evidence() -> None:
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 2:5, 10:13] = 1.0  # a bright spot, top right
    positive = gradcam_maps(_Spotter(), x, torch.tensor([1]))[0]
    spot = np.zeros((16, 16), dtype=bool)
    spot[2:5, 10:13] = True
    assert (positive[spot] == 1.0).all() and (positive[~spot] == 0.0).all()
    negative = gradcam_maps(_Spotter(), x, torch.tensor([0]))[0]
    assert negative.max() == 0.0  # no positive evidence for class 0: an all-zero map


def test_one_pixel_layer_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    model = create_model("resnet18", num_classes=2, in_chans=3).eval()
    with caplog.at_level(logging.WARNING, logger="medbalance.evaluation.gradcam"):
        maps = gradcam_maps(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert "layer4.1.conv2 gives a 1x1 map for 32x32 inputs" in caplog.text
    assert maps.shape == (2, 32, 32) and (maps == 0).all()


def test_target_must_match_the_batch() -> None:
    with pytest.raises(ValueError, match=r"x has 2 images, target has shape \(3,\)"):
        gradcam_maps(_Spotter(), torch.zeros(2, 1, 8, 8), torch.tensor([0, 1, 1]))


def test_overlay_blends_a_colour_map() -> None:
    gray = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    blended = overlay(gray, heat)  # the map is resized to the image
    assert blended.shape == (8, 8, 3) and blended.dtype == np.uint8
    assert blended[0, 0, 0] > blended[0, 0, 2]  # hot: red
    assert blended[7, 7, 2] > blended[7, 7, 0]  # cold: blue
    rgb = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    assert np.array_equal(overlay(rgb, np.zeros((8, 8)), alpha=0.0), rgb)


def test_overlay_rejects_bad_shapes() -> None:
    with pytest.raises(
        ValueError, match=r"image must be H x W or H x W x 3, got shape \(8, 8, 4\)"
    ):
        overlay(np.zeros((8, 8, 4)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"heatmap must be H x W, got shape \(1, 8, 8\)"):
        overlay(np.zeros((8, 8)), np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 2"):
        overlay(np.zeros((8, 8)), np.zeros((8, 8)), alpha=2)


# --- Grad-CAM of a trained model or an ensemble (evaluation.gallery.model_gradcam) ------------


class _ToUnit(nn.Module):
    """The evaluation transform's shape: uint8 pixels to floats."""

    def forward(self, x: Tensor, train: bool = False) -> Tensor:
        return x.float() / 255


def _member(seed: int) -> Trained:
    torch.manual_seed(seed)
    model = create_model("smallcnn", num_classes=3, in_chans=1)
    meta = {"class_names": ["a", "b", "c"], "presize": 32, "channels": 1, "image_size": 32}
    return Trained(model, _ToUnit(), meta, torch.device("cpu"))


def _batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8)


def test_ensemble_of_identical_members_gives_the_members_map() -> None:
    single = _member(0)
    twin = _member(0)  # another module with the same weights
    target = np.array([0, 1, 2])
    alone, shown = model_gradcam(single, _batch(), target)
    together, shown_too = model_gradcam(Ensemble([single, twin], {}), _batch(), target)
    assert alone.shape == (3, 32, 32) and alone.max() > 0
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(shown_too, shown)
    direct = gradcam_maps(single.model, torch.from_numpy(_batch()).float() / 255, target)
    np.testing.assert_array_equal(alone, direct)  # one model: exactly its Grad-CAM map


def test_ensemble_map_is_the_mean_of_the_members_maps() -> None:
    first, second = _member(0), _member(1)
    target = np.array([2, 2, 0])
    a, _ = model_gradcam(first, _batch(), target)
    b, _ = model_gradcam(second, _batch(), target)
    assert not np.allclose(a, b)  # the members disagree, so the mean is not either one
    mean, _ = model_gradcam(Ensemble([first, second], {}), _batch(), target)
    np.testing.assert_allclose(mean, (a + b) / 2, rtol=0, atol=1e-6)
