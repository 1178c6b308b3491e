"""Tests for medbalance.evaluation.decision: one Decision chosen on val, stored, read back and
applied the same way everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medbalance.evaluation.decision import Decision, choose_decision, read_decision
from medbalance.evaluation.thresholds import choose_threshold

NAMES = ("normal", "pneumonia")


def _binary_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    p1 = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    return y, np.c_[1 - p1, p1]


def test_binary_decision_equals_choose_threshold_and_round_trips() -> None:
    y, probs = _binary_scores()
    decision = choose_decision(
        "youden", y, probs, class_names=NAMES, positive=1, train_counts=[30, 10]
    )
    point = choose_threshold("youden", y == 1, probs[:, 1], chosen_on="val")
    assert decision.threshold == point.value and decision.chosen_on == "val"
    np.testing.assert_array_equal(decision.decide(probs), (probs[:, 1] >= point.value).astype(int))
    record = decision.to_record()
    assert record == point.to_dict()  # the stored format of every earlier checkpoint
    meta = {"class_names": list(NAMES), "positive_class": "pneumonia", "threshold": record}
    assert read_decision(meta) == decision


def test_positive_class_first_and_single_row() -> None:
    decision = Decision(NAMES, "fixed", threshold=0.7, positive=0)
    assert decision.decide([[0.7, 0.3], [0.69, 0.31]]).tolist() == [0, 1]
    assert decision.decide(np.array([0.2, 0.8])).tolist() == [1]


def test_inf_threshold_calls_nothing_positive() -> None:
    decision = Decision(NAMES, "sensitivity>=0.95", threshold=math.inf, positive=1)
    assert decision.decide([[0.0, 1.0]]).tolist() == [0]
    assert "never 'pneumonia'" in decision.describe()


def test_multiclass_rules() -> None:
    names = ("a", "b", "c")
    probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
    counts = (80, 15, 5)
    prior = choose_decision(
        "prior", [0, 1], probs, class_names=names, positive=None, train_counts=counts
    )
    # divided by the priors 0.8, 0.15, 0.05: row 0 -> c (4.0), row 1 -> c (5.0)
    assert prior.decide(probs).tolist() == [2, 2]
    assert Decision(names, "argmax").decide(probs).tolist() == [0, 0]
    meta = {"class_names": list(names), "positive_class": "c", "threshold": prior.to_record()}
    assert read_decision(meta).decide(probs).tolist() == [2, 2]


def test_binary_policy_on_multiclass_falls_back_to_tuned_offsets_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probs = np.array([[0.5, 0.3, 0.2]])
    kwargs = {"class_names": ("a", "b", "c"), "positive": None, "train_counts": (1, 1, 1)}
    with caplog.at_level("INFO", logger="medbalance"):
        decision = choose_decision("auto", [0], probs, **kwargs)  # the default: nothing to say
    assert caplog.records == []
    assert decision.policy == "offsets:balanced"
    assert choose_decision("auto", [0], probs, **kwargs, ordinal=True).policy == "expected-grade"
    decision = choose_decision("f1", [0], probs, **kwargs)  # a binary policy the user chose
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert decision.policy == "offsets:balanced"
    assert decision.to_record()["offsets"] is not None
    assert "needs two classes" in caplog.text


def test_never_chosen_on_test_and_bad_stored_values() -> None:
    y, probs = _binary_scores()
    with pytest.raises(ValueError, match="validation data only"):
        choose_decision(
            "youden", y, probs, class_names=NAMES, positive=1, train_counts=[1, 1], chosen_on="test"
        )
    with pytest.raises(ValueError, match="never chosen on the test split"):
        Decision(NAMES, "fixed", chosen_on="test", threshold=0.5, positive=1)
    meta = {"class_names": list(NAMES), "positive_class": "pneumonia"}
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        read_decision({**meta, "threshold": {"policy": "youden", "value": 1.5}})
    with pytest.raises(ValueError, match="must be a probability"):
        read_decision({**meta, "threshold": {"policy": "youden", "value": "high"}})
    with pytest.raises(ValueError, match="do not match 2 classes"):
        Decision(NAMES, "fixed", threshold=0.5, positive=1).decide(np.ones((2, 3)))


def test_a_checkpoint_without_a_decision_decides_by_argmax() -> None:
    decision = read_decision({"class_names": list(NAMES), "positive_class": "pneumonia"})
    assert decision.threshold is None and decision.describe() == "argmax of probabilities"
    assert decision.decide([[0.4, 0.6], [0.6, 0.4]]).tolist() == [1, 0]


def test_prior_aware_rules_do_not_correct_twice() -> None:
    from medbalance.evaluation.thresholds import apply_multiclass_rule

    counts = (80, 15, 5)  # natural prior 0.8, 0.15, 0.05
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.35, 0.45]])
    uniform = (1 / 3, 1 / 3, 1 / 3)
    # a model trained on the natural prior: balanced divides by it (as prior does), accuracy
    # changes nothing
    natural = np.array(counts) / 100
    assert (
        apply_multiclass_rule("balanced", probs, counts, natural).tolist()
        == apply_multiclass_rule("prior", probs, counts).tolist()
    )
    assert apply_multiclass_rule("accuracy", probs, counts, natural).tolist() == [0, 2]
    # a model trained on balanced batches (uniform prior): balanced changes nothing, accuracy
    # moves back to the natural prior, where the majority wins both rows
    assert apply_multiclass_rule("balanced", probs, counts, uniform).tolist() == [0, 2]
    assert apply_multiclass_rule("accuracy", probs, counts, uniform).tolist() == [0, 0]
    # while prior would divide by the natural prior again: a double correction
    assert apply_multiclass_rule("prior", probs, counts).tolist() == [2, 2]


def test_learned_prior_follows_sampler_and_loss() -> None:
    from medbalance.training.config import TrainConfig
    from medbalance.training.priors import learned_prior

    counts = [80, 20]
    natural = learned_prior(TrainConfig(data="x", sampler="none", loss="ce"), counts)
    assert natural == pytest.approx([0.8, 0.2])
    for sampler, loss in (
        ("oversample", "ce"),
        ("none", "weighted-ce"),
        ("none", "balanced-softmax"),
    ):
        prior = learned_prior(TrainConfig(data="x", sampler=sampler, loss=loss), counts)
        assert prior == pytest.approx([0.5, 0.5]), (sampler, loss)
    half = learned_prior(TrainConfig(data="x", sampler="oversample:0.5", loss="ce"), counts)
    assert half == pytest.approx([80**0.5 / (80**0.5 + 20**0.5), 20**0.5 / (80**0.5 + 20**0.5)])
