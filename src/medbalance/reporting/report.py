"""One self-contained HTML page per run, in the order a clinician reads it.

:func:`write_report` reads a run folder (``metrics.json`` and ``predictions.csv`` from the
evaluation, ``config.json`` and ``history.csv`` from training, optionally ``best.safetensors``
and ``inspect/summary.json``) and writes ``report.html``: the headline numbers with 95% CIs and
where they come from, the data, the operating point (ROC, PR, sensitivity/specificity against the
threshold), the confusion matrix, every metric, calibration, whether the numbers hold at another
site (calibration before and after, the operating point's bound and the prevalence it assumes,
PPV and NPV over prevalences, the site's prior, the conformal refer rate; drawn by
:mod:`~medbalance.reporting.site`), the classes one by one, the training run, and galleries
of the most confident errors and Grad-CAM overlays given by the caller.

The page needs no network and no JavaScript: images are inline base64 PNGs, styles inline.
Every optional input that is missing becomes a short "not available" note.

This module assembles the page (sections, CSS, public API); the run folder is read by
:mod:`~medbalance.reporting.run_data`, the title, header and headline cards drawn by
:mod:`~medbalance.reporting.headline`, the figures by :mod:`~medbalance.reporting.plots`, the
words and numbers formatted by :mod:`~medbalance.reporting.format`, and the galleries (with the
caveat when every Grad-CAM map lights the same region) drawn by
:mod:`~medbalance.reporting.gallery`. Runs of more than two classes get the sections of
:mod:`~medbalance.reporting.multiclass` (one-vs-rest curves, the decision rule's trade of accuracy
for balance, counts and row percentages, the top confusions, and for grades the ordinal view).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medbalance.core.figures import figure_img
from medbalance.core.files import atomic_write_text
from medbalance.reporting import multiclass
from medbalance.reporting.format import (
    METRICS,
    esc,
    fmt,
    fmt_ci,
    guarantee_text,
    note,
    table,
    threshold_text,
)
from medbalance.reporting.gallery import GalleryItem, cam_caveat, gallery_html
from medbalance.reporting.headline import header_html, headline_html, page_title
from medbalance.reporting.plots import (
    plot_confusion,
    plot_curves,
    plot_reliability,
    plot_sweep,
    rates,
    reliability_inputs,
)
from medbalance.reporting.run_data import (
    LoadedRun,
    load_run,
    metric_entry,
    number,
)
from medbalance.reporting.run_sections import data_body, training_body
from medbalance.reporting.site import SECTIONS as SITE_SECTIONS
from medbalance.reporting.site import site_body
from medbalance.reporting.style import CSS

__all__ = ["GalleryItem", "report_from_run", "write_report"]

_SECTIONS = {
    "data": "Data",
    "operating-point": "Operating point",
    "confusion": "Confusion matrix",
    "metrics": "Metrics with 95% CIs",
    "calibration": "Calibration",
    **SITE_SECTIONS,
    "per-class": "Per-class results",
    "training": "Training run",
    "errors": "Most confident errors",
    "gradcam": "Grad-CAM",
}


def report_from_run(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report.html`` from the run's files alone (no image galleries)."""
    return write_report(Path(run_dir))


def write_report(
    run_dir: Path,
    *,
    gallery_errors: Sequence[GalleryItem] = (),
    gallery_cam: Sequence[GalleryItem] = (),
    gallery_confusions: Sequence[GalleryItem] = (),
    out: Path | None = None,
) -> Path:
    """Write a self-contained ``report.html`` for an evaluated run.

    Args:
        run_dir: A run folder holding at least ``metrics.json``.
        gallery_errors: The most confident errors, drawn as given.
        gallery_cam: Images with Grad-CAM heat maps (``heatmap`` set), drawn with an overlay.
        gallery_confusions: Example images of the most frequent confusions, grouped by their
            title (``"virus called bacteria"``); drawn on pages of more than two classes only.
        out: Where to write (default ``RUN_DIR/report.html``); written atomically.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``metrics.json`` is missing (evaluate the run first).
        ValueError: ``metrics.json`` is not a JSON object, or a gallery image has a wrong shape.
    """
    run = load_run(Path(run_dir))
    galleries = [  # first: a bad image fails before any plotting
        _gallery_section("errors", gallery_errors, "no images were given to the report"),
        _gallery_section("gradcam", gallery_cam, "no Grad-CAM maps were given to the report"),
    ]
    if multiclass.is_multiclass(run):
        galleries.insert(1, _section("confusions", _confusions_body(run, gallery_confusions)))
    sections = [_data_section, _operating_section, _confusion_section, _metrics_section]
    sections += [_calibration_section, _site_section, _per_class_section, _training_section]
    if multiclass.is_multiclass(run):
        sections.insert(2, _decision_section)
    if multiclass.is_ordinal(run):
        sections.insert(sections.index(_metrics_section) + 1, _ordinal_section)
    body = "".join(section(run) for section in sections) + "".join(galleries)
    title = ("SYNTHETIC data: " if run.synthetic else "") + f"medbalance report: {page_title(run)}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"{header_html(run, _nav(run))}<main>{headline_html(run)}{body}</main></body></html>\n"
    )
    target = Path(out) if out is not None else run.path / "report.html"
    atomic_write_text(target, page)
    return target


def _section(key: str, body: str) -> str:
    title = _SECTIONS.get(key) or multiclass.SECTIONS[key]
    return f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>'


def _nav(run: LoadedRun) -> dict[str, str]:
    """The sections of the page in order: key -> heading."""
    keys = list(_SECTIONS)
    if multiclass.is_multiclass(run):
        keys.insert(keys.index("operating-point") + 1, "decision")
        keys.insert(keys.index("gradcam"), "confusions")
    if multiclass.is_ordinal(run):
        keys.insert(keys.index("metrics") + 1, "ordinal")
    return {key: _SECTIONS.get(key) or multiclass.SECTIONS[key] for key in keys}


# --- operating point ------------------------------------------------------------------------


def _no_predictions(run: LoadedRun, what: str) -> str:
    why = run.problems.get("predictions.csv", "predictions.csv not found in the run folder")
    return note(f"{what} (needs predictions.csv: {why})")


def _operating_section(run: LoadedRun) -> str:
    if run.predictions is None:
        return _section("operating-point", _no_predictions(run, "the ROC and PR curves"))
    if multiclass.is_multiclass(run):
        return _section("operating-point", multiclass.curves_body(run))
    labels, probs = run.predictions
    threshold, pos = number(run.point.get("value")), run.positive
    if pos is None or threshold is None:
        text = (
            f"<p>{len(run.classes)} classes: each curve is one class against the rest "
            f"(one-vs-rest). Decisions use {esc(threshold_text(run.point))}, so there is no "
            "single threshold to mark.</p>"
        )
        return _section(
            "operating-point", text + figure_img(plot_curves(run), "one-vs-rest curves")
        )
    y, score = labels == pos, probs[:, pos]
    if y.all() or not y.any():
        return _section("operating-point", note(f"curves (the {run.split} split has one class)"))
    sens, spec, _ = rates(y, score, threshold)
    text = (
        f"<p>At the chosen threshold {threshold:.3f} the model flags "
        f"{int((score >= threshold).sum())} of {len(y)} images as {esc(run.pos_name)}: "
        f"sensitivity {100 * sens:.1f}%, specificity {100 * spec:.1f}%. The red dot marks this "
        "operating point, the open square the naive threshold 0.5.</p>"
    )
    curves = figure_img(plot_curves(run, threshold), "ROC and precision-recall curves")
    sweep = figure_img(plot_sweep(y, score, threshold, run.pos_name), "rates against the threshold")
    return _section("operating-point", f"{text}{curves}<h3>Choosing the threshold</h3>{sweep}")


# --- confusion matrix -----------------------------------------------------------------------


def _confusion_section(run: LoadedRun) -> str:
    matrix = np.asarray(run.result.get("confusion_matrix") or [], dtype=np.int64)
    if matrix.shape != (len(run.classes), len(run.classes)):
        return _section("confusion", note("a confusion matrix of the classes in metrics.json"))
    if multiclass.is_multiclass(run):
        return _section("confusion", multiclass.confusion_body(run, matrix))
    text = (
        "<p>Rows are the true classes (reference standard), columns the model's decision at the "
        "operating point. On the right each row is in percent: the diagonal is each class's "
        "sensitivity.</p>"
    )
    figure = figure_img(plot_confusion(matrix, run.classes), "confusion matrix")
    return _section("confusion", text + figure)


# --- metrics --------------------------------------------------------------------------------


def _metrics_section(run: LoadedRun) -> str:
    metrics: dict[str, Any] = run.result.get("metrics") or {}
    if not metrics:
        return _section("metrics", note("metrics (metrics.json holds none)"))
    default = run.result.get("at_default_threshold") or {}
    at_default, reference = default.get("metrics") or {}, default.get("threshold", 0.5)
    if reference == run.point.get("policy") or not set(at_default) & set(metrics):
        at_default = {}  # the same rule, or nothing to compare
    head = ["Metric", "At the operating point", "95% CI"]
    if at_default:
        head.append(f"At threshold {reference}" if number(reference) else f"With {reference}")
    rows, names = [], multiclass.metric_names(run)
    order = [*(k for k in names if k in metrics), *(k for k in metrics if k not in names)]
    for key in order:  # clinical order first, then anything else metrics.json holds
        (value, ci), (name, meaning) = metric_entry(metrics[key]), names.get(key, (key, ""))
        compare = [fmt(key, metric_entry(at_default.get(key))[0])] if at_default else []
        rows.append(
            [name, fmt(key, value), fmt_ci(key, ci), *compare, meaning.format(pos=run.pos_name)]
        )
    bound = guarantee_text(run.point)
    text = (
        f"Operating point: {threshold_text(run.point)}, chosen on "
        f"{run.point.get('chosen_on', '?')}" + (f"; {bound}." if bound else ".")
    )
    if "ppv" in metrics or "npv" in metrics:
        text += (
            " PPV and NPV depend on how common the disease is; they hold for a prevalence like "
            f"that of the {run.split} split."
        )
    text = f"<p>{esc(text)}</p>"
    if all(metric_entry(entry)[1] is None for entry in metrics.values()):
        text += note("confidence intervals (metrics.json has none; evaluate with bootstrap > 0)")
    listing = table([*head, "What it means"], rows, align="l" + "r" * (len(head) - 1) + "l")
    return _section("metrics", text + listing)


def _decision_section(run: LoadedRun) -> str:
    return _section("decision", multiclass.decision_body(run))


def _ordinal_section(run: LoadedRun) -> str:
    return _section("ordinal", multiclass.ordinal_body(run))


# --- calibration ----------------------------------------------------------------------------


def _calibration_section(run: LoadedRun) -> str:
    metrics = run.result.get("metrics") or {}
    scores = []
    for key in [k for k in ("ece", "brier") if k in metrics]:
        value, ci = metric_entry(metrics[key])
        interval = f" (95% CI {fmt_ci(key, ci)})" if ci is not None else ""
        scores.append(f"{METRICS[key][0]} {fmt(key, value)}{interval}")
    text = (
        "<p>A well calibrated model that says 30% is right about 30% of the time: its points lie "
        f"on the diagonal. {esc('; '.join(scores) + '.' if scores else '')}</p>"
    )
    if run.predictions is None:
        return _section("calibration", text + _no_predictions(run, "the reliability diagram"))
    labels, probs = run.predictions
    y, prob, what, outcomes = reliability_inputs(labels, probs, run.positive, run.pos_name)
    if y.all() or not y.any():
        return _section("calibration", text + note("a reliability diagram (one outcome only)"))
    figure = figure_img(plot_reliability(y, prob, what, outcomes), "reliability diagram")
    return _section("calibration", text + figure)


# --- will this hold at my site? (reporting.site) ---------------------------------------------


def _site_section(run: LoadedRun) -> str:
    return _section("site", site_body(run))


# --- per class ------------------------------------------------------------------------------


def _per_class_section(run: LoadedRun) -> str:
    if multiclass.is_multiclass(run):
        return _section("per-class", multiclass.per_class_body(run))
    per_class: dict[str, Any] = run.result.get("per_class") or {}
    if not per_class:
        return _section("per-class", note("per-class results (metrics.json holds none)"))
    keys = ["sensitivity", "specificity", "ppv", "npv", "f1"]
    keys = [k for k in keys if any(k in v for v in per_class.values())]
    rows = []
    for name, values in per_class.items():
        cells = []
        for key in keys:
            value, ci = metric_entry(values.get(key))
            cells.append(fmt(key, value) + (f" ({fmt_ci(key, ci)})" if ci else ""))
        rows.append([name, values.get("support", "?"), *cells])
    head = ["Class", "Cases", *(METRICS[k][0].split(" (")[0] for k in keys)]
    text = "<p>Each class against all the others at the operating point; 95% CIs in brackets.</p>"
    return _section("per-class", text + table(head, rows))


# --- data and training (reporting.run_sections) --------------------------------------------


def _data_section(run: LoadedRun) -> str:
    return _section("data", data_body(run))


def _training_section(run: LoadedRun) -> str:
    return _section("training", training_body(run))


# --- galleries ------------------------------------------------------------------------------


def _confusions_body(run: LoadedRun, items: Sequence[GalleryItem]) -> str:
    matrix = np.asarray(run.result.get("confusion_matrix") or [], dtype=np.int64)
    square = matrix.shape == (len(run.classes), len(run.classes))
    return multiclass.confusions_body(run, matrix if square else None, items)


def _gallery_section(key: str, items: Sequence[GalleryItem], missing: str) -> str:
    if not items:
        return _section(key, note(missing))
    grid = gallery_html(items)  # before the intro: a bad image names the item
    caveat = cam_caveat(items) if key == "gradcam" else ""
    intro = {
        "errors": "The errors the model was most sure about: look for labels to re-check, and for "
        "image features (markers, devices, borders) the model may have learnt instead of the "
        "disease.",
        "gradcam": "Left: the image; right: the Grad-CAM heat map (red: regions that raised the "
        "score most). It shows what the network used, not whether that is clinically right.",
    }[key]
    return _section(key, f"<p>{esc(intro)}</p>{caveat}{grid}")
