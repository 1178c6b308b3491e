"""Tests for medbalance.models.backbones: factory, weights loading, head/backbone split, LR
groups."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from medbalance.models import backbones as models
from medbalance.models.backbones import (
    PretrainedUnavailableError,
    SmallCNN,
    backbone_parameters,
    create_model,
    default_model_for,
    head_parameters,
    param_groups,
    set_backbone_trainable,
)


class NotATensor:
    """A custom class: pickling it makes a file that weights_only loading must refuse."""


@pytest.fixture(scope="module")
def rgb_resnet18() -> dict[str, torch.Tensor]:
    """State dict of a 3-channel, 1000-class resnet18 (stands in for ImageNet weights)."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=1000, in_chans=3)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [28, 64])
def test_smallcnn_forward_shape(in_chans: int, size: int) -> None:
    model = create_model("smallcnn", num_classes=3, in_chans=in_chans, drop_rate=0.2)
    x = torch.randn(4, in_chans, size, size)
    features = model.forward_features(x)  # type: ignore[operator]
    assert features.shape == (4, 256, size // 8, size // 8)
    assert model(x).shape == (4, 3)
    assert model.forward_head(features, pre_logits=True).shape == (4, 256)  # type: ignore[operator]


def test_smallcnn_classifier_api() -> None:
    model = SmallCNN(num_classes=2, in_chans=1)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.out_features == 2
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.get_classifier() is not head
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    model.reset_classifier(0)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 256)


def test_timm_model_one_channel() -> None:
    model = create_model("resnet18", num_classes=4, in_chans=1)
    model.eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_unknown_name_suggests_nearest() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'resnet18'"):
        create_model("resnet-18", num_classes=2, in_chans=1)
    with pytest.raises(ValueError, match=r"did you mean 'smallcnn'"):
        create_model("smallcn", num_classes=2, in_chans=1)


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError, match="num_classes=0"):
        create_model("smallcnn", num_classes=0, in_chans=1)
    with pytest.raises(ValueError, match=r"drop_rate must be in \[0, 1\), got 1.5"):
        create_model("smallcnn", num_classes=2, in_chans=1, drop_rate=1.5)


def test_pretrained_offline_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest sets HF_HUB_OFFLINE=1
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # empty cache
    start = time.perf_counter()
    with pytest.raises(PretrainedUnavailableError, match="--weights PATH"):
        create_model("resnet18", num_classes=2, in_chans=1, pretrained=True)
    assert time.perf_counter() - start < 10


def test_pretrained_unreachable_hub_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(models, "_unreachable", lambda url: "huggingface.co:443 is unreachable")
    with pytest.raises(PretrainedUnavailableError, match=r"unreachable.*--weights PATH"):
        create_model("resnet18", num_classes=2, in_chans=1, pretrained=True)


def test_pretrained_env_offline_refused_without_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # set after import
    with pytest.raises(PretrainedUnavailableError, match=r"HF_HUB_OFFLINE is set.*--weights"):
        create_model("resnet18", num_classes=2, in_chans=1, pretrained=True)


def test_probe_reports_unknown_host_and_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = models._unreachable("https://no-such-host.invalid", timeout=2.0)
    assert reason is not None and "no-such-host.invalid is unreachable" in reason

    monkeypatch.setattr(models.urllib.request, "urlopen", lambda *a, **k: time.sleep(5))
    start = time.perf_counter()
    reason = models._unreachable("https://huggingface.co", timeout=0.3)
    assert reason == "https://huggingface.co did not answer within 0.3 s"
    assert time.perf_counter() - start < 2


def test_smallcnn_has_no_pretrained_weights() -> None:
    with pytest.raises(PretrainedUnavailableError, match="'smallcnn' has no published"):
        create_model("smallcnn", num_classes=2, in_chans=1, pretrained=True)


def _check_adapted(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    torch.testing.assert_close(own["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.bias"):
        torch.testing.assert_close(own[key], source[key])
    assert own["fc.weight"].shape == (2, 512)  # a new head, not rows of the old one
    assert not torch.allclose(own["fc.weight"], source["fc.weight"][:2])


def test_weights_from_safetensors_adapt_first_conv_and_drop_head(
    tmp_path: Path, rgb_resnet18: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(rgb_resnet18, str(path))
    model = create_model("resnet18", num_classes=2, in_chans=1, weights=path)
    _check_adapted(model, rgb_resnet18)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_weights_from_pth_state_dict(
    tmp_path: Path, rgb_resnet18: dict[str, torch.Tensor], wrapper: str | None
) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(rgb_resnet18 if wrapper is None else {wrapper: rgb_resnet18, "epoch": 3}, path)
    model = create_model("resnet18", num_classes=2, in_chans=1, weights=str(path))
    _check_adapted(model, rgb_resnet18)


def test_weights_with_matching_head_are_loaded_whole(tmp_path: Path) -> None:
    source = create_model("smallcnn", num_classes=2, in_chans=3)
    path = tmp_path / "small.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # DDP keys
    model = create_model("smallcnn", num_classes=2, in_chans=3, weights=path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "config": NotATensor()}, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pth.*pickled Python objects.*state_dict"):
        create_model("resnet18", num_classes=2, in_chans=1, weights=path)


@pytest.mark.parametrize("name", ["efficientnet_b0", "smallcnn"])
def test_wrong_architecture_names_keys(
    tmp_path: Path, rgb_resnet18: dict[str, torch.Tensor], name: str
) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(rgb_resnet18, str(path))
    informative = r"\(e\.g\. (?!\S*num_batches)\w+\."  # examples are not num_batches_tracked
    pattern = rf"fit model '{name}': \d+ model keys missing .* the model lacks {informative}"
    with pytest.raises(ValueError, match=pattern):
        create_model(name, num_classes=2, in_chans=1, weights=path)


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors"):
        create_model("smallcnn", num_classes=2, in_chans=1, weights=tmp_path / "absent.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"suffix '\.onnx'; expected \.safetensors"):
        create_model("smallcnn", num_classes=2, in_chans=1, weights=tmp_path / "w.onnx")


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_head_and_backbone_split(name: str) -> None:
    model = create_model(name, num_classes=2, in_chans=1)
    head, backbone = head_parameters(model), backbone_parameters(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}  # type: ignore[operator]
    assert len(head) + len(backbone) == len(list(model.parameters()))
    set_backbone_trainable(model, False)
    assert [p for p in model.parameters() if p.requires_grad] == head
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("n_groups", [1, 3])
def test_param_groups_cover_everything_once(n_groups: int, weight_decay: float) -> None:
    model = create_model("resnet18", num_classes=2, in_chans=1)
    lr, mult = 1e-3, 0.1
    groups = param_groups(
        model, lr, backbone_lr_mult=mult, n_groups=n_groups, weight_decay=weight_decay
    )
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    lrs = {g["name"].split(".decay")[0].split(".no_decay")[0]: g["lr"] for g in groups}
    if n_groups == 1:
        expected = {"backbone.0": lr * mult}
    else:  # geometric from lr * mult**2 (first chunk) to lr * mult (last)
        expected = {f"backbone.{k}": lr * mult ** (2 - k / 2) for k in range(3)}
    assert lrs == pytest.approx({**expected, "head": lr})
    head_ids = {id(p) for p in head_parameters(model)}
    assert all(g["name"].startswith("head") == (id(g["params"][0]) in head_ids) for g in groups)
    for group in groups:
        dims = {p.ndim for p in group["params"]}
        if weight_decay and group["name"].endswith("no_decay"):
            assert group["weight_decay"] == 0.0 and dims <= {1}
        else:
            assert group["weight_decay"] == weight_decay
            assert not weight_decay or dims.isdisjoint({0, 1})
    torch.optim.AdamW(groups)  # accepted by an optimizer as is


def test_param_groups_skip_frozen_and_validate() -> None:
    model = create_model("smallcnn", num_classes=2, in_chans=1)
    set_backbone_trainable(model, False)
    groups = param_groups(model, 0.01)
    assert [g["name"] for g in groups] == ["head"]
    assert groups[0]["params"] == head_parameters(model)
    with pytest.raises(ValueError, match="backbone_lr_mult=0"):
        param_groups(model, 0.01, backbone_lr_mult=0)


def test_default_model_for() -> None:
    assert default_model_for(28, "cpu") == "smallcnn"
    assert default_model_for(64, "cpu") == "smallcnn"
    assert default_model_for(128, "cpu") == "resnet18"
    assert default_model_for(28, "cuda:0") == "resnet18"
    with pytest.raises(ValueError, match="image_size must be >= 1, got 0"):
        default_model_for(0, "cpu")
