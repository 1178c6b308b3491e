"""Tests for medbalance.evaluation.decision: one Decision chosen on val, stored, read back and
applied the same way everywhere."""

from __future__ import annotations

import math
from pathlib import Path

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


# --- guaranteed constraints ------------------------------------------------------------------


def test_a_guaranteed_decision_records_its_level_bound_and_estimate() -> None:
    y, probs = _binary_scores()
    y, probs = np.r_[y, np.ones(30, int)], np.r_[probs, probs[y == 1][np.arange(30) % 10]]
    decision = choose_decision(
        "sensitivity>=0.8", y, probs, class_names=NAMES, positive=1, train_counts=[30, 40],
        guarantee=0.9,
    )  # fmt: skip
    point = choose_threshold("sensitivity>=0.8", y == 1, probs[:, 1], guarantee=0.9)
    assert (decision.guarantee, decision.lower_bound) == (0.9, point.lower_bound)
    assert point.lower_bound is not None and point.lower_bound >= 0.8
    record = decision.to_record()
    assert record["guarantee"] == {
        "level": 0.9, "lower_bound": point.lower_bound, "estimate": point.sensitivity,
    }  # fmt: skip
    meta = {"class_names": list(NAMES), "positive_class": "pneumonia", "threshold": record}
    assert read_decision(meta) == decision


def test_old_records_read_back_without_a_guarantee() -> None:
    old = {"policy": "sensitivity>=0.9", "value": 0.42, "chosen_on": "val",
           "sensitivity": 0.93, "specificity": 0.71, "tta": 3}  # fmt: skip
    decision = read_decision(
        {"class_names": list(NAMES), "positive_class": "pneumonia", "threshold": old}
    )
    assert decision.guarantee is None and decision.lower_bound is None
    assert decision.val_rates == (0.93, 0.71) and decision.to_record() == old


def test_a_guarantee_needs_a_binary_threshold_and_its_bound() -> None:
    probs = np.array([[0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match="these data have 3 classes; drop the guarantee"):
        choose_decision(
            "sensitivity>=0.9", [0], probs, class_names=("a", "b", "c"), positive=None,
            train_counts=(1, 1, 1), guarantee=0.95,
        )  # fmt: skip
    with pytest.raises(ValueError, match="comes with the bound it reached"):
        Decision(NAMES, "sensitivity>=0.9", threshold=0.5, positive=1, guarantee=0.95)
    y, probs = _binary_scores()  # 10 positives: 0.9 at 0.95 needs 29
    with pytest.raises(ValueError, match="needs at least 29 positive tuning cases .* holds 10"):
        choose_decision(
            "sensitivity>=0.9", y, probs, class_names=NAMES, positive=1, train_counts=[30, 10],
            guarantee=0.95,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"guarantee": 0.95}, "the threshold policy is 'auto'"),
        ({"guarantee": 0.95, "threshold": "cost:FN=5,FP=1"}, "use it with 'sensitivity>=X'"),
        ({"guarantee": 95, "threshold": "sensitivity>=0.9"}, "guarantee=95 is invalid"),
    ],
)
def test_a_guarantee_the_policy_cannot_take_is_a_config_error(
    options: dict[str, object], match: str
) -> None:
    from medbalance.training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=match):
        TrainConfig(data="x", **options)  # type: ignore[arg-type]


def test_too_few_val_positives_are_refused_before_training(tiny_npz: Path) -> None:
    import torch

    from medbalance.training.config import ConfigError, TrainConfig
    from medbalance.training.prepare import prepare_run

    config = TrainConfig(data=str(tiny_npz), threshold="sensitivity>=0.9", guarantee=0.95)
    with pytest.raises(
        ConfigError, match="needs at least 29 positive tuning cases .* val holds 20"
    ):
        prepare_run(config, device=torch.device("cpu"))


def test_a_guarantee_flows_into_metrics_report_and_evaluate(tiny_npz: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    import medbalance as mb
    from medbalance.cli import app
    from medbalance.core.checkpoint import read_metadata

    run = mb.train(
        tiny_npz, out=tmp_path / "run", epochs=1, size=28, model="smallcnn", bootstrap=20,
        threshold="sensitivity>=0.8", guarantee=0.9, verbose=False,
    )  # fmt: skip
    point = json.loads((run.path / "metrics.json").read_text())["threshold"]
    assert point["guarantee"]["level"] == 0.9 and point["guarantee"]["lower_bound"] >= 0.8
    stored = read_decision(read_metadata(run.path / "best.safetensors"))
    assert stored.guarantee == 0.9 and stored.lower_bound == point["guarantee"]["lower_bound"]
    report = (run.path / "report.html").read_text()
    assert "90% lower bound" in report and "guaranteed &gt;= 0.8" in report
    result = mb.evaluate(
        run, threshold="specificity>=0.8", guarantee=0.9, bootstrap=20, verbose=False
    )
    assert result["threshold"]["policy"] == "specificity>=0.8"
    assert result["threshold"]["guarantee"]["lower_bound"] >= 0.8
    refused = CliRunner().invoke(
        app, ["evaluate", str(run.path), "--threshold", "youden", "--guarantee", "0.95"]
    )
    assert refused.exit_code == 2, refused.output
    assert "use it with 'sensitivity>=X' or 'specificity>=X'" in refused.output


def test_cv_tunes_the_guarantee_on_the_out_of_fold_cases(tiny_npz: Path, tmp_path: Path) -> None:
    import json

    import medbalance as mb
    from medbalance.training.config import ConfigError

    # val alone holds 20 positives (29 needed); train+val, the out-of-fold cases, hold 40
    result = mb.cv(
        tiny_npz, folds=2, out=tmp_path / "cv", epochs=1, size=28, model="smallcnn",
        bootstrap=20, threshold="sensitivity>=0.9", guarantee=0.95, verbose=False,
    )  # fmt: skip
    assert result.decision.chosen_on == "oof" and result.decision.guarantee == 0.95
    assert result.decision.lower_bound is not None and result.decision.lower_bound >= 0.9
    point = json.loads((tmp_path / "cv" / "metrics.json").read_text())["threshold"]
    assert point["guarantee"]["lower_bound"] == result.decision.lower_bound
    again = mb.evaluate(tmp_path / "cv", guarantee=0.9, bootstrap=20, verbose=False)
    assert again["threshold"]["policy"] == "sensitivity>=0.9"  # the stored policy, re-chosen
    assert again["threshold"]["guarantee"]["level"] == 0.9
    with pytest.raises(ConfigError, match="needs at least 59 positive .* out-of-fold holds 40"):
        mb.cv(
            tiny_npz, folds=2, out=tmp_path / "cv2", epochs=1, size=28, model="smallcnn",
            threshold="sensitivity>=0.95", guarantee=0.95, verbose=False,
        )  # fmt: skip
    assert not (tmp_path / "cv2" / "folds").exists()  # refused before any fold trained
