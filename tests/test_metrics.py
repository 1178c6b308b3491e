"""Tests for medbalance.evaluation.metrics: hand-worked confusion matrices, scikit-learn parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from conftest import multiclass_data, scored
from medbalance.evaluation.metrics import (
    BINARY_KEYS,
    MULTICLASS_KEYS,
    ORDINAL_KEYS,
    binary_metrics,
    classification_metrics,
    expected_calibration_error,
    multiclass_metrics,
    npv_per_class,
    per_class_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    specificity_per_class,
)


def from_counts(tp: int, fn: int, fp: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores whose confusion matrix at threshold 0.5 has these counts."""
    y = np.array([1] * (tp + fn) + [0] * (fp + tn))
    score = np.array([0.9] * tp + [0.1] * fn + [0.8] * fp + [0.2] * tn)
    return y, score


def from_matrix(confusion: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions with this confusion matrix (rows: true class)."""
    pairs = [(i, j) for i, row in enumerate(confusion) for j, n in enumerate(row) for _ in range(n)]
    labels, preds = zip(*pairs, strict=True)
    return np.array(labels), np.array(preds)


# --- hand-written metrics against hand-worked confusion matrices ----------------------------


def test_binary_metrics_on_a_hand_worked_matrix() -> None:
    # TP=8 FN=2 FP=3 TN=7 -> sens 8/10, spec 7/10, ppv 8/11, npv 7/9, F1 16/21, acc 15/20,
    # balanced acc (0.8+0.7)/2, MCC (8*7 - 3*2) / sqrt(11*10*10*9) = 50/sqrt(9900)
    y, score = from_counts(tp=8, fn=2, fp=3, tn=7)
    m = binary_metrics(y, score, 0.5)
    assert tuple(m) == BINARY_KEYS
    expected = {
        "sensitivity": 0.8,
        "specificity": 0.7,
        "ppv": 8 / 11,
        "npv": 7 / 9,
        "f1": 16 / 21,
        "accuracy": 0.75,
        "balanced_accuracy": 0.75,
        "mcc": 50 / math.sqrt(9900),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_specificity_and_npv_per_class_on_a_hand_worked_3x3() -> None:
    # true\pred  0  1  2        TP FN FP TN   specificity    NPV
    #   0        5  1  0    0:   5  1  2  9   9/11          9/10
    #   1        2  3  1    1:   3  3  2  9   9/11          9/12
    #   2        0  1  4    2:   4  1  1 11   11/12         11/12
    confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 4]])
    np.testing.assert_allclose(specificity_per_class(confusion), [9 / 11, 9 / 11, 11 / 12])
    np.testing.assert_allclose(npv_per_class(confusion), [9 / 10, 9 / 12, 11 / 12])
    stacked = np.stack([confusion, confusion.T])  # a batch of matrices works the same way
    assert specificity_per_class(stacked).shape == (2, 3)
    np.testing.assert_allclose(npv_per_class(stacked)[0], [9 / 10, 9 / 12, 11 / 12])


def test_per_class_metrics_on_the_hand_worked_3x3() -> None:
    labels, preds = from_matrix([[5, 1, 0], [2, 3, 1], [0, 1, 4]])
    rows = per_class_metrics(labels, preds, 3)
    # class 1: TP=3 FN=3 FP=2 TN=9 -> sens 3/6, spec 9/11, ppv 3/5, npv 9/12, F1 6/11
    assert rows[1] == pytest.approx(
        {
            "sensitivity": 0.5,
            "specificity": 9 / 11,
            "ppv": 0.6,
            "npv": 0.75,
            "f1": 6 / 11,
            "support": 6,
        }
    )
    assert [r["support"] for r in rows] == [6.0, 6.0, 5.0]


def test_specificity_and_npv_equal_sklearn_on_the_negative_class() -> None:
    y, score = scored(70, 30, seed=1)
    m = binary_metrics(y, score, 0.5)
    pred = (score >= 0.5).astype(int)
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["npv"] == pytest.approx(skm.precision_score(y, pred, pos_label=0))


# --- scikit-learn-backed metrics against direct scikit-learn calls --------------------------


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.73])
def test_binary_metrics_equal_sklearn(threshold: float) -> None:
    y, score = scored(150, 40, seed=2)
    pred = (score >= threshold).astype(int)
    m = binary_metrics(y, score, threshold)
    expected = {
        "auroc": skm.roc_auc_score(y, score),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "sensitivity": skm.recall_score(y, pred),
        "ppv": skm.precision_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "accuracy": skm.accuracy_score(y, pred),
        "mcc": skm.matthews_corrcoef(y, pred),
        "average_precision": skm.average_precision_score(y, score),
        "brier": skm.brier_score_loss(y, score),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("ordinal", [False, True])
def test_multiclass_metrics_equal_sklearn(ordinal: bool) -> None:
    labels, probs = multiclass_data(300, 4, seed=3)
    preds = probs.argmax(axis=1)
    m = multiclass_metrics(labels, probs, preds, ordinal=ordinal)
    assert tuple(m) == MULTICLASS_KEYS + ORDINAL_KEYS * ordinal
    onehot = np.eye(4)[labels]
    expected = {
        "auroc": skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"),
        "weighted_auroc": skm.roc_auc_score(labels, probs, multi_class="ovr", average="weighted"),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, preds),
        "accuracy": skm.accuracy_score(labels, preds),
        "macro_f1": skm.f1_score(labels, preds, average="macro"),
        "mcc": skm.matthews_corrcoef(labels, preds),
        "kappa": skm.cohen_kappa_score(labels, preds),  # unweighted, ordinal or not
        "average_precision": skm.average_precision_score(onehot, probs, average="macro"),
        "brier": np.mean(np.sum((probs - onehot) ** 2, axis=1)),
        "sensitivity": skm.recall_score(labels, preds, average="macro"),
    }
    if ordinal:
        expected["quadratic_kappa"] = skm.cohen_kappa_score(labels, preds, weights="quadratic")
        expected["mean_abs_error"] = skm.mean_absolute_error(labels, preds)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    confusion = skm.confusion_matrix(labels, preds)
    assert m["specificity"] == pytest.approx(np.mean(specificity_per_class(confusion)))


def test_per_class_metrics_equal_sklearn() -> None:
    labels, probs = multiclass_data(200, 3, seed=4)
    preds = probs.argmax(axis=1)
    rows = per_class_metrics(labels, preds, 3)
    sens = skm.recall_score(labels, preds, average=None)
    ppv = skm.precision_score(labels, preds, average=None)
    f1 = skm.f1_score(labels, preds, average=None)
    for c, row in enumerate(rows):
        assert row["sensitivity"] == pytest.approx(sens[c])
        assert row["ppv"] == pytest.approx(ppv[c])
        assert row["f1"] == pytest.approx(f1[c])
        assert row["specificity"] == pytest.approx(
            skm.recall_score(labels == c, preds == c, pos_label=False)
        )
        assert row["npv"] == pytest.approx(
            skm.precision_score(labels == c, preds == c, pos_label=False)
        )


# --- undefined values are NaN, never a crash or a silent 0 ----------------------------------


def test_no_predicted_positive_gives_nan_ppv_and_mcc() -> None:
    # TP=0 FN=3 FP=0 TN=7: ppv 0/0, MCC 0/0 (sklearn says 0); sens 0, npv 7/10, F1 0/3 = 0
    y, score = from_counts(tp=0, fn=3, fp=0, tn=7)
    m = binary_metrics(y, score, 0.5)
    assert math.isnan(m["ppv"]) and math.isnan(m["mcc"])
    assert m["sensitivity"] == 0.0 and m["f1"] == 0.0
    assert m["npv"] == pytest.approx(0.7) and m["specificity"] == 1.0


def test_one_class_gives_nan_for_what_needs_both() -> None:
    # all negative: TP=0 FN=0 FP=2 TN=4 -> sensitivity 0/0, spec 4/6, ppv 0/2 = 0, F1 0/2 = 0
    y = np.zeros(6, int)
    score = np.array([0.9, 0.8, 0.2, 0.1, 0.3, 0.4])
    m = binary_metrics(y, score, 0.5)
    for key in ("auroc", "balanced_accuracy", "sensitivity", "mcc", "average_precision"):
        assert math.isnan(m[key]), key
    assert m["specificity"] == pytest.approx(4 / 6) and m["ppv"] == 0.0 and m["f1"] == 0.0
    # and all negative, none called positive: F1 0/0
    assert math.isnan(binary_metrics(y, score, 0.95)["f1"])
    assert not math.isnan(m["brier"]) and not math.isnan(m["ece"])


def test_threshold_inf_calls_nothing_positive() -> None:
    y, score = from_counts(tp=4, fn=1, fp=2, tn=3)
    m = binary_metrics(y, score, math.inf)
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0 and math.isnan(m["ppv"])


def test_ordinal_metrics_on_a_hand_worked_3x3() -> None:
    # grades 0, 1, 2; rows are the true grade. |error| is 1 for the four off-diagonal cells
    # next to the diagonal and 2 for the one grade-2 image called grade 0.
    labels, preds = from_matrix([[3, 1, 0], [1, 2, 1], [1, 0, 1]])
    probs = np.eye(3)[preds] * 0.8 + 0.2 / 3
    m = multiclass_metrics(labels, probs, preds, ordinal=True)
    assert m["mean_abs_error"] == pytest.approx(5 / 10)  # 4 x 1 + 1 x 2 over 10 images
    assert m["within_one_accuracy"] == pytest.approx(9 / 10)
    # quadratic kappa = 1 - sum w O / sum w E with w = (i - j)^2, E = row x col / N:
    # observed 1 + (1 + 1) + 4 = 7; rows (4, 4, 2), columns (5, 3, 2):
    # expected (4 (1*3 + 4*2) + 4 (1*5 + 1*2) + 2 (4*5 + 1*3)) / 10 = 118 / 10
    assert m["quadratic_kappa"] == pytest.approx(1 - 7 / 11.8)
    # unweighted: observed disagreement 4, expected 10 - (4*5 + 4*3 + 2*2) / 10 = 6.4
    assert m["kappa"] == pytest.approx(1 - 4 / 6.4)
    assert not set(ORDINAL_KEYS) & set(multiclass_metrics(labels, probs, preds))


def test_multiclass_absent_class_and_undefined_kappa_give_nan() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    m = multiclass_metrics([0, 1, 0], probs, [0, 1, 0])  # class 2 has no items
    for key in ("auroc", "weighted_auroc", "balanced_accuracy", "average_precision", "sensitivity"):
        assert math.isnan(m[key]), key
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0  # F1 of class 2 undefined, skipped
    same = multiclass_metrics([0, 0, 0], probs, [0, 0, 0])
    assert math.isnan(same["kappa"]) and math.isnan(same["mcc"])
    rows = per_class_metrics([0, 1, 0], [0, 0, 0], 3)
    assert math.isnan(rows[1]["ppv"]) and rows[1]["sensitivity"] == 0.0
    assert math.isnan(rows[2]["sensitivity"]) and math.isnan(rows[2]["f1"])


@pytest.mark.parametrize(
    ("y", "score", "match"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 \\(negative\\) and 1"),
        ([0, 1, 1], [0.1, 1.2, 0.3], "probabilities in \\[0, 1\\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "1 NaN"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([], [], "empty"),
    ],
)
def test_bad_binary_inputs_are_named(y: list[int], score: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(np.array(y), np.array(score), 0.5)


def test_bad_multiclass_inputs_are_named() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.3]])
    with pytest.raises(ValueError, match="row 1 sums to 1.2"):
        multiclass_metrics([0, 1], probs, [0, 1])
    with pytest.raises(ValueError, match="preds must lie in 0..1"):
        multiclass_metrics([0, 1], np.array([[0.5, 0.5], [0.3, 0.7]]), [0, 2])
    with pytest.raises(ValueError, match="threshold=nan"):
        binary_metrics([0, 1], [0.2, 0.8], math.nan)


def test_classification_metrics_keeps_its_keys() -> None:
    labels, probs = multiclass_data(60, 2, seed=5)
    out = classification_metrics(labels, probs, ["normal", "pneumonia"])
    assert {"auroc", "balanced_accuracy", "macro_f1", "sensitivity/pneumonia"} <= set(out)
    assert out["sensitivity"] == out["sensitivity/pneumonia"]


# --- calibration -----------------------------------------------------------------------------


def test_ece_of_a_calibrated_construction_is_zero() -> None:
    # bin of score 0.2: 2 of 10 positive; bin of 0.7: 7 of 10 positive -> |acc - conf| = 0
    y = np.array([1] * 2 + [0] * 8 + [1] * 7 + [0] * 3)
    score = np.array([0.2] * 10 + [0.7] * 10)
    assert expected_calibration_error(y, score) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_miscalibrated_case_by_hand() -> None:
    # 4 items at 0.9, 2 positive: |0.5 - 0.9| = 0.4; 4 at 0.1, none positive: |0 - 0.1| = 0.1
    # ECE = 4/8 * 0.4 + 4/8 * 0.1 = 0.25
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.9] * 4 + [0.1] * 4)
    assert expected_calibration_error(y, score) == pytest.approx(0.25)
    assert binary_metrics(y, score, 0.5)["ece"] == pytest.approx(0.25)
    # one bin: |mean(y) - mean(score)| = |0.25 - 0.5|
    assert expected_calibration_error(y, score, n_bins=1) == pytest.approx(0.25)


def test_ece_top_label_by_hand() -> None:
    # top-label confidence 0.8 for both items, one right: |0.5 - 0.8| = 0.3
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert expected_calibration_error([0, 0], probs) == pytest.approx(0.3)
    assert multiclass_metrics([0, 0], probs, [0, 1])["ece"] == pytest.approx(0.3)


def test_ece_bins_are_right_closed() -> None:
    # n_bins=2: 0.5 falls in (0, 0.5] with 0.1, so the bin mean is 0.3 and accuracy 0.5
    assert expected_calibration_error([1, 0], [0.5, 0.1], n_bins=2) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="n_bins=0"):
        expected_calibration_error([1, 0], [0.5, 0.1], n_bins=0)


# --- sensitivity at specificity, specificity at sensitivity ---------------------------------


def test_operating_points_on_a_tiny_hand_roc() -> None:
    # y = 0 0 1 1, score .1 .4 .35 .8 -> ROC (FPR, TPR): (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    y, score = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert sensitivity_at_specificity(y, score, 1.0) == 0.5
    assert sensitivity_at_specificity(y, score, 0.75) == 0.5  # flat segment at TPR .5
    assert sensitivity_at_specificity(y, score, 0.5) == 1.0  # top of the vertical segment
    assert specificity_at_sensitivity(y, score, 0.5) == 1.0
    assert specificity_at_sensitivity(y, score, 0.75) == 0.5
    assert specificity_at_sensitivity(y, score, 1.0) == 0.5


def test_operating_points_interpolate_across_ties() -> None:
    # y = 0 1 0 1, score .2 .5 .5 .9 -> ROC (0,0) (0,.5) (.5,1) (1,1): a diagonal at the tie
    y, score = np.array([0, 1, 0, 1]), np.array([0.2, 0.5, 0.5, 0.9])
    assert sensitivity_at_specificity(y, score, 0.75) == pytest.approx(0.75)
    assert specificity_at_sensitivity(y, score, 0.75) == pytest.approx(0.75)


def test_operating_points_undefined_and_invalid() -> None:
    assert math.isnan(sensitivity_at_specificity([0, 0], [0.1, 0.2], 0.9))
    with pytest.raises(ValueError, match="specificity=1.5"):
        sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.5)
