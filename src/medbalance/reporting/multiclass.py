"""The sections of the HTML report that only a run with more than two classes gets.

:mod:`~medbalance.reporting.report` calls these for multi-class and ordinal runs (binary pages
are unchanged). Each function returns the body of one section; the report wraps it:

- :func:`curves_body`: one-vs-rest ROC and precision–recall curves per class (AUROC and AP in
  the legends), with macro and weighted AUROC;
- :func:`decision_body`: which objective the decision rule optimised, and accuracy beside
  balanced accuracy at the rule and at plain argmax, so a trade of one for the other is said;
- :func:`confusion_body`: the confusion matrix with counts and row percentages in each cell
  (rows in class-index order, which is grade order for ordinal runs);
- :func:`per_class_body`: sensitivity, PPV, F1 and specificity per class with 95% CIs;
- :func:`ordinal_body`: quadratic weighted kappa, mean absolute grade error and within-one
  accuracy with CIs, and the share of images at each grade error (from ``predictions.csv``);
- :func:`confusions_body`: the most frequent (true, called) pairs and their example images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from medbalance.core.figures import figure_img
from medbalance.reporting.format import METRICS, esc, fmt, fmt_ci, note, table
from medbalance.reporting.gallery import GalleryItem, gallery_html
from medbalance.reporting.plots import plot_confusion_cells, plot_grade_errors, plot_one_vs_rest
from medbalance.reporting.run_data import LoadedRun, metric_entry

__all__ = [
    "CARDS",
    "SECTIONS",
    "confusion_body",
    "confusions_body",
    "curves_body",
    "decision_body",
    "headline_keys",
    "is_multiclass",
    "is_ordinal",
    "metric_names",
    "ordinal_body",
    "per_class_body",
    "rule_text",
    "top_confusions",
]

SECTIONS = {  # the sections only multi-class pages have: key -> heading
    "decision": "Decision rule: accuracy and balanced accuracy",
    "ordinal": "Grades: agreement and grade errors",
    "confusions": "Top confusions",
}
CARDS = {  # headline hints of multi-class metrics; {v} is the value per 100
    "auroc": "one-vs-rest AUROC, averaged over the classes",
    "weighted_auroc": "one-vs-rest AUROC, weighted by each class's cases",
    "quadratic_kappa": "agreement with the true grade beyond chance",
}
_NAMES = {  # multi-class meanings of metrics.json keys (binary pages keep format.METRICS)
    "auroc": ("Macro AUROC", "one-vs-rest AUROC averaged over the classes"),
    "weighted_auroc": ("Weighted AUROC", "one-vs-rest AUROC weighted by each class's cases"),
    "average_precision": ("Macro average precision", "one-vs-rest AP averaged over the classes"),
    "sensitivity": ("Macro sensitivity", "per-class sensitivity averaged over the classes"),
    "specificity": ("Macro specificity", "per-class specificity averaged over the classes"),
    "kappa": ("Cohen's kappa", "agreement beyond chance, every error alike; 0 is chance"),
    "quadratic_kappa": (
        "Quadratic weighted kappa",
        "agreement beyond chance; errors weigh by the squared grade distance",
    ),
    "mean_abs_error": (
        "Mean absolute grade error",
        "mean |called − true grade|, in grade steps; lower is better",
    ),
    "within_one_accuracy": (
        "Within-one-grade accuracy",
        "share called the true grade or a neighbouring one",
    ),
}
_ORDINAL = ("quadratic_kappa", "mean_abs_error", "within_one_accuracy")


def is_multiclass(run: LoadedRun) -> bool:
    """More than two classes: the page gets this module's sections."""
    return len(run.classes) > 2


def is_ordinal(run: LoadedRun) -> bool:
    """metrics.json says the classes are ordered grades (``"ordinal": true``)."""
    return is_multiclass(run) and run.result.get("ordinal") is True


def metric_names(run: LoadedRun) -> dict[str, tuple[str, str]]:
    """Clinical name and meaning of each metric key, for this run's kind of task, in the order
    the metrics table lists them (the ordinal metrics first for grades)."""
    if not is_multiclass(run):
        return METRICS
    names = {**METRICS, **_NAMES}
    if is_ordinal(run):
        names = {**{k: names[k] for k in _ORDINAL}, **names}
    return names


def headline_keys(run: LoadedRun) -> list[str]:
    """The headline cards of a multi-class page, those that metrics.json holds; for grades
    quadratic kappa leads (the metric their decision rule and comparisons judge by)."""
    metrics = run.result.get("metrics") or {}
    keys = ["balanced_accuracy", "accuracy", "auroc", "weighted_auroc", "macro_f1"]
    keys = ["quadratic_kappa", *keys] if is_ordinal(run) else keys
    return [k for k in keys if k in metrics]


def rule_text(point: dict[str, Any]) -> str:
    """The decision rule of ``metrics.json`` and what it optimises, in words."""
    policy = str(point.get("policy", "unknown"))
    return f"{policy}: {_objective(policy, str(point.get('chosen_on', '?')))}"


def _objective(policy: str, chosen_on: str) -> str:
    rule = re.sub(r"\s+", "", policy).lower()
    floor = re.search(r"accuracy>=([0-9.]+)", rule)
    keeping = f", keeping {chosen_on} accuracy at {floor.group(1)} or more" if floor else ""
    if rule.startswith("offsets:macro-f1"):
        return f"maximises macro F1 (per-class offsets tuned on {chosen_on}{keeping})"
    if rule.startswith("offsets"):
        return f"maximises balanced accuracy (per-class offsets tuned on {chosen_on}{keeping})"
    if rule.startswith("cost:"):
        return "the class of minimum expected cost under the given cost matrix"
    if rule.startswith("logit-adjust"):
        return "aims at balanced accuracy (logits minus TAU × log of the training prior)"
    return {
        "argmax": "the most probable class; it optimises no objective of its own (accuracy, "
        "when the model learned the test mix)",
        "accuracy": "aims at accuracy (probabilities moved from the model's prior to the "
        "natural training prior)",
        "balanced": "aims at balanced accuracy (probabilities moved to a uniform prior)",
        "prior": "aims at balanced accuracy (probabilities divided by the training priors)",
        "expected-grade": f"maximises quadratic weighted kappa (the expected grade, cut at "
        f"cut-points tuned on {chosen_on})",
        "median-grade": "the median grade of the predicted distribution (no tuning)",
    }.get(rule, f"the rule {policy}")


def _value_ci(key: str, entry: Any) -> str:
    value, ci = metric_entry(entry)
    return fmt(key, value) + (f" (95% CI {fmt_ci(key, ci)})" if ci else "")


# --- curves ---------------------------------------------------------------------------------


def curves_body(run: LoadedRun) -> str:
    """One-vs-rest ROC and PR figures (``run.predictions`` must be set)."""
    assert run.predictions is not None  # the report checks first
    labels, probs = run.predictions
    metrics = run.result.get("metrics") or {}
    found = [
        f"{_NAMES[k][0]} {_value_ci(k, metrics[k])}"
        for k in ("auroc", "weighted_auroc", "average_precision")
        if k in metrics
    ]
    text = (
        f"<p>{len(run.classes)} classes: each curve is one class against all the others "
        "(one-vs-rest), drawn from the probabilities in predictions.csv; the legends give each "
        f"class's AUROC and average precision (AP). {esc('; '.join(found))}"
        f"{'.' if found else ''}</p>"
    )
    figures = [
        figure_img(plot_one_vs_rest(labels, probs, run.classes, run.split, kind), alt)
        for kind, alt in (("roc", "one-vs-rest ROC curves"), ("pr", "one-vs-rest PR curves"))
    ]
    return f'{text}<div class="row"><div>{figures[0]}</div><div>{figures[1]}</div></div>'


# --- decision -------------------------------------------------------------------------------


def decision_body(run: LoadedRun) -> str:
    """Accuracy and balanced accuracy at the decision rule and at plain argmax."""
    metrics = run.result.get("metrics") or {}
    argmax = (run.result.get("at_default_threshold") or {}).get("metrics") or {}
    policy, chosen = str(run.point.get("policy", "unknown")), str(run.point.get("chosen_on", "?"))
    keys = [k for k in ("accuracy", "balanced_accuracy", "macro_f1") if k in metrics]
    if not {"accuracy", "balanced_accuracy"} <= set(keys):
        return note("accuracy and balanced accuracy (metrics.json lacks one of them)")
    head = ["Decision", *(_NAMES.get(k, METRICS[k])[0] for k in keys)]
    rows = [[f"{policy} (chosen on {chosen})", *(_value_ci(k, metrics[k]) for k in keys)]]
    text = f"<p>The decision rule is {esc(rule_text(run.point))}.</p>"
    same = policy.strip().lower() == "argmax"
    if same or not {"accuracy", "balanced_accuracy"} <= set(argmax):
        why = "the rule is argmax itself" if same else "metrics.json holds no argmax metrics"
        return (
            text + table(head, rows) + f"<p>{esc(f'No comparison with plain argmax: {why}.')}</p>"
        )
    rows.append(["plain argmax", *(fmt(k, metric_entry(argmax.get(k))[0]) for k in keys)])
    deltas = {k: _delta(metrics[k], argmax.get(k)) for k in keys}
    rows.append(["change from argmax", *(_points(deltas[k]) for k in keys)])
    verdict, warn = _trade(deltas["accuracy"], deltas["balanced_accuracy"], chosen)
    callout = f'<div class="callout{" warn" if warn else ""}">{esc(verdict)}</div>'
    return text + table(head, rows) + callout


def _delta(rule: Any, argmax: Any) -> float | None:
    a, b = metric_entry(rule)[0], metric_entry(argmax)[0]
    return None if a is None or b is None else a - b


def _points(delta: float | None) -> str:
    return "n/a" if delta is None else f"{100 * delta:+.1f} points"


def _trade(accuracy: float | None, balanced: float | None, chosen: str) -> tuple[str, bool]:
    """The verdict on the rule against argmax, and whether something was given up."""
    if accuracy is None or balanced is None:
        return "The change from argmax is unknown (a metric is undefined).", False
    acc, bal = f"{100 * abs(accuracy):.1f}", f"{100 * abs(balanced):.1f}"
    if accuracy < 0 <= balanced:
        return (
            f"Against plain argmax the rule gave up {acc} points of accuracy for {bal} "
            "points of balanced accuracy.",
            True,
        )
    if balanced < 0 <= accuracy:
        return (
            f"Against plain argmax the rule gave up {bal} points of balanced accuracy for "
            f"{acc} points of accuracy.",
            True,
        )
    if accuracy < 0 and balanced < 0:
        return (
            f"The rule is worse than plain argmax on both here ({acc} points of accuracy, "
            f"{bal} of balanced accuracy): what it learned on {chosen} did not carry over.",
            True,
        )
    return (
        "The rule is at least as good as plain argmax on both accuracy and balanced accuracy.",
        False,
    )


# --- confusion matrix -----------------------------------------------------------------------


def confusion_body(run: LoadedRun, matrix: np.ndarray) -> str:
    """The matrix as a table and a figure, each cell with its count and its row percent."""
    order = "grade order" if is_ordinal(run) else "class order"
    text = (
        f"<p>Rows are the true classes (reference standard), in {order}; columns the model's "
        "decision. Each cell holds the count and, in brackets, its percent of the row: the "
        "diagonal is each class's sensitivity.</p>"
    )
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    rows = [
        [f"{name} (true)", *(f"{n} ({s:.1%})" for n, s in zip(row, share, strict=True)), total]
        for name, row, share, total in zip(
            run.classes, matrix.tolist(), shares, matrix.sum(axis=1).tolist(), strict=True
        )
    ]
    listing = table(["True \\ called", *run.classes, "Cases"], rows)
    figure = figure_img(plot_confusion_cells(matrix, run.classes), "confusion matrix")
    return text + listing + figure


def top_confusions(matrix: np.ndarray, n: int = 5) -> list[tuple[int, int, int]]:
    """The ``n`` most frequent off-diagonal cells as ``(true, called, count)``; ties in class
    order."""
    cells = [
        (int(matrix[t, p]), t, p)
        for t in range(matrix.shape[0])
        for p in range(matrix.shape[1])
        if t != p and matrix[t, p] > 0
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(t, p, count) for count, t, p in cells[:n]]


# --- per class ------------------------------------------------------------------------------


def per_class_body(run: LoadedRun) -> str:
    """Sensitivity, PPV, F1 and specificity per class, each with its 95% CI."""
    per_class: dict[str, Any] = run.result.get("per_class") or {}
    if not per_class:
        return note("per-class results (metrics.json holds none)")
    keys = [
        k
        for k in ("sensitivity", "ppv", "f1", "specificity")
        if any(k in v for v in per_class.values())
    ]
    head = ["Class", "Cases"]
    for key in keys:
        head += [METRICS[key][0].split(" (")[0], "95% CI"]
    rows = []
    for name, values in per_class.items():
        cells: list[object] = [name, values.get("support", "?")]
        for key in keys:
            value, ci = metric_entry(values.get(key))
            cells += [fmt(key, value), fmt_ci(key, ci)]
        rows.append(cells)
    text = (
        "<p>Each class against all the others at the decision rule: sensitivity (of the class's "
        "cases, the share called that class), PPV (of the calls of the class, the share right), "
        "their harmonic mean F1, and specificity, with 95% bootstrap CIs.</p>"
    )
    return text + table(head, rows)


# --- ordinal --------------------------------------------------------------------------------


def ordinal_body(run: LoadedRun) -> str:
    """The ordinal metrics with CIs and the share of images at each grade error."""
    metrics = run.result.get("metrics") or {}
    rows = [
        [_NAMES[k][0], fmt(k, v), fmt_ci(k, ci), _NAMES[k][1]]
        for k in _ORDINAL
        if k in metrics
        for v, ci in [metric_entry(metrics[k])]
    ]
    parts = [
        "<p>The classes are ordered grades (class order = grade order), so a call one "
        "grade off is a smaller error than one three grades off.</p>"
    ]
    if rows:
        parts.append(table(["Metric", "Value", "95% CI", "What it means"], rows, align="lrrl"))
    else:
        parts.append(note("the ordinal metrics (metrics.json holds none; evaluate again)"))
    if run.predictions is None or run.decided is None:
        parts.append(note("the grade errors (needs predictions.csv)"))
        return "".join(parts)
    errors = run.decided - run.predictions[0]
    reach = max(1, int(np.abs(errors).max()))
    steps = np.arange(-reach, reach + 1)
    counts = np.array([(errors == e).sum() for e in steps])
    shares = counts / max(len(errors), 1)
    listing = table(
        ["Grade error (called − true)", "Images", "Share"],
        [
            [f"{e:+d}" if e else "0 (right)", n, f"{s:.1%}"]
            for e, n, s in zip(steps, counts, shares, strict=True)
        ],
    )
    figure = figure_img(plot_grade_errors(steps, shares), "share of images by grade error")
    off = (np.abs(errors) == 1).mean()
    parts.append(
        f"<h3>Off by one</h3><p>{esc(f'{off:.1%}')} of the {len(errors)} images are called one "
        f"grade off, {esc(f'{(np.abs(errors) > 1).mean():.1%}')} more than one grade off; "
        "negative errors call a lower grade than the true one.</p>"
    )
    parts.append(f'<div class="row"><div>{listing}</div><div>{figure}</div></div>')
    return "".join(parts)


# --- top confusions gallery -----------------------------------------------------------------


def confusions_body(run: LoadedRun, matrix: np.ndarray | None, items: Sequence[GalleryItem]) -> str:
    """The most frequent confusions as a table, then their example images, grouped by pair."""
    parts = []
    if matrix is not None:
        cells = top_confusions(matrix)
        support = matrix.sum(axis=1)
        rows = [
            [run.classes[t], run.classes[p], n, f"{n / max(int(support[t]), 1):.1%}"]
            for t, p, n in cells
        ]
        if rows:
            head = ["True class", "Called", "Images", "Share of the true class"]
            parts.append(table(head, rows, align="llrr"))
        else:
            parts.append("<p>The decision confused no class with another on this split.</p>")
    if not items:
        parts.append(note("example images of the confusions (none were given to the report)"))
        return "".join(parts)
    grids = []
    for title in dict.fromkeys(item.title for item in items):  # pairs in the given order
        group = [item for item in items if item.title == title]
        grids.append(f"<h3>{esc(title)}</h3>{gallery_html(group)}")
    intro = (
        "<p>For each of the most frequent confusions, the images the model called wrong with "
        "the most confidence: look for labels to re-check and for what the two classes share.</p>"
    )
    return "".join(parts) + intro + "".join(grids)
