"""Ordinal (graded) tasks: the CORN head, the class order, and a run end to end.

CORN: Shi, Cao & Raschka (2021), "Deep neural networks for rank-consistent ordinal regression
based on conditional probabilities".
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner, Result

from _imagegen import write_ordinal_tree
from medbalance.cli import app
from medbalance.core.checkpoint import read_metadata
from medbalance.data.catalog import Catalog, DataError, SourceKind, numeric_order, with_class_order
from medbalance.data.prepared import Prepared
from medbalance.models.backbones import create_model, head_parameters
from medbalance.models.ordinal import CornLinear, corn_log_probs, use_corn_head
from medbalance.training.config import GRADES_AS_ORDINAL, ConfigError, TrainConfig
from medbalance.training.prepare import order_classes
from medbalance.training.priors import learned_prior

# --- the CORN head ---------------------------------------------------------------------------


def corn_loss_by_the_paper(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CORN's loss, summed over items: for each task k = 0..K-2, binary cross-entropy of
    sigmoid(l_k) against [y > k] over the conditional subset S_k = {i : y_i > k - 1}:

        L = - sum_k sum_{i in S_k} ( [y_i > k] log s(l_ik) + [y_i <= k] log(1 - s(l_ik)) )
    """
    total = logits.new_zeros(())
    for k in range(logits.shape[1]):
        subset = y > k - 1
        target = (y[subset] > k).float()
        total = total + F.binary_cross_entropy_with_logits(
            logits[subset, k], target, reduction="sum"
        )
    return total


def test_cross_entropy_on_the_corn_outputs_is_the_corn_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(64, 4, dtype=torch.float64) * 3  # K = 5 grades
    y = torch.randint(0, 5, (64,))
    ce = F.cross_entropy(corn_log_probs(logits), y, reduction="sum")
    torch.testing.assert_close(ce, corn_loss_by_the_paper(logits, y).float())


def test_cross_entropy_on_the_corn_outputs_equals_coral_pytorch() -> None:
    losses = pytest.importorskip("coral_pytorch.losses")
    torch.manual_seed(1)
    logits = torch.randn(40, 3)
    y = torch.tensor([0, 1, 2, 3] * 10)
    # corn_loss divides the summed task losses by the size of all subsets together
    n_terms = sum(int((y > k - 1).sum()) for k in range(3))
    expected = losses.corn_loss(logits, y, num_classes=4) * n_terms
    torch.testing.assert_close(
        F.cross_entropy(corn_log_probs(logits), y, reduction="sum"), expected
    )


def test_corn_probabilities_by_hand_sum_to_one_and_are_rank_consistent() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # P(y>0) = 1/2, P(y>1 | y>0) = 3/4
    probs = corn_log_probs(logits).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.125, 0.375]]))
    torch.manual_seed(2)
    probs = torch.softmax(corn_log_probs(torch.randn(500, 6) * 4), dim=1)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(500))
    above = 1 - probs.cumsum(dim=1)[:, :-1]  # P(y > k), k = 0..K-2
    assert bool((above[:, 1:] <= above[:, :-1] + 1e-6).all())
    extreme = corn_log_probs(torch.tensor([[80.0, -80.0, 80.0]]))
    assert bool(torch.isfinite(extreme).all())


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_ordinal_models_keep_k_outputs_and_the_head_api(name: str) -> None:
    plain = create_model(name, num_classes=4, in_chans=1)
    model = create_model(name, num_classes=4, in_chans=1, ordinal=True)
    head = model.get_classifier()
    assert isinstance(head, CornLinear) and head.out_features == 3
    assert plain.state_dict().keys() == model.state_dict().keys()  # weights keep their names
    assert {id(p) for p in head_parameters(model)} == {id(p) for p in head.parameters()}
    model.eval()
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 4)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2))


def test_a_model_without_a_linear_head_is_refused() -> None:
    class ConvHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(8, 3, 1)

        def get_classifier(self) -> nn.Module:
            return self.head

    with pytest.raises(ValueError, match="classifier is Conv2d; choose a model with a linear"):
        use_corn_head(ConvHead(), 3)


def test_learned_prior_does_not_depend_on_the_head() -> None:
    # cross-entropy on the CORN head is a plain likelihood: the sampler sets the prior
    for sampler in ("none", "oversample", "oversample:0.5"):
        plain = TrainConfig(data="d", sampler=sampler)
        ordinal = TrainConfig(data="d", sampler=sampler, ordinal=True)
        assert learned_prior(plain, [70, 20, 10]) == learned_prior(ordinal, [70, 20, 10])


# --- config and class order ------------------------------------------------------------------


def test_the_default_sampler_follows_the_task() -> None:
    """Oversampling by default; none for ordinal grades (RESULTS.md); a given one is kept; with
    the task still open (ordinal not given) the sampler waits for the classes."""
    from medbalance.training.prepare import resolve_task

    assert TrainConfig(data="d", ordinal=False).sampler == "oversample"
    assert TrainConfig(data="d", ordinal=True).sampler == "none"
    assert TrainConfig(data="d", ordinal=True, sampler="oversample:0.5").sampler == "oversample:0.5"
    assert TrainConfig(data="d", sampler="auto", ordinal=False).to_dict()["sampler"] == "oversample"
    open_task = TrainConfig(data="d")
    assert (open_task.ordinal, open_task.sampler) == (None, "auto")
    plain = resolve_task(open_task, ("normal", "pneumonia"))
    assert (plain.ordinal, plain.sampler) == (False, "oversample")
    grades = resolve_task(open_task, ("0", "1", "2"))
    assert grades.ordinal is GRADES_AS_ORDINAL and grades.sampler != "auto"


def test_class_order_is_validated_and_stored_as_a_tuple() -> None:
    config = TrainConfig(data="d", class_order=["none", "mild", "severe"])  # type: ignore[arg-type]
    assert config.class_order == ("none", "mild", "severe")
    assert TrainConfig(data="d").class_order is None and not TrainConfig(data="d").ordinal
    for bad, match in [
        (("a", "b", "a"), "names 'a' more than once"),
        (("a", " "), "holds ' '; every entry must be a class name"),
        (("a",), "at least two classes"),
        ("a,b", "must be a list of class names"),
    ]:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(data="d", class_order=bad)  # type: ignore[arg-type]


def catalog(names: tuple[str, ...], labels: list[int]) -> Catalog:
    n = len(labels)
    return Catalog(
        source=Path("grades"),
        kind=SourceKind.FOLDER,
        class_names=names,
        labels=np.array(labels, dtype=np.int64),
        splits=np.array(["train"] * n),
        origins=tuple(f"img{i}.png" for i in range(n)),
    )


def prepared(names: tuple[str, ...], labels: list[int]) -> Prepared:
    return Prepared(catalog(names, labels), None, "fp", [])  # type: ignore[arg-type]


def test_numeric_order_sorts_numbers_as_numbers() -> None:
    assert numeric_order(("0", "1", "10", "2", "9")) == ("0", "1", "2", "9", "10")
    assert numeric_order(("1.5", "-1", "0")) == ("-1", "0", "1.5")
    assert numeric_order(("0", "mild")) is None and numeric_order(("nan", "1")) is None


def test_with_class_order_reindexes_labels_only() -> None:
    before = catalog(("mild", "none", "severe"), [0, 1, 2, 1])
    after = with_class_order(before, ("none", "mild", "severe"))
    assert after.class_names == ("none", "mild", "severe")
    assert after.labels.tolist() == [1, 0, 2, 0]
    assert [after.class_names[i] for i in after.labels] == [
        before.class_names[i] for i in before.labels
    ]
    assert after.origins == before.origins and after.splits.tolist() == before.splits.tolist()
    assert with_class_order(before, before.class_names) is before
    with pytest.raises(DataError, match="missing 'severe'; not in the data 'moderate'"):
        with_class_order(before, ("none", "mild", "moderate"))
    with pytest.raises(DataError, match="--class-order mild,none,severe"):
        with_class_order(before, ("none", "mild"))


def test_order_classes_follows_the_config() -> None:
    data = prepared(("0", "1", "10", "2"), [0, 1, 2, 3, 2])
    assert order_classes(TrainConfig(data="d"), data) is data  # no order asked: unchanged
    ordered = order_classes(TrainConfig(data="d", ordinal=True), data)
    assert ordered.class_names == ("0", "1", "2", "10")
    assert ordered.catalog.labels.tolist() == [0, 1, 3, 2, 3]
    assert ordered.fingerprint != data.fingerprint  # the labels it hashes changed
    again = order_classes(TrainConfig(data="d", ordinal=True), ordered)
    assert again is ordered  # already in order (compare and cv pass prepared data)
    given = order_classes(TrainConfig(data="d", class_order=("10", "2", "1", "0")), data)
    assert given.class_names == ("10", "2", "1", "0")
    words = prepared(("mild", "none", "severe"), [0, 1, 2])
    with pytest.raises(ConfigError, match="not all numbers; give it lowest grade first with"):
        order_classes(TrainConfig(data="grades", ordinal=True), words)
    with_order = TrainConfig(data="d", ordinal=True, class_order=("none", "mild", "severe"))
    assert order_classes(with_order, words).class_names == ("none", "mild", "severe")
    two = prepared(("0", "1"), [0, 1, 1])
    with pytest.raises(ConfigError, match="needs three or more grades.*two classes .0, 1.; drop"):
        order_classes(TrainConfig(data="d", ordinal=True), two)
    assert order_classes(TrainConfig(data="d"), two) is two  # a binary task without --ordinal


# --- end to end ------------------------------------------------------------------------------

runner = CliRunner()
GRADES = {"train": (28, 12, 8, 4), "val": (8, 6, 5, 4), "test": (8, 6, 5, 4)}


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def grade_tree(root: Path) -> Path:
    """Four grades named 0, 1, 2 and 10 (alphabetical order would put 10 before 2)."""
    write_ordinal_tree(root, GRADES, size=16, seed=3)
    for split in GRADES:
        shutil.move(root / split / "3", root / split / "10")
    return root


@pytest.fixture(scope="module")
def ordinal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of smallcnn at 16 px on four grades, trained with ``train --ordinal``."""
    root = tmp_path_factory.mktemp("ordinal")
    data = grade_tree(root / "grades")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBALANCE_CACHE", str(root / "cache"))
        result = invoke(
            "train",
            *(data, "--out", root / "run", "--model", "smallcnn", "--size", 16, "--epochs", 2),
            *("--batch-size", 16, "--bootstrap", 30, "--device", "cpu", "--ordinal"),
        )
    assert result.exit_code == 0, result.output
    return root / "run"


def test_train_ordinal_end_to_end(ordinal_run: Path) -> None:
    metrics = json.loads((ordinal_run / "metrics.json").read_text())
    assert metrics["ordinal"] is True
    assert metrics["class_names"] == ["0", "1", "2", "10"]  # numeric, not alphabetical
    assert [sum(row) for row in metrics["confusion_matrix"]] == list(GRADES["test"])
    for key in ("quadratic_kappa", "mean_abs_error", "within_one_accuracy", "weighted_auroc"):
        entry = metrics["metrics"][key]
        assert len(entry["ci"]) == 2, key
    mae = metrics["metrics"]["mean_abs_error"]
    assert 0 <= mae["value"] <= 3 and mae["ci"][0] <= mae["value"] <= mae["ci"][1]
    assert 0 <= metrics["metrics"]["within_one_accuracy"]["value"] <= 1
    meta = read_metadata(ordinal_run / "best.safetensors")
    assert meta["ordinal"] is True and meta["class_names"] == ["0", "1", "2", "10"]
    assert meta["config"]["class_order"] is None and meta["config"]["ordinal"] is True


def test_an_ordinal_model_exports(ordinal_run: Path, tmp_path: Path) -> None:
    from medbalance.evaluation.export import export_model

    # each export runs the exported model on a batch and refuses a mismatch with PyTorch
    best = ordinal_run / "best.safetensors"
    model_file, _ = export_model(best, "torchscript", tmp_path / "export")
    assert model_file.is_file()
    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")):
        model_file, _ = export_model(best, "onnx", tmp_path / "export.onnx")
        assert model_file.is_file()


def test_ordinal_without_an_order_for_word_classes_is_a_clean_error(tmp_path: Path) -> None:
    data = tmp_path / "words"
    write_ordinal_tree(data, {"train": (6, 6, 6), "test": (2, 2, 2)}, size=16)
    for split in ("train", "test"):
        for grade, word in enumerate(("none", "mild", "severe")):
            shutil.move(data / split / str(grade), data / split / word)
    common = ("--model", "smallcnn", "--size", 16, "--epochs", 1, "--device", "cpu")
    result = invoke("train", data, "--out", tmp_path / "a", *common, "--ordinal")
    assert result.exit_code == 2, result.output
    assert "--class-order" in result.output and "not all numbers" in result.output
    result = invoke("train", data, "--out", tmp_path / "b", *common, "--class-order", "none,mild")
    assert result.exit_code == 2, result.output
    assert "missing 'severe'" in result.output
