"""Operating points with a guarantee: a ``sensitivity>=X`` or ``specificity>=X`` policy whose
constrained rate holds with a stated confidence, not only on the tuning cases (issue 24).

:func:`lower_bound` is the one-sided Clopper–Pearson bound, :func:`cases_needed` the tuning cases
a bound needs, :func:`check_guarantee` and :func:`check_guarantee_cases` the refusals;
:func:`~medbalance.evaluation.thresholds.choose_threshold` keeps only the thresholds whose bound
meets the constraint.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medbalance.evaluation._parsing import is_number
from medbalance.evaluation.thresholds import _TOL, Policy, PolicyKind, parse_policy

__all__ = ["cases_needed", "check_guarantee", "check_guarantee_cases", "lower_bound"]

# Why Clopper–Pearson. Once the threshold is fixed, the tuning positives it calls positive are a
# binomial draw from its true sensitivity (negatives and specificity alike), so a one-sided
# lower confidence bound on a binomial proportion is what "sensitivity >= X with 95%
# confidence" needs. Clopper–Pearson inverts the binomial test exactly: its coverage is at
# least the level for every true rate and every n (conservative, never approximate), whereas
# Wald and Wilson bounds under-cover near 1, where sensitivity constraints live, and with the
# few positives of a medical validation split. It assumes only that new cases are exchangeable
# with the tuning ones (the same site and case mix). scipy.stats.beta gives it: the bound for
# k of n is the alpha quantile of Beta(k, n - k + 1) (0 for k = 0).
# Relation to the Neyman–Pearson umbrella algorithm (Tong, Feng & Li, Science Advances 2018):
# the umbrella threshold is the k-th order statistic of held-out scores of the constrained
# class, with k the smallest rank whose binomial tail P(Bin(n, X) >= n - k + 1) is at most
# alpha; that is the violation probability P(true rate < X) of that order statistic, for any
# continuous score distribution. The Clopper–Pearson bound of n - k + 1 of n is >= X exactly
# when that tail is <= alpha, and the best other rate among the feasible thresholds is the
# highest one, so the threshold chosen here is the umbrella order statistic (moved midway
# down to the next tuning score, which can only raise the constrained rate): the same
# guarantee, stated as a bound the report can show. Searching the thresholds by the point
# estimate alone (the plain policy) has no such control: Tong et al. show its violation rate
# can approach one half.


def lower_bound(successes: ArrayLike, n: int, level: float) -> NDArray[np.float64]:
    """The one-sided lower Clopper–Pearson confidence bound of a binomial proportion.

    Args:
        successes: the cases counted (e.g. positives called positive), one or many, 0 to n.
        n: the cases (e.g. the tuning positives), at least 1.
        level: the confidence, 1 - alpha, in [0.5, 1).

    Returns:
        The bound for each count: the alpha quantile of Beta(k, n - k + 1), 0 for k = 0.
    """
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    if n < 1 or (k < 0).any() or (k > n).any():
        raise ValueError(f"a binomial bound needs 0 <= successes <= n and n >= 1; got n={n}")
    safe = np.maximum(k, 1.0)  # Beta(0, .) is undefined; its bound is 0
    return np.where(k > 0, beta.ppf(1.0 - level, safe, n - k + 1.0), 0.0).astype(np.float64)


def cases_needed(rate: float, level: float) -> int:
    """The fewest cases for which all of them counted reaches a lower bound of ``rate`` at
    ``level`` (``rate=0.9, level=0.95``: 29). The n-of-n bound is (1 - level) ** (1 / n); the
    closed form is checked against :func:`lower_bound`, so the two never disagree.

    Raises:
        ValueError: ``rate`` 1: no finite number of cases bounds a rate at 1.
    """
    check_guarantee(Policy(PolicyKind.SENSITIVITY, bound=rate), level)
    if rate <= 0.0:
        return 0
    n = max(1, math.ceil(math.log(1.0 - level) / math.log(rate)))
    while n > 1 and lower_bound(n - 1, n - 1, level)[()] >= rate - _TOL:
        n -= 1
    while lower_bound(n, n, level)[()] < rate - _TOL:
        n += 1
    return n


def check_guarantee(policy: str | Policy, level: float) -> None:
    """Refuse a guarantee the policy cannot take.

    Raises:
        ValueError: a level outside [0.5, 1), a policy other than ``sensitivity>=X`` or
            ``specificity>=X``, or ``X = 1`` (no finite number of cases reaches that bound).
    """
    if not is_number(level) or not 0.5 <= level < 1.0:
        raise ValueError(
            f"guarantee={level!r} is invalid: it is a confidence level in [0.5, 1), such as 0.95"
        )
    try:
        rule: Policy | None = parse_policy(policy) if isinstance(policy, str) else policy
    except ValueError:  # auto, a multi-class rule: not a constraint either
        rule = None
    if rule is None or rule.kind not in (PolicyKind.SENSITIVITY, PolicyKind.SPECIFICITY):
        raise ValueError(
            f"guarantee={level!r} bounds a constrained rate, but the threshold policy is "
            f"{str(policy)!r}; use it with 'sensitivity>=X' or 'specificity>=X', or drop it"
        )
    if rule.bound is not None and rule.bound >= 1.0:
        raise ValueError(
            f"{rule} cannot be guaranteed: no finite number of cases gives a lower confidence "
            f"bound of 1; guarantee a bound below 1, such as {rule.kind}>=0.95"
        )


def check_guarantee_cases(
    policy: str | Policy, level: float, y_true: ArrayLike, *, split: str = "val"
) -> None:
    """Refuse a guarantee that the tuning cases cannot reach, before anything is chosen.

    Calling every case of the constrained class right gives the highest bound there is, so the
    guarantee is reachable exactly when that class has :func:`cases_needed` cases.

    Args:
        policy: a ``sensitivity>=X`` or ``specificity>=X`` policy.
        level: the confidence level.
        y_true: the tuning labels, 1 positive, 0 negative.
        split: the tuning cases' name, for the message.

    Raises:
        ValueError: naming the cases needed, the cases there are and the ways out.
    """
    rule = parse_policy(policy) if isinstance(policy, str) else policy
    check_guarantee(rule, level)
    assert rule.bound is not None  # a rate policy: Policy.__post_init__
    y = np.asarray(y_true).astype(bool)
    positive = rule.kind is PolicyKind.SENSITIVITY
    have, need = int(y.sum() if positive else (~y).sum()), cases_needed(rule.bound, level)
    if have < need:
        what = "positive" if positive else "negative"
        raise ValueError(
            f"{rule} with guarantee {level!r} needs at least {need} {what} tuning cases "
            f"(with fewer, even all of them right gives a {100 * level:g}% lower bound below "
            f"{rule.bound!r}); {split} holds {have}. Tune on more cases (a larger val split "
            f"with --resplit-val, or out-of-fold with medbalance cv), or lower the bound or "
            f"the guarantee"
        )
