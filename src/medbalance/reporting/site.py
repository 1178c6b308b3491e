"""The report's "Will this hold at my site?" section: which numbers of a run travel to another
hospital, and what the others become there.

Sensitivity and specificity (each class's recall) travel with the model to patients and images
like these; probabilities, PPV and NPV follow the prevalence. :func:`site_body` reads
``metrics.json`` and ``predictions.csv`` and shows, for binary and multi-class/ordinal runs:

- in short, what each number means for use at another hospital;
- calibration before and after (``calibration``: Brier, log loss, ECE, MCE and per-class ECE with
  CIs), the prior correction and the temperature in words, and the reliability diagram of the
  calibrated probabilities beside the model's own (``Calibration.apply`` of the stored record);
- the operating point, its guaranteed lower bound and point estimate when it has one, and the
  prevalences it rests on (training, validation, the evaluated split);
- two classes: PPV and NPV over prevalences from 0.5% to 60% (log axis) at the evaluated
  split's sensitivity and specificity, by Bayes' rule with 95% bands from the stratified
  bootstrap of those rates (:func:`predictive_values`, through
  :func:`medbalance.evaluation.prevalence.at_prior`);
- ``site``: PPV/NPV at the prior the user gave and the prior estimated from the images;
- ``conformal``: coverage, set size and the refer rate, when the run has them.

A run evaluated before calibration existed gets a "Not available" note in its place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medbalance.core.figures import figure_img
from medbalance.reporting.format import esc, fmt, fmt_ci, note, table
from medbalance.reporting.plots import (
    plot_predictive_values,
    plot_reliability,
    reliability_inputs,
)
from medbalance.reporting.run_data import LoadedRun, metric_entry, number, split_counts
from medbalance.reporting.site_words import (
    calibration_words,
    conformal_body,
    in_short,
    operating_words,
    value_ci,
)

__all__ = ["SECTIONS", "predictive_values", "site_body"]

SECTIONS = {"site": "Will this hold at my site?"}
_CALIBRATION = {  # metrics.json calibration key: (name, what it means)
    "brier": ("Brier score", "mean squared error of the probabilities; 0 is perfect"),
    "log_loss": ("Log loss", "penalises confident mistakes most; lower is better"),
    "ece": (
        "Expected calibration error",
        "mean gap between the stated probability of the top class and how often it is right",
    ),
    "mce": ("Maximum calibration error", "the largest such gap in any bin: one reading's worst"),
}
_TABLE_PREVALENCES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
_GRID = 15  # prevalences on the PPV/NPV curve, besides those of the table and the marks


def site_body(run: LoadedRun) -> str:
    """The section's body: in short, calibration, operating point, prevalence, conformal sets."""
    priors = _priors(run)
    curve = _binary_curve(run, priors)
    parts = [
        in_short(run, priors, curve),
        "<h3>Are the probabilities probabilities? Calibration before and after</h3>",
        _calibration_part(run),
        "<h3>The operating point and the prevalence it assumes</h3>",
        operating_words(run, priors),
        _prior_table(run, priors),
        "<h3>PPV and NPV at another prevalence</h3>"
        if run.positive is not None
        else "<h3>PPV at other class shares</h3>",
        _prevalence_part(run, priors, curve),
        "<h3>Conformal prediction sets: when to refer</h3>",
        conformal_body(run),
    ]
    return "".join(parts)


# --- calibration ----------------------------------------------------------------------------


def _calibration_part(run: LoadedRun) -> str:
    record = run.result.get("calibration")
    if not isinstance(record, dict) or not isinstance(record.get("after"), dict):
        policy = run.point.get("policy", "POLICY")
        return note(
            "calibration before and after (metrics.json holds none: the run was evaluated "
            "before calibration existed; re-choosing its decision fits it: medbalance "
            f"evaluate {run.path} --threshold '{policy}')"
        )
    before, after = record.get("before") or {}, record["after"]
    rows = []
    for key, (name, meaning) in _CALIBRATION.items():
        rows.append([name, *_pair(before.get(key), after.get(key)), meaning])
    per_before, per_after = before.get("ece_per_class") or {}, after.get("ece_per_class") or {}
    names = [run.pos_name] if run.positive is not None else run.classes  # binary: one is enough
    for name in [c for c in names if c in per_after]:
        meaning = (
            f"the gap for the probability of {name}, the one the diagram shows"
            if run.positive is not None
            else f"the gap for the probability of {name} against the rest"
        )
        rows.append([f"ECE, {name}", *_pair(per_before.get(name), per_after.get(name)), meaning])
    head = ["Measure", "Model's own", "95% CI", "Calibrated", "95% CI", "What it means"]
    listing = table(head, rows, align="lrrrrl")
    return calibration_words(run, record) + listing + _reliability(run, record)


def _pair(before: Any, after: Any) -> list[str]:
    (b, b_ci), (a, a_ci) = metric_entry(before), metric_entry(after)
    return [fmt("calibration", b), fmt_ci("calibration", b_ci), fmt("calibration", a),
            fmt_ci("calibration", a_ci)]  # fmt: skip


def _reliability(run: LoadedRun, record: dict[str, Any]) -> str:
    """The reliability diagram of the calibrated probabilities beside the model's own."""
    from medbalance.evaluation.calibration import read_calibration

    if run.predictions is None:
        why = run.problems.get("predictions.csv", "predictions.csv not found in the run folder")
        return note(f"the reliability diagram of the calibrated probabilities (needs {why})")
    if record.get("method", "temperature") not in ("temperature", "vector", "bcts", "isotonic"):
        return note(f"a reliability diagram for calibration method {record.get('method')!r}")
    labels, probs = run.predictions
    try:
        calibration = read_calibration({"calibration": record})
        calibrated = calibration.apply(probs) if calibration is not None else None
    except (KeyError, TypeError, ValueError) as error:  # a damaged record: say so on the page
        return note(f"the calibrated probabilities (the calibration record: {error})")
    if calibrated is None or calibrated.shape != probs.shape:
        return note("the calibrated probabilities (the calibration record does not fit)")
    y, prob, what, outcomes = reliability_inputs(labels, probs, run.positive, run.pos_name)
    y_cal, prob_cal, _, _ = reliability_inputs(labels, calibrated, run.positive, run.pos_name)
    if y.all() or not y.any() or y_cal.all() or not y_cal.any():
        return note("a reliability diagram (one outcome only)")
    figure = plot_reliability(y, prob, what, outcomes, calibrated=(y_cal, prob_cal))
    return figure_img(figure, "reliability diagram before and after calibration")


# --- the prevalences ------------------------------------------------------------------------


def _part(record: dict[str, Any], key: str) -> dict[str, Any]:
    """``record[key]`` when it is a JSON object, else ``{}`` (absent in older records)."""
    found = record.get(key)
    return found if isinstance(found, dict) else {}


def _priors(run: LoadedRun) -> dict[str, dict[str, Any]]:
    """Each class's share by where it comes from: ``train``, ``val``, ``evaluated``, ``given``
    (the site prior of ``site.at_prior``) and ``estimated`` (``{value, ci}``); those known."""
    site = _part(run.result, "site")
    counts = split_counts(run)
    out: dict[str, dict[str, Any]] = {}
    for key, split in (("train", "train"), ("val", "val"), ("evaluated", run.split)):
        per_class = counts.get(split) or {}
        total = sum(per_class.values())
        if total:
            out[key] = {c: per_class.get(c, 0) / total for c in run.classes}
    if "evaluated" not in out and run.predictions is not None:  # no counts: the labels'
        shares = np.bincount(run.predictions[0], minlength=len(run.classes))
        out["evaluated"] = dict(zip(run.classes, (shares / shares.sum()).tolist(), strict=True))
    for key, stored in (("train", "training_prior"), ("evaluated", "evaluated_prior")):
        if isinstance(site.get(stored), dict):
            out[key] = {c: number(v) for c, v in site[stored].items()}
    given = _part(site, "at_prior").get("prior")
    if isinstance(given, dict):
        out["given"] = {c: number(v) for c, v in given.items()}
    if isinstance(site.get("estimated_prior"), dict):
        out["estimated"] = dict(site["estimated_prior"])
    return out


_COLUMNS = {  # key of _priors: (column of the prevalence table, what it is, in the PPV table)
    "train": ("Training", "the calibrated probabilities assume it", "training data"),
    "val": ("Validation", "the operating point was chosen here", "validation data"),
    "evaluated": ("Evaluated", "the split this page's numbers come from", "evaluated split"),
    "given": ("Site (given)", "the prior given to evaluate", "site prior given"),
    "estimated": ("Site (estimated)", "EM estimate from the images, 95% CI", "estimated site"),
}


def _where(run: LoadedRun, key: str) -> str:
    """Where a marked prevalence comes from, in a few words (the evaluated split by name)."""
    return f"{run.split} split" if key == "evaluated" else _COLUMNS[key][2]


def _prior_table(run: LoadedRun, priors: dict[str, dict[str, Any]]) -> str:
    """One row per class (the positive class alone for two): its share in each place known,
    and for more than two classes its PPV at the shares given for the site."""
    if not priors:
        return note("the class prevalences (metrics.json holds no class counts)")
    keys = [k for k in _COLUMNS if k in priors]
    head = ["Class", *(_COLUMNS[k][0] for k in keys)]
    at = _part(_part(run.result, "site"), "at_prior")
    ppv = _part(at, "ppv") if run.positive is None else {}
    if ppv:
        head.append("PPV at the given shares")
    rows = []
    for name in [run.pos_name] if run.positive is not None else run.classes:
        cells = [_share_cell(priors[k].get(name)) for k in keys]
        rows.append([name, *cells, *([_share_cell(ppv.get(name))] if ppv else [])])
    legend = "; ".join(f"{_COLUMNS[k][0]}: {_COLUMNS[k][1]}" for k in keys)
    return table(head, rows) + f"<p>{esc(legend)}.</p>"


def _share_cell(entry: Any) -> str:
    """A share in percent, with its 95% CI in brackets when it has one."""
    value, ci = metric_entry(entry)
    interval = f" ({fmt_ci('ppv', ci)})" if ci is not None and None not in ci else ""
    return fmt("ppv", value) + interval


# --- PPV and NPV over prevalences -----------------------------------------------------------


def predictive_values(
    labels: np.ndarray,
    preds: np.ndarray,
    positive: int,
    prevalences: Sequence[float],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """PPV and NPV of the calls ``preds`` at each prevalence of class ``positive``, by Bayes'
    rule from the sensitivity and specificity on ``labels``, with 95% CIs from the stratified
    bootstrap of those rates (:func:`~medbalance.evaluation.prevalence.at_prior`, one prior at
    a time; the same resamples for every prior).

    Returns:
        ``prevalence``, ``ppv``, ``npv`` (``[n]``) and ``ppv_ci``, ``npv_ci`` (``[n, 2]``, NaN
        without bootstrap); NaN where a rate is undefined.
    """
    from medbalance.evaluation.prevalence import at_prior

    names = ["negative", "positive"] if positive == 1 else ["positive", "negative"]
    rows = []
    for q in prevalences:
        prior = np.empty(2)
        prior[positive], prior[1 - positive] = q, 1.0 - q
        found = at_prior(
            labels, preds, prior, names, positive=positive, n_bootstrap=n_bootstrap, seed=seed
        )
        ppv, npv = found["ppv"]["positive"], found["npv"]
        rows.append([ppv["value"], *ppv["ci"], npv["value"], *npv["ci"]])
    values = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return {
        "prevalence": np.asarray(prevalences, dtype=np.float64),
        "ppv": values[:, 0],
        "ppv_ci": values[:, 1:3],
        "npv": values[:, 3],
        "npv_ci": values[:, 4:6],
    }


def _binary_curve(
    run: LoadedRun, priors: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray] | None:
    """The PPV/NPV curve of a binary run, None when it cannot be drawn: from 0.5% to 60%
    (widened to every marked prevalence), through the table's prevalences (``in_table``) and
    the marks, with the split's ``sensitivity`` and ``specificity`` at the operating point."""
    if run.positive is None or run.predictions is None or run.decided is None:
        return None
    labels = run.predictions[0]
    if len(np.unique(labels)) < 2:
        return None
    marks = [v for v, key in _marks(run, priors) if key != "given"]  # given: metrics.json's
    ends = [v for v, _ in _marks(run, priors)] or [0.1]
    low = min(0.005, min(ends) / 1.5)
    high = max(0.6, min(0.99, max(ends) + 0.5 * (1 - max(ends))))
    in_table = {*_TABLE_PREVALENCES, *marks}
    points = sorted({*np.geomspace(low, high, _GRID).tolist(), *in_table})
    cis = any(metric_entry(e)[1] is not None for e in (run.result.get("metrics") or {}).values())
    found = predictive_values(
        labels, run.decided, run.positive, points, n_bootstrap=1000 if cis else 0
    )
    y, flagged = labels == run.positive, run.decided == run.positive
    found["in_table"] = np.array([q in in_table for q in points])
    found["sensitivity"] = np.asarray(flagged[y].mean())
    found["specificity"] = np.asarray((~flagged[~y]).mean())
    return found


def _marks(run: LoadedRun, priors: dict[str, dict[str, Any]]) -> list[tuple[float, str]]:
    """(prevalence of the positive class, key of ``priors``) for the evaluated split, training,
    the site prior given and the estimated one: those known and strictly between 0 and 1."""
    out = []
    for key in ("evaluated", "train", "given", "estimated"):
        value = (priors.get(key) or {}).get(run.pos_name)
        value = metric_entry(value)[0] if key == "estimated" else number(value)
        if value is not None and 0 < value < 1:
            out.append((value, key))
    return out


def _prevalence_part(
    run: LoadedRun, priors: dict[str, dict[str, Any]], curve: dict[str, np.ndarray] | None
) -> str:
    if run.positive is None:
        return _multiclass_site(run)
    if curve is None:
        why = (
            f"the {run.split} split has one class"
            if run.predictions is not None
            else run.problems.get("predictions.csv", "predictions.csv not found in the run folder")
        )
        return note(f"PPV and NPV over prevalences (needs both classes in predictions.csv: {why})")
    marks = [(v, _where(run, key)) for v, key in _marks(run, priors)]
    figure = plot_predictive_values(curve, marks, run.pos_name)
    text = (
        "<p>The curves keep the model's sensitivity and specificity on the "
        f"{esc(run.split)} split and change only how common {esc(run.pos_name)} is (Bayes' "
        "rule); the bands are 95% CIs from resampling those cases. Where the disease is rare, "
        "most flagged patients do not have it even when specificity is high.</p>"
    )
    figure_html = figure_img(figure, "PPV and NPV against prevalence")
    return text + figure_html + _ppv_table(run, priors, curve)


def _ppv_table(
    run: LoadedRun, priors: dict[str, dict[str, Any]], curve: dict[str, np.ndarray]
) -> str:
    """PPV, NPV and the counts per 1,000 patients at the table's prevalences and the marks."""
    sens, spec = float(curve["sensitivity"]), float(curve["specificity"])
    where: dict[float, str] = {}
    for value, key in _marks(run, priors):
        if key != "given":
            where[value] = ", ".join(filter(None, [where.get(value), _where(run, key)]))
    rows = []
    for i in np.flatnonzero(curve["in_table"]):
        q = float(curve["prevalence"][i])
        ppv = (curve["ppv"][i], curve["ppv_ci"][i])
        npv = (curve["npv"][i], curve["npv_ci"][i])
        rows.append([fmt("ppv", q), where.get(q, ""), _cell(*ppv), _cell(*npv),
                     _per_thousand(q, sens, spec, float(ppv[0]), run.pos_name)])  # fmt: skip
    head = [f"Prevalence of {run.pos_name}", "Where", "PPV (95% CI)", "NPV (95% CI)",
            "Of 1,000 such patients"]  # fmt: skip
    return table(head, rows, align="rlrrl") + _given_words(run)


def _cell(value: float, ci: np.ndarray) -> str:
    finite = [number(float(v)) for v in ci]
    ci_text = f" ({fmt_ci('ppv', (finite[0], finite[1]))})" if None not in finite else ""
    return fmt("ppv", number(float(value))) + ci_text


def _per_thousand(q: float, sens: float, spec: float, ppv: float, pos: str) -> str:
    """``flags 130, 18 of them with X; misses 2 with X`` among 1,000 patients at prevalence q."""
    flagged = 1000 * (sens * q + (1 - spec) * (1 - q))
    right = flagged * ppv if np.isfinite(ppv) else 0.0
    return f"flags {flagged:.0f} ({right:.0f} with {pos}); misses {1000 * q * (1 - sens):.0f}"


def _given_words(run: LoadedRun) -> str:
    """PPV and NPV at the site prior of ``metrics.json``'s ``site``, as evaluate computed them."""
    site = _part(run.result, "site")
    at = _part(site, "at_prior") or None
    if at is None:
        return (
            "<p>To compute these at your site's prevalence P with CIs, run "
            "<code>medbalance evaluate RUN DATA --prevalence P</code>; "
            "<code>--estimate-prevalence</code> estimates P from the site's images.</p>"
        )
    q = number((at.get("prior") or {}).get(run.pos_name))
    ppv = value_ci((at.get("ppv") or {}).get(run.pos_name))
    text = (
        f"At the site prevalence you gave ({fmt('ppv', q)} {run.pos_name}): PPV {ppv}, "
        f"NPV {value_ci(at.get('npv'))}, from the {run.split} split's rates (metrics.json)."
    )
    return f'<div class="callout">{esc(text)}</div>'


def _multiclass_site(run: LoadedRun) -> str:
    """What the prevalence table says about PPV at another site's class shares."""
    text = (
        "<p>With more than two classes each class's PPV depends on the share of every class: "
        "each class's sensitivity (the per-class results) travels, its PPV does not.</p>"
    )
    if not _part(_part(run.result, "site"), "at_prior"):
        return text + note(
            "PPV at a site's class shares (evaluate with --class-prior "
            + ",".join(f"{c}=..." for c in run.classes)
            + ")"
        )
    return text + "<p>The table above gives each class's PPV at the shares given for the site.</p>"
