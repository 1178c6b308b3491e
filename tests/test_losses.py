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


# --- AUC-margin (aucm): MONAI's AUCMLoss, PESG --------------------------------------------------
def _monai_aucm() -> Any:
    return pytest.importorskip("monai.losses", reason="the aucm loss needs MONAI").AUCMLoss


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aucm_equals_monai_on_the_positive_probability(version: str) -> None:
    aucm_cls = _monai_aucm()
    logits, target = _batch(n=16, c=2, seed=3)
    loss = create_loss("aucm", COUNTS, positive=1, version=version, margin=0.7)
    reference = aucm_cls(margin=0.7, version=version)
    with torch.no_grad():  # the same non-zero min-max variables in both
        for module in (loss.aucm, reference):
            module.a.fill_(0.3)
            module.b.fill_(0.6)
            module.alpha.fill_(0.2)
    score = torch.softmax(logits.float(), dim=1)[:, 1:]
    assert_close(loss(logits.float(), target), reference(score, target.float()[:, None]))
    # positive=0 ranks class 0: the score is its probability, the target flipped
    flipped = create_loss("aucm", COUNTS, positive=0, version=version, margin=0.7)
    flipped.load_state_dict(loss.state_dict())
    assert_close(flipped(logits.flip(1).float(), 1 - target), loss(logits.float(), target))


def test_aucm_is_lower_when_positives_score_above_negatives() -> None:
    _monai_aucm()
    target = torch.tensor([0, 0, 0, 1, 1, 0, 0, 1])
    loss = create_loss("aucm", COUNTS, version="v2")
    with torch.no_grad():  # a and b at the class means of a perfect ranking, alpha > 0
        loss.aucm.a.fill_(1.0)
        loss.aucm.alpha.fill_(0.5)
    right = torch.stack([-4.0 * (2 * target - 1), 4.0 * (2 * target - 1)], dim=1).float()
    assert loss(right, target) < loss(-right, target)
    assert loss(right, target) < loss(torch.zeros_like(right), target)


def test_aucm_default_positive_is_the_minority_and_it_is_binary_only() -> None:
    _monai_aucm()
    assert create_loss("aucm", [90, 10]).positive == 1
    assert create_loss("aucm", [10, 90]).positive == 0
    with pytest.raises(ValueError, match=r"binary problems only \(2 classes\); got 3 classes"):
        create_loss("aucm", [5, 3, 2])
    with pytest.raises(ValueError, match=r"margin=0 is invalid: it must be > 0"):
        create_loss("aucm", COUNTS, margin=0)


def test_aucm_without_monai_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "monai", None)
    monkeypatch.setitem(sys.modules, "monai.losses", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'medbalance\[monai\]'"):
        create_loss("aucm", COUNTS)


def test_import_medbalance_does_not_import_monai() -> None:
    import subprocess
    import sys

    code = "import medbalance, medbalance.losses, sys; assert 'monai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pesg_step_matches_a_hand_computation() -> None:
    from medbalance.training.losses import PESG

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    alpha = torch.nn.Parameter(torch.tensor(0.1))
    opt = PESG(
        [{"params": [w]}, {"params": [alpha], "ascent": True}],
        lr=0.5,
        momentum=0.9,
        weight_decay=0.1,
        epoch_decay=0.2,
    )
    ref = torch.tensor([1.0, -2.0])
    for grad_w, grad_a in (([0.4, -0.2], 0.3), ([1.0, 1.0], -0.8)):
        w.grad, alpha.grad = torch.tensor(grad_w), torch.tensor(grad_a)
        opt.step()
    # by hand: d1 = g1 + 0.2 (w0 - ref) + 0.1 w0 = [0.5, -0.4]; buf1 = d1; w1 = w0 - 0.5 buf1
    w1 = torch.tensor([0.75, -1.8])
    d2 = torch.tensor([1.0, 1.0]) + 0.2 * (w1 - ref) + 0.1 * w1  # [1.025, 0.98]
    buf2 = 0.1 * torch.tensor([0.5, -0.4]) + 0.9 * d2  # LibAUC's averaged momentum
    assert_close(w.detach(), w1 - 0.5 * buf2)
    # alpha ascends, projected on alpha >= 0: 0.1 + 0.5 * 0.3 = 0.25, then max(0, 0.25 - 0.4)
    assert alpha.item() == 0.0


def test_pesg_ascends_alpha_and_descends_the_rest_of_the_aucm_loss() -> None:
    _monai_aucm()
    from medbalance.training.losses import PESG

    loss = create_loss("aucm", COUNTS, version="v2")
    logits = torch.zeros(8, 2, requires_grad=True)
    target = torch.tensor([0, 1, 0, 1, 0, 0, 0, 1])
    opt = PESG(
        [
            {"params": [loss.aucm.a, loss.aucm.b, logits]},
            {"params": [loss.aucm.alpha], "ascent": True},
        ],
        lr=0.1,
    )
    loss(logits, target).backward()
    opt.step()
    assert loss.aucm.alpha.item() > 0  # margin 1 with equal scores: the constraint is violated
    for _ in range(20):  # once alpha > 0, the margin term lifts the positives over the negatives
        opt.zero_grad()
        loss(logits, target).backward()
        opt.step()
    score = torch.softmax(logits.detach(), dim=1)[:, 1]
    assert score[target == 1].min() > score[target == 0].max()


# --- aucm in a run -------------------------------------------------------------------------------
def test_aucm_trains_end_to_end_with_the_dual_sampler(tiny_npz: Any, tmp_path: Any) -> None:
    _monai_aucm()
    import json

    import medbalance as mb

    run = mb.train(
        tiny_npz,
        out=tmp_path / "run",
        epochs=2,
        size=32,
        model="smallcnn",
        bootstrap=20,
        loss="aucm",
        sampler="dual:0.2",
        verbose=False,
    )
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["auroc"]["value"] <= 1.0
    config = json.loads((run.path / "config.json").read_text())
    assert (config["loss"], config["sampler"]) == ("aucm", "dual:0.2")


def test_aucm_and_dual_refuse_multiclass_data(tmp_path: Any) -> None:
    import numpy as np

    import medbalance as mb
    from medbalance.training.config import ConfigError

    arrays = {}
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).astype(np.uint8)[:, None]
    data = tmp_path / "three.npz"
    np.savez(data, **arrays)
    for options, what in (({"loss": "aucm"}, "--loss aucm"), ({"sampler": "dual:0.2"}, "dual")):
        with pytest.raises(ConfigError, match=rf"{what} ranks a positive class .* needs two"):
            mb.train(data, out=tmp_path / "r", epochs=1, model="smallcnn", **options)
        assert not (tmp_path / "r").exists()


def test_aucm_without_monai_exits_2_with_the_fix(
    tiny_npz: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from typer.testing import CliRunner

    from medbalance.cli import app

    monkeypatch.setitem(sys.modules, "monai", None)
    args = ["train", str(tiny_npz), "--out", str(tmp_path / "r"), "--loss", "aucm"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--model", "smallcnn"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --loss aucm needs MONAI, which is not installed: pip install 'medbalance[monai]'"
    ]
    assert not (tmp_path / "r").exists()


def test_aucm_refuses_drw() -> None:
    from medbalance.training.config import ConfigError, TrainConfig
    from medbalance.training.prepare import _check_auc_margin

    config = TrainConfig(data="x.npz", loss="aucm", drw=True)
    with pytest.raises(ConfigError, match="cannot be combined with deferred re-weighting"):
        _check_auc_margin(config, ("a", "b"))


def test_aucm_remedy_is_binary_only(tmp_path: Any) -> None:
    from medbalance.comparison.remedies import parse_remedies, remedy_config
    from medbalance.training.config import ConfigError, TrainConfig

    (remedy,) = parse_remedies("aucm")
    base = TrainConfig(data="d", epochs=4)
    made = remedy_config(remedy, base, seed=0, out=tmp_path, n_classes=2, positive=1)
    assert (made.loss, made.sampler, made.lr) == ("aucm", "dual:0.2", 0.1)  # PESG's step
    with pytest.raises(ConfigError, match="remedy 'aucm' .* needs two classes; the data has 3"):
        remedy_config(remedy, base, seed=0, out=tmp_path, n_classes=3, positive=1)
