"""Tests for medbalance.training.class_weights: weights, margins and priors in closed form, and
errors."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from medbalance.training.class_weights import (
    class_balanced_weights,
    cost_weights,
    drw_weights,
    inverse_frequency_weights,
    ldam_margins,
    log_prior,
)

COUNTS = [90, 10]


def test_inverse_frequency_weights_have_mean_sample_weight_one() -> None:
    w = inverse_frequency_weights(COUNTS)
    assert_close(w, torch.tensor([100 / 180, 100 / 20]))
    assert_close((w * torch.tensor([90.0, 10.0])).sum(), torch.tensor(100.0))


def test_class_balanced_weights_closed_form() -> None:
    # beta = 0.5: effective numbers (1 - 0.5^n) / 0.5 = [1, 1.5]; 1/E = [1, 2/3]; sum to C = 2
    assert_close(class_balanced_weights([1, 2], beta=0.5), torch.tensor([1.2, 0.8]))
    assert_close(class_balanced_weights([3, 300], beta=0.0), torch.ones(2))


def test_drw_weights_are_class_balanced_with_mean_sample_weight_one() -> None:
    w, cb = drw_weights(COUNTS), class_balanced_weights(COUNTS, beta=0.9999)
    assert_close(w / w.sum(), cb / cb.sum())
    assert_close((w * torch.tensor([90.0, 10.0])).sum(), torch.tensor(100.0))


def test_ldam_margins_closed_form() -> None:
    # n^(-1/4) = [1, 0.5]; the rarest class gets max_m
    assert_close(ldam_margins([1, 16], max_m=0.5), torch.tensor([0.5, 0.25]))


def test_log_prior_is_the_log_of_the_class_shares() -> None:
    assert_close(log_prior(COUNTS), torch.log(torch.tensor([0.9, 0.1])))


def test_cost_weights_follow_row_sums() -> None:
    # a missed positive (truth 1, predicted 0) costs 5 times a false alarm
    assert_close(cost_weights([[0, 1], [5, 0]]), torch.tensor([1 / 3, 5 / 3]))


# --- errors --------------------------------------------------------------------------------------
def test_cost_matrix_must_be_zero_on_the_diagonal() -> None:
    with pytest.raises(ValueError, match="0 on the diagonal"):
        cost_weights([[1, 1], [1, 0]])


def test_fractional_count_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"class_counts\[0\] is 2.5"):
        inverse_frequency_weights([2.5, 3])  # type: ignore[list-item]


def test_invalid_beta_and_max_m_are_refused() -> None:
    with pytest.raises(ValueError, match=r"beta=1.0 is invalid: it must lie in \[0, 1\)"):
        class_balanced_weights(COUNTS, beta=1.0)
    with pytest.raises(ValueError, match=r"max_m=-0.5 is invalid: it must be >= 0"):
        ldam_margins(COUNTS, max_m=-0.5)
