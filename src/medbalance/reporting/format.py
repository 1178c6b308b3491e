"""The words and number formats of the HTML report.

Clinical names and plain-language meanings of the metrics (:data:`METRICS`), the threshold
policies (:data:`POLICIES`), and small helpers that turn values into escaped HTML text: rates as
percentages, scores to three decimals, 95% confidence intervals, tables and "not available"
notes. Every string that reaches the page through these helpers is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from medbalance.reporting.run_data import number

__all__ = [
    "METRICS",
    "POLICIES",
    "esc",
    "fmt",
    "fmt_ci",
    "guarantee_text",
    "note",
    "remedy_text",
    "table",
    "threshold_text",
]

_PERCENT = {
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "accuracy",
    "balanced_accuracy",
    "within_one_accuracy",
}
METRICS = {  # key: (clinical name, what it means); {pos} is the positive class
    "sensitivity": ("Sensitivity", "of patients with {pos}, the share the model flags"),
    "specificity": ("Specificity", "of patients without {pos}, the share the model clears"),
    "ppv": ("PPV (precision)", "of flagged patients, the share with {pos}; depends on prevalence"),
    "npv": ("NPV", "of cleared patients, the share without {pos}; depends on prevalence"),
    "auroc": ("AUROC", "chance a random positive scores above a random negative"),
    "average_precision": ("Average precision", "area under the precision–recall curve"),
    "balanced_accuracy": ("Balanced accuracy", "mean of the per-class sensitivities"),
    "accuracy": ("Accuracy", "share of all cases right; misleading under imbalance"),
    "f1": ("F1 score", "harmonic mean of PPV and sensitivity"),
    "macro_f1": ("Macro F1", "F1 averaged over the classes"),
    "mcc": ("Matthews correlation", "−1 to 1, 0 is chance; fair under imbalance"),
    "brier": ("Brier score", "mean squared error of the probability; lower is better"),
    "ece": ("Expected calibration error", "mean gap predicted vs observed; lower is better"),
}
POLICIES = {  # threshold policy: how the page explains it
    "youden": "Youden's J: maximises sensitivity + specificity − 1",
    "f1": "maximises F1",
    "argmax": "the most probable class (argmax)",
    "prior": "probabilities re-weighted by the training class priors",
}


def esc(text: object) -> str:
    """``text`` as a string, HTML-escaped."""
    return html.escape(str(text))


def fmt(key: str, value: float | None) -> str:
    """A metric value: rates in percent, scores to three decimals, ``n/a`` when unknown."""
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if key in _PERCENT else f"{value:.3f}"


def fmt_ci(key: str, ci: tuple[float | None, float | None] | None) -> str:
    """A confidence interval formatted like :func:`fmt`; ``—`` when there is none."""
    if ci is None:
        return "—"
    low, high = ci
    if low is None or high is None:
        return "n/a"
    return f"{100 * low:.1f}–{100 * high:.1f}%" if key in _PERCENT else f"{low:.3f}–{high:.3f}"


def table(head: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A table of escaped text; ``align`` has ``l`` or ``r`` per column (default ``lrr..``)."""
    align = align or "l" + "r" * (len(head) - 1)

    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(
            f"<{tag}{' class=num' if a == 'r' else ''}>{esc(v)}</{tag}>"
            for a, v in zip(align, values, strict=True)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    table = f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="wide">{table}</div>'  # a wide table scrolls inside its box


def note(text: str) -> str:
    """A "Not available: ..." paragraph, for an optional input that is missing."""
    return f'<p class="note">Not available: {esc(text)}.</p>'


def threshold_text(point: dict[str, Any]) -> str:
    """The operating point of ``metrics.json`` in words: its value and the policy that chose it."""
    policy, value = str(point.get("policy", "unknown")), number(point.get("value"))
    how = POLICIES.get(policy, policy)
    return f"{value:.3f} ({how})" if value is not None else how


def guarantee_text(point: dict[str, Any]) -> str:
    """A guaranteed constraint of ``metrics.json``'s operating point in words, e.g.
    ``sensitivity on val 0.970 (95% lower bound 0.912, guaranteed >= 0.9)``; ``""`` without
    one (and for records older than the option)."""
    record = point.get("guarantee")
    if not isinstance(record, dict):
        return ""
    level, bound = number(record.get("level")), number(record.get("lower_bound"))
    estimate = number(record.get("estimate"))
    rate, _, target = str(point.get("policy", "")).partition(">=")
    if level is None or bound is None or estimate is None or not target:
        return ""
    return (
        f"{rate} on {point.get('chosen_on', '?')} {estimate:.3f} ({100 * level:g}% lower "
        f"bound {bound:.3f}, guaranteed >= {target})"
    )


def remedy_text(config: dict[str, Any]) -> str:
    """The imbalance remedy of a run config in words: sampler, loss, DRW and cRT."""
    if not config:
        return "unknown (config.json not found)"
    sampler, options = config.get("sampler", "?"), config.get("loss_options") or {}
    loss = f"loss {config.get('loss', '?')}"
    loss += f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""
    parts = ["no resampling" if sampler == "none" else f"sampler {sampler}", loss]
    if config.get("drw_epoch") is not None:
        parts.append(f"deferred re-weighting (DRW) from epoch {config['drw_epoch']}")
    if config.get("crt_epochs"):
        parts.append(f"classifier re-training (cRT) for {config['crt_epochs']} epochs")
    return " + ".join(parts)
