"""The matplotlib figures of the HTML report.

Each ``plot_*`` function draws one figure of :mod:`medbalance.reporting.report` on a
:func:`~medbalance.core.figures.new_figure` and returns it; the report turns it into an inline PNG
with :func:`~medbalance.core.figures.figure_img`. The functions take arrays and plain data
(``plot_curves`` the :class:`~medbalance.reporting.run_data.LoadedRun`) and only draw: the text
around each figure stays in the report. :func:`rates` gives the operating point that both the
curves and the page's text quote, :func:`reliability_inputs` what both reliability diagrams read
(the model's own probabilities, and the calibrated ones beside them). Matplotlib and
scikit-learn are imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.core.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from medbalance.reporting.run_data import LoadedRun

__all__ = [
    "plot_confusion",
    "plot_confusion_cells",
    "plot_counts",
    "plot_curves",
    "plot_grade_errors",
    "plot_history",
    "plot_one_vs_rest",
    "plot_predictive_values",
    "plot_reliability",
    "plot_sweep",
    "rates",
    "reliability_inputs",
]


def rates(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Sensitivity, specificity and PPV when ``score >= threshold`` is called positive."""
    flagged = score >= threshold
    ppv = float(y[flagged].mean()) if flagged.any() else math.nan
    return float(flagged[y].mean()), float((~flagged[~y]).mean()), ppv


def plot_counts(counts: dict[str, dict[str, int]], classes: list[str]) -> Figure:
    """Grouped bars: images per class (colour) in each split."""
    figure, (ax,) = new_figure(6.4, 3.6)
    x, width = np.arange(len(counts)), 0.8 / max(1, len(classes))
    for c, name in enumerate(classes):
        values = [split.get(name, 0) for split in counts.values()]
        bars = ax.bar(x + (c - (len(classes) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fontsize=8, padding=1)
    ax.set_xticks(x, list(counts))
    ax.set(ylabel="Images", title="Images per class and split")
    ax.margins(y=0.15)
    ax.legend(fontsize=9)
    return figure


def plot_curves(run: LoadedRun, threshold: float | None = None) -> Figure:
    """ROC and precision–recall curves, one per class (one-vs-rest) or of the positive class.

    With ``threshold`` (binary runs), the chosen and the naive 0.5 operating points are marked.
    """
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    if run.predictions is None:
        raise ValueError(f"{run.path}: the curves need predictions.csv")
    labels, probs = run.predictions
    figure, (roc, pr) = new_figure(12, 5.6, ncols=2)
    for c in [run.positive] if run.positive is not None else range(len(run.classes)):
        y, score = labels == c, probs[:, c]
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, score)
        roc.plot(fpr, tpr, lw=2, label=f"{run.classes[c]} (AUROC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y, score)
        pr.plot(recall, precision, lw=2, drawstyle="steps-post", label=run.classes[c])
        if threshold is None:
            continue
        pr.axhline(y.mean(), ls=":", color="grey", label=f"prevalence {y.mean():.1%}")
        for t, style, name in (
            (threshold, {"color": "C3", "marker": "o"}, "chosen"),
            (0.5, {"color": "black", "marker": "s", "mfc": "white"}, "naive"),
        ):
            sens, spec, ppv = rates(y, score, t)
            label = f"threshold {t:.3f} ({name})"
            roc.plot(1 - spec, sens, ls="", ms=10, mew=2, label=label, **style)
            pr.plot(sens, ppv, ls="", ms=10, mew=2, label=label, **style)
    roc.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    roc.set(
        xlabel="1 − specificity (false positive rate)",
        ylabel="Sensitivity (true positive rate)",
        title=f"ROC curve, {run.split} split",
    )
    pr.set(
        xlabel="Sensitivity (recall)",
        ylabel="Positive predictive value (precision)",
        title=f"Precision–recall curve, {run.split} split",
    )
    for ax, where in ((roc, "lower right"), (pr, "lower left")):
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
        ax.grid(alpha=0.3)
        ax.legend(loc=where, fontsize=9)
    return figure


def plot_sweep(y: np.ndarray, score: np.ndarray, threshold: float, pos: str) -> Figure:
    """Sensitivity, specificity, PPV and NPV against the decision threshold on ``score``."""
    grid = np.linspace(0, 1, 201)
    flagged = score[None, :] >= grid[:, None]
    n_flagged, n_cleared = flagged.sum(1), (~flagged).sum(1)
    curves = {
        "Sensitivity": flagged[:, y].mean(1),
        "Specificity": (~flagged[:, ~y]).mean(1),
        "PPV": (flagged & y).sum(1) / np.maximum(n_flagged, 1),
        "NPV": (~flagged & ~y).sum(1) / np.maximum(n_cleared, 1),
    }
    curves["PPV"][n_flagged == 0] = np.nan
    curves["NPV"][n_cleared == 0] = np.nan
    figure, (ax,) = new_figure(12, 4.2)
    for (name, values), style in zip(curves.items(), ("-", "-", "--", "--"), strict=True):
        ax.plot(grid, values, style, lw=2.5 if style == "-" else 1.5, label=name)
    ax.axvline(threshold, color="C3", lw=2, label=f"chosen threshold {threshold:.3f}")
    ax.axvline(0.5, color="black", ls=":", label="naive threshold 0.5")
    ax.set(
        xlabel=f"Decision threshold on the predicted probability of {pos}",
        ylabel="Rate",
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        title="Sensitivity, specificity and predictive values against the threshold",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    return figure


def plot_confusion(matrix: np.ndarray, classes: list[str]) -> Figure:
    """The confusion matrix in counts and in percent of each true class."""
    k = len(classes)
    side = min(7.0, 2.0 + 0.75 * k)
    figure, axes = new_figure(2 * side + 1.0, side, ncols=2)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for ax, values, title in ((axes[0], matrix, "Counts"), (axes[1], shares, "Percent of row")):
        ax.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-9))
        for (i, j), value in np.ndenumerate(values):
            text = f"{value:d}" if values is matrix else f"{value:.1%}"
            colour = "white" if value > 0.6 * values.max() else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=13 if k < 6 else 8, color=colour)
        ax.set_xticks(
            range(k), classes, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center"
        )
        ax.set_yticks(range(k), classes)
        ax.set(xlabel="Predicted class (model decision)", ylabel="True class", title=title)
    return figure


def reliability_inputs(
    labels: np.ndarray, probs: np.ndarray, positive: int | None, pos: str
) -> tuple[np.ndarray, np.ndarray, str, tuple[str, str]]:
    """What a reliability diagram of ``probs`` [N, C] reads: the outcome, the probability, its
    axis label and the two outcomes' names. Two classes: the probability of the ``positive``
    class against having it; otherwise the confidence in the most probable class against being
    right (top-label, as the ECE of :mod:`medbalance.evaluation.calibration`)."""
    if positive is not None:
        outcomes = (f"with {pos}", f"without {pos}")
        return labels == positive, probs[:, positive], f"predicted probability of {pos}", outcomes
    right = probs.argmax(axis=1) == labels
    return right, probs.max(axis=1), "confidence in the most probable class", ("correct", "wrong")


def plot_reliability(
    y: np.ndarray,
    prob: np.ndarray,
    what: str,
    outcomes: tuple[str, str],
    *,
    calibrated: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """A reliability diagram of ``prob`` against outcome ``y``, beside the spread of ``prob``.

    With ``calibrated`` (outcome and probability of the calibrated probabilities, read as by
    :func:`reliability_inputs`), its curve is drawn beside the model's, and the spread shown is
    that of the calibrated probabilities.
    """
    from sklearn.calibration import calibration_curve

    figure, (ax, hist) = new_figure(12, 5.0, ncols=2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    own = "model (10 equal-width bins)" if calibrated is None else "model's own probabilities"
    curves = [(y, prob, "o-", own)]
    if calibrated is not None:
        curves.append((*calibrated, "s-", "calibrated probabilities"))
    for outcome, p, style, label in curves:
        observed, predicted = calibration_curve(outcome, p, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, style, lw=2, ms=7, label=label)
    ax.set(xlabel=what.capitalize(), ylabel="Observed frequency", title="Reliability diagram")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    shown_y, shown = calibrated if calibrated is not None else (y, prob)
    hist.hist(
        [shown[shown_y], shown[~shown_y]],
        bins=np.linspace(0, 1, 21),
        stacked=True,
        label=list(outcomes),
    )
    title = (
        "Spread of the calibrated predictions"
        if calibrated is not None
        else "Spread of the predictions"
    )
    hist.set(xlabel=what.capitalize(), ylabel="Images", title=title, xlim=(0, 1))
    hist.legend(fontsize=9)
    return figure


def plot_predictive_values(
    curve: dict[str, np.ndarray], marks: Sequence[tuple[float, str]], pos: str
) -> Figure:
    """PPV and NPV against the prevalence of ``pos`` (log axis), each with its 95% band, and
    vertical lines at the prevalences of ``marks`` (``(prevalence, label)``).

    ``curve`` holds ``prevalence``, ``ppv``, ``npv`` and ``ppv_ci`` / ``npv_ci`` (``[n, 2]``,
    NaN where there is no interval), as
    :func:`medbalance.reporting.site.predictive_values` gives them.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    x = curve["prevalence"]
    figure, (ax,) = new_figure(12, 4.6)
    lines = (
        ("ppv", "C3", f"PPV: flagged patients who have {pos}"),
        ("npv", "C0", f"NPV: cleared patients who do not have {pos}"),
    )
    for key, colour, label in lines:
        ax.plot(x, curve[key], lw=2.5, color=colour, label=label)
        low, high = np.asarray(curve[f"{key}_ci"], dtype=float).T
        if np.isfinite(low).any():
            ax.fill_between(x, low, high, color=colour, alpha=0.18, lw=0, label="95% CI")
    styles = ("--", ":", "-.", (0, (5, 1)))
    for i, (value, label) in enumerate(marks):
        ax.axvline(value, color=f"C{2 + i}", ls=styles[i % len(styles)], lw=2,
                   label=f"{label}: {value:.1%}")  # fmt: skip
    ax.set_xscale("log")
    ticks = [t for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9) if x[0] <= t <= x[-1]]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(
        xlim=(x[0], x[-1]),
        ylim=(-0.02, 1.02),
        xlabel=f"Prevalence of {pos} where the model is used (log scale)",
        ylabel="Predictive value",
        title="PPV and NPV at other prevalences, at the same sensitivity and specificity",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    return figure


def plot_history(
    history: list[dict[str, Any]], select: str, chosen: int | None, config: dict[str, Any]
) -> Figure:
    """Loss and the selection metric per epoch, with the chosen epoch and phase changes marked."""
    epochs = np.array([row.get("epoch", i) for i, row in enumerate(history)], dtype=float)
    figure, (loss, score) = new_figure(12, 4.4, ncols=2)
    for column, label in (("train_loss", "training loss"), ("val_loss", "validation loss")):
        loss.plot(epochs, [row.get(column, math.nan) for row in history], "o-", ms=4, label=label)
    values = [row.get(f"val_{select}", math.nan) for row in history]
    score.plot(epochs, values, "o-", ms=4, color="C2", label=f"validation {select}")
    marks: list[tuple[float, str, str, str]] = []
    if chosen is not None:
        marks.append((chosen, "C3", "-", f"chosen epoch {chosen}"))
    if config.get("drw_epoch") is not None:
        marks.append((float(config["drw_epoch"]), "grey", "--", "re-weighting (DRW) starts"))
    phases = [row.get("phase_name") for row in history]
    for i in range(1, len(history)):
        if phases[i] != phases[i - 1]:
            marks.append((epochs[i], "purple", ":", f"{phases[i]} phase starts"))
    for ax in (loss, score):
        for x, colour, style, label in marks:
            ax.axvline(x, color=colour, ls=style, lw=2 if style == "-" else 1.5, label=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    losses = np.array([row.get(c, math.nan) for row in history for c in ("train_loss", "val_loss")])
    losses = losses[np.isfinite(losses)]
    wide = losses.size and losses.min() > 0 and losses.max() / losses.min() > 30
    if wide:  # one bad epoch should not flatten the rest
        loss.set_yscale("log")
    loss.set(xlabel="Epoch", ylabel="Loss (log scale)" if wide else "Loss", title="Loss per epoch")
    score.set(xlabel="Epoch", ylabel=f"Validation {select}", title="Selection metric per epoch")
    return figure


# --- multi-class and ordinal runs -----------------------------------------------------------


def plot_one_vs_rest(
    labels: np.ndarray, probs: np.ndarray, classes: list[str], split: str, kind: str
) -> Figure:
    """One-vs-rest ROC (``kind="roc"``, AUROC in the legend) or precision–recall curves
    (``kind="pr"``, average precision in the legend), one line per class.

    A class without images in the split (or with every image) has no curve and is named in the
    legend as such.
    """
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    figure, (ax,) = new_figure(6.6, 6.0)
    for c, name in enumerate(classes):
        y, score = labels == c, probs[:, c]
        if y.all() or not y.any():
            ax.plot([], [], ls="", label=f"{name}: no curve (one outcome only)")
            continue
        if kind == "roc":
            fpr, tpr, _ = roc_curve(y, score)
            ax.plot(fpr, tpr, lw=2, label=f"{name} (AUROC {roc_auc_score(y, score):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(y, score)
            ap = average_precision_score(y, score)
            ax.plot(recall, precision, lw=2, drawstyle="steps-post", label=f"{name} (AP {ap:.3f})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
        ax.set(xlabel="1 − specificity (false positive rate)", ylabel="Sensitivity")
        ax.set_title(f"One-vs-rest ROC curves, {split} split")
    else:
        ax.set(xlabel="Sensitivity (recall)", ylabel="Positive predictive value (precision)")
        ax.set_title(f"One-vs-rest precision–recall curves, {split} split")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=9)
    return figure


def plot_confusion_cells(matrix: np.ndarray, classes: list[str]) -> Figure:
    """One confusion matrix, each cell with its count and its percent of the row (true class);
    the colour is the row percent, so rare classes read as clearly as common ones."""
    k = len(classes)
    side = min(9.0, 2.5 + 0.9 * k)
    figure, (ax,) = new_figure(side + 1.5, side)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if shares[i, j] > 0.6 else "black"
        text = f"{count:d}\n{shares[i, j]:.1%}"
        ax.text(j, i, text, ha="center", va="center", fontsize=12 if k < 6 else 8, color=colour)
    ax.set_xticks(range(k), classes, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="Predicted class (model decision)", ylabel="True class")
    ax.set_title("Counts and percent of each true class")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Share of the true class")
    return figure


def plot_grade_errors(errors: np.ndarray, shares: np.ndarray) -> Figure:
    """Bars: the share of images at each grade error (predicted − true grade)."""
    figure, (ax,) = new_figure(7.5, 3.8)
    colours = ["C2" if e == 0 else "C1" if abs(e) == 1 else "C3" for e in errors]
    bars = ax.bar(errors, shares, color=colours)
    ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares], fontsize=9, padding=1)
    ax.set_xticks(errors, [f"{e:+d}" if e else "0" for e in errors])
    ax.set(xlabel="Grade error (predicted − true grade)", ylabel="Share of images")
    ax.set_title("How far off the called grade is")
    ax.margins(y=0.15)
    return figure
