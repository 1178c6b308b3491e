"""Tests for medbalance.training.losses: the limits where each loss equals CE, weights, errors,
stability."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from medbalance.training.class_weights import class_balanced_weights, drw_weights
from medbalance.training.loss_functions import cross_entropy, focal_loss, soft_f1_loss
from medbalance.training.losses import (
    LOSSES,
    BalancedSoftmaxLoss,
    ClassBalancedCrossEntropyLoss,
    CostSensitiveCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LossName,
    SoftF1Loss,
    WeightedCrossEntropyLoss,
    create_loss,
)

COUNTS = [90, 10]
# options a loss needs beyond the counts (cost-ce has no default cost matrix)
REQUIRED: dict[str, dict[str, Any]] = {"cost-ce": {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]}}


def _batch(n: int = 12, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, c, (n,), generator=g)
    return logits, target


def _build(name: str, counts: list[int] = COUNTS, **options: Any) -> torch.nn.Module:
    return create_loss(name, counts, **REQUIRED.get(name, {}), **options)


# --- limits that equal cross-entropy -------------------------------------------------------------
def test_focal_with_gamma_zero_equals_ce() -> None:
    logits, target = _batch()
    assert_close(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target))
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    per_sample = F.cross_entropy(logits, target, reduction="none") * w[target]
    assert_close(focal_loss(logits, target, gamma=0.0, class_weight=w), per_sample.mean())


def test_focal_down_weights_easy_samples() -> None:
    logits, target = _batch()
    assert focal_loss(logits, target, gamma=2.0) < F.cross_entropy(logits, target)


def test_ldam_with_zero_margin_and_unit_scale_equals_ce() -> None:
    logits, target = _batch()
    loss = LDAMLoss([50, 10, 5], max_m=0.0, scale=1.0)
    assert_close(loss(logits, target), F.cross_entropy(logits, target))


def test_logit_adjustment_with_tau_zero_equals_ce() -> None:
    logits, target = _batch()
    loss = LogitAdjustedLoss([50, 10, 5], tau=0.0)
    assert_close(loss(logits, target), F.cross_entropy(logits, target))


def test_balanced_softmax_with_uniform_prior_equals_ce() -> None:
    logits, target = _batch()
    loss = BalancedSoftmaxLoss([7, 7, 7])
    assert_close(loss(logits, target), F.cross_entropy(logits, target))


def test_balanced_softmax_adds_log_prior() -> None:
    logits, target = _batch(c=2)
    shifted = logits + torch.log(torch.tensor([0.9, 0.1], dtype=torch.float64))
    assert_close(BalancedSoftmaxLoss(COUNTS)(logits, target), F.cross_entropy(shifted, target))


def test_weighted_ce_with_equal_counts_equals_ce() -> None:
    logits, target = _batch()
    assert_close(
        WeightedCrossEntropyLoss([4, 4, 4])(logits, target), F.cross_entropy(logits, target)
    )


def test_cb_ce_weights_each_sample_by_its_class() -> None:
    logits, target = _batch()
    counts = [50, 10, 5]
    w = class_balanced_weights(counts).double()
    expected = (F.cross_entropy(logits, target, reduction="none") * w[target]).mean()
    assert_close(ClassBalancedCrossEntropyLoss(counts)(logits, target), expected)


@pytest.mark.parametrize("k", [1.0, 7.5])
def test_cost_ce_with_scaled_zero_one_matrix_equals_ce(k: float) -> None:
    logits, target = _batch()
    cost = k * (1 - torch.eye(3))
    assert_close(
        CostSensitiveCrossEntropyLoss(cost)(logits, target), F.cross_entropy(logits, target)
    )


@pytest.mark.parametrize("name", ["ce", "weighted-ce", "balanced-softmax"])
def test_label_smoothing_matches_torch(name: str) -> None:
    logits, target = _batch()
    loss = create_loss(name, [6, 6, 6], label_smoothing=0.1)
    assert_close(loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1))


def test_cross_entropy_reductions() -> None:
    logits, target = _batch()
    per_sample = F.cross_entropy(logits, target, reduction="none")
    assert_close(cross_entropy(logits, target, reduction="none"), per_sample)
    assert_close(cross_entropy(logits, target, reduction="sum"), per_sample.sum())


def test_soft_f1_closed_form() -> None:
    # p(positive) = [0.5, 0.5, ~0]: TP = 0.5, FP = 0.5, FN = 0.5 -> F1 = 1 / 2
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [50.0, -50.0]], dtype=torch.float64)
    target = torch.tensor([1, 0, 0])
    assert_close(soft_f1_loss(logits, target), torch.tensor(0.5, dtype=torch.float64))


# --- every loss ---------------------------------------------------------------------------------
def test_loss_names_match_registry() -> None:
    assert set(LOSSES) == {name.value for name in LossName}


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_builds_from_counts_and_backpropagates(name: str) -> None:
    logits, target = _batch(n=16, c=2)
    logits = logits.float().requires_grad_()
    loss = _build(name)(logits, target)
    assert loss.ndim == 0
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("name", "options"),
    [(name, {}) for name in LOSSES] + [("focal", {"gamma": 0.5}), ("ce", {"label_smoothing": 0.2})],
)
def test_gradients_finite_on_extreme_logits(name: str, options: dict[str, Any]) -> None:
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    target = torch.tensor([0, 0, 1, 1])  # right, wrong, wrong, right
    loss = _build(name, **options)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_forward_changes_no_state(name: str) -> None:
    loss = _build(name, class_weight=[1.0, 3.0]) if name in ("ce", "ldam") else _build(name)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    attrs = {k: v for k, v in vars(loss).items() if not k.startswith("_")}
    logits, target = _batch(n=8, c=2)
    loss(logits.float(), target)
    after = loss.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert attrs == {k: v for k, v in vars(loss).items() if not k.startswith("_")}


def test_class_weights_are_buffers() -> None:
    loss = create_loss("ldam", COUNTS, class_weight=drw_weights(COUNTS))
    assert {"class_weight", "margins"} <= set(dict(loss.named_buffers()))
    assert list(loss.parameters()) == []


def test_half_precision_logits_compute_in_float32() -> None:
    logits, target = _batch()
    loss = CrossEntropyLoss()(logits.to(torch.bfloat16), target)
    assert loss.dtype == torch.float32


# --- errors --------------------------------------------------------------------------------------
def test_unknown_name_suggests_nearest() -> None:
    with pytest.raises(ValueError, match="did you mean 'focal'"):
        create_loss("focall", COUNTS)


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) gama; .*did you mean gamma"):
        create_loss("focal", COUNTS, gama=2)


def test_derived_weight_losses_refuse_class_weight() -> None:
    with pytest.raises(TypeError, match="takes no class_weight; pass class_weight to 'ce'"):
        create_loss("weighted-ce", COUNTS, class_weight=[1.0, 2.0])


def test_cost_ce_needs_a_matching_cost_matrix() -> None:
    with pytest.raises(TypeError, match=r"needs option\(s\) cost_matrix"):
        create_loss("cost-ce", COUNTS)
    with pytest.raises(ValueError, match="cost_matrix is 3 x 3 but there are 2 classes"):
        create_loss("cost-ce", COUNTS, cost_matrix=1 - torch.eye(3))


def test_soft_f1_refuses_three_classes() -> None:
    with pytest.raises(ValueError, match=r"binary problems only \(2 classes\); got 3 classes"):
        create_loss("soft-f1", [5, 3, 2])
    with pytest.raises(ValueError, match="use 'ce', 'focal' or 'ldam'"):
        SoftF1Loss(3)
    logits, target = _batch(c=3)
    with pytest.raises(ValueError, match=r"logits need 2 columns; got shape \(12, 3\)"):
        soft_f1_loss(logits, target)


def test_zero_count_class_is_an_error() -> None:
    with pytest.raises(
        ValueError, match=r"class_counts\[1\] is 0 .*needs a whole, positive number"
    ):
        create_loss("ce", [90, 0])


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("focal", {"gamma": -1.0}, r"gamma=-1.0 is invalid: it must be >= 0"),
        ("cb-ce", {"beta": 1.0}, r"beta=1.0 is invalid: it must lie in \[0, 1\)"),
        ("ce", {"label_smoothing": 1.0}, r"label_smoothing=1.0 is invalid"),
        ("logit-adjusted", {"tau": math.nan}, r"tau=nan is invalid"),
        ("ldam", {"scale": 0.0}, r"scale=0.0 is invalid: it must be > 0"),
        ("ce", {"reduction": "avg"}, r"reduction='avg' is invalid"),
        ("ce", {"class_weight": [1.0, -1.0]}, r"class_weight must be finite, nonnegative"),
        ("focal", {"class_weight": [1.0, 2.0, 3.0]}, r"one weight per class \(2 classes\)"),
    ],
)
def test_invalid_options_are_refused(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_loss(name, COUNTS, **options)


def test_input_shapes_are_checked() -> None:
    loss = create_loss("ce", COUNTS)
    logits, target = _batch(c=3)
    with pytest.raises(ValueError, match=r"logits have 3 classes .* built for 2"):
        loss(logits, target)
    with pytest.raises(ValueError, match=r"target must be int64 .*\(use target.long\(\)\)"):
        loss(logits[:, :2], target.int())
