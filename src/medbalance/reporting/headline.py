"""The top of the HTML report: the title, the run's facts, the headline numbers and their caveats.

:func:`page_title` names the page after the run and its data (``baseline/seed0 — synthetic_xrays
(2 classes)``), never a bare ``run`` or ``seed0``. :func:`header_html` gives the title with the
facts a reader needs first (data, model, remedy, split, decision) and, for data that say they are
synthetic, a banner saying so. :func:`headline_html` gives the cards of the headline metrics
(quadratic kappa first for ordinal grades), each rate with the counts behind it (``finds 8 of the
18 images with lesion``), where the numbers come from, and a warning when the AUROC cannot be told
apart from chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medbalance.reporting import multiclass
from medbalance.reporting.format import METRICS, esc, fmt, fmt_ci, remedy_text, threshold_text
from medbalance.reporting.run_data import (
    LoadedRun,
    data_name,
    metric_entry,
    number,
    run_name,
    split_counts,
)

__all__ = ["header_html", "headline_html", "page_title"]

_CARDS = {  # key: hint under a headline number, when the confusion matrix gives no counts
    "sensitivity": "finds {v} of the images with {pos}",
    "specificity": "clears {v} of the images without {pos}",
    "ppv": "{v} of the flagged images have {pos}",
    "npv": "{v} of the cleared images do not have {pos}",
    "auroc": "ranking quality, independent of the threshold",
    "balanced_accuracy": "mean sensitivity over the classes",
    "macro_f1": "F1 averaged over the classes",
    "accuracy": "share of all cases classified right",
}
_COUNTED = {  # key: the same hint with the counts of the confusion matrix
    "sensitivity": "finds {k} of the {n} images with {pos}",
    "specificity": "clears {k} of the {n} images without {pos}",
    "ppv": "{k} of the {n} flagged images have {pos}",
    "npv": "{k} of the {n} cleared images do not have {pos}",
}


def page_title(run: LoadedRun) -> str:
    """``NAME — DATA (K classes)``: the run folder's name and the data it was trained on."""
    site = _site(run)
    data = data_name(
        site.get("site_data") or run.config.get("data") or (run.inspect or {}).get("source")
    )
    classes = f" ({len(run.classes)} classes)" if run.classes else ""
    return f"{run_name(run.path)} — {data}{classes}"


def header_html(run: LoadedRun, links: dict[str, str]) -> str:
    """The page header: a synthetic-data banner when it applies, the title, the run's facts and
    the links to the sections (``links``: anchor -> heading)."""
    config, point = run.config, run.point
    model, size = config.get("model") or run.meta.get("model"), config.get("size")
    model = f"{model or 'unknown'}" + (f" at {size}×{size} px" if size else "")
    in_split = split_counts(run).get(run.split, {})
    cases = ", ".join(f"{in_split[c]} {c}" for c in run.classes if c in in_split)
    rows = {
        "Data": config.get("data") or (run.inspect or {}).get("source") or "unknown",
        "Model": model + (" (ImageNet-pretrained)" if config.get("pretrained") else ""),
        "Imbalance remedy": remedy_text(config),
        "Evaluated on": f"the {run.split} split: {run.result.get('n', '?')} images"
        + (f" ({cases})" if cases else ""),
        "Decision threshold": f"{threshold_text(point)}, chosen on {point.get('chosen_on', '?')}",
    }
    if multiclass.is_multiclass(run):
        del rows["Decision threshold"]
        rows["Decision rule"] = f"{multiclass.rule_text(point)}; chosen on {point.get('chosen_on')}"
    rows.update(_site_rows(run))
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows.items())
    nav = "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name in links.items())
    banner = ""
    if run.synthetic:
        banner = (
            '<p class="synthetic"><b>SYNTHETIC data</b>: generated images, not medical ones; no '
            f"number on this page says anything about medicine. The data folder's README.txt: "
            f"“{esc(run.synthetic)}”</p>"
        )
    return (
        f"<header><div>{banner}<h1>{esc(page_title(run))}</h1><dl>{meta}</dl>"
        f"<nav>{nav}</nav></div></header>"
    )


def headline_html(run: LoadedRun) -> str:
    """The headline cards, the warning of a ranking at chance, and where the numbers come from."""
    metrics: dict[str, Any] = run.result.get("metrics") or {}
    keys, names, hints = ["sensitivity", "specificity", "ppv", "npv", "auroc"], METRICS, _CARDS
    if run.positive is None:
        keys = [k for k in ("balanced_accuracy", "auroc", "macro_f1", "accuracy") if k in metrics]
    if multiclass.is_multiclass(run):
        keys, names = multiclass.headline_keys(run), multiclass.metric_names(run)
        hints = {**_CARDS, **multiclass.CARDS}
    counts = _counts(run)
    cards = []
    for key in keys:
        value, ci = metric_entry(metrics.get(key))
        if key in counts:
            k, n = counts[key]
            hint = _COUNTED[key].format(k=k, n=n, pos=run.pos_name)
        else:
            hint = hints[key].format(v=fmt(key, value), pos=run.pos_name)
        ci_text = "no confidence interval" if ci is None else f"95% CI {fmt_ci(key, ci)}"
        cards.append(
            f'<div class="card"><b>{esc(names[key][0].split(" (")[0])}</b>'
            f'<div class="value">{esc(fmt(key, value))}</div>'
            f"<small>{esc(ci_text)}</small><small>{esc(hint)}</small></div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>{_chance(run)}{_provenance(run)}'


def _counts(run: LoadedRun) -> dict[str, tuple[int, int]]:
    """(count, out of) behind each binary rate, from the confusion matrix of metrics.json."""
    matrix = np.asarray(run.result.get("confusion_matrix") or [], dtype=np.int64)
    pos = run.positive
    if pos is None or matrix.shape != (2, 2):
        return {}
    neg = 1 - pos
    return {
        "sensitivity": (int(matrix[pos, pos]), int(matrix[pos].sum())),
        "specificity": (int(matrix[neg, neg]), int(matrix[neg].sum())),
        "ppv": (int(matrix[pos, pos]), int(matrix[:, pos].sum())),
        "npv": (int(matrix[neg, neg]), int(matrix[:, neg].sum())),
    }


def _chance(run: LoadedRun) -> str:
    """A warning when the AUROC's 95% CI holds 0.5 (or lies below it): every other number on the
    page then describes a model that ranks no better than a coin."""
    value, ci = metric_entry((run.result.get("metrics") or {}).get("auroc"))
    low, high = ci if ci is not None else (None, None)
    if value is None or low is None or high is None or low > 0.5:
        return ""
    name = "Macro AUROC" if multiclass.is_multiclass(run) else "AUROC"
    what = "the classes" if run.positive is None else f"{run.pos_name} images"
    said = f"{name} {fmt('auroc', value)} (95% CI {fmt_ci('auroc', ci)})"
    if high < 0.5:
        text = (
            f"{said} lies below 0.5: on the {run.split} split this model ranks {what} worse than "
            "chance. Check the labels and the positive class before reading the other numbers."
        )
        return f'<div class="callout warn">{esc(text)}</div>'
    text = (
        f"{said} includes 0.5: on the {run.split} split this model's ranking of {what} cannot "
        "be told apart from chance, so the other numbers on this page describe a model that has "
        "not (yet) learnt the task."
    ) + _collapsed(run)
    train = split_counts(run).get("train") or {}
    remedied = run.config.get("sampler", "none") != "none" or run.config.get("loss", "ce") != "ce"
    if remedied or not run.config:
        text += " Common causes: too few epochs or too few images for the task."
    elif len(train) >= 2 and min(train.values()) > 0:
        major, minor = max(train, key=train.__getitem__), min(train, key=train.__getitem__)
        ratio = train[major] / train[minor]
        text += (
            f" Common causes: too few epochs or images, or an imbalance trained without a remedy "
            f"(here {ratio:.1f} {major} per {minor} image in train), which first teaches a model "
            f"to call nearly everything {major}."
        )
    else:
        text += " Common causes: too few epochs or images, or an imbalance without a remedy."
    return f'<div class="callout warn">{esc(text)}</div>'


def _collapsed(run: LoadedRun) -> str:
    """`` At the naive threshold 0.5 it calls every test image normal.`` when it does."""
    default = run.result.get("at_default_threshold") or {}
    rates = default.get("metrics") or {}
    if run.positive is None or default.get("threshold") != 0.5:
        return ""
    sens, spec = (metric_entry(rates.get(k))[0] for k in ("sensitivity", "specificity"))
    outcomes: dict[tuple[float | None, float | None], int] = {
        (0.0, 1.0): 1 - run.positive,  # flags nothing
        (1.0, 0.0): run.positive,  # flags everything
    }
    called = outcomes.get((sens, spec))
    if called is None:
        return ""
    return f" At the naive threshold 0.5 it calls every {run.split} image {run.classes[called]}."


def _provenance(run: LoadedRun) -> str:
    split, chosen = run.split, str(run.point.get("chosen_on", "unknown"))
    text = (
        f"All numbers on this page come from the {split} split ({run.result.get('n', '?')} "
        f"images). The {_decision_word(run)} was chosen on {chosen}"
        + (" (the validation data), never on the test data" if chosen == "val" else "")
        + (" (the site's sample outside its test split)" if chosen == "site" else "")
        + ". Intervals are 95% confidence intervals."
    )
    if split == "val" or chosen == split:
        text += (
            f" Caution: the {split} split also chose the {_decision_word(run).split()[1]} or the "
            "epoch, so these "
            "numbers are optimistic; report the test split."
        )
        return f'<div class="callout warn">{esc(text)}</div>'
    if split == "test":
        text += (
            " The test split played no part in training, model selection or the "
            f"{_decision_word(run).split()[1]}."
        )
    return f'<div class="callout">{esc(text)}</div>'


def _site(run: LoadedRun) -> dict[str, Any]:
    """``metrics.json``'s ``recalibration`` (a model re-fitted for a site), or empty."""
    site = run.result.get("recalibration")
    return site if isinstance(site, dict) else {}


def _cases(counts: object) -> str:
    if not isinstance(counts, dict):
        return "? cases"
    detail = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"{sum(int(n) for n in counts.values())} cases ({detail})"


def _site_rows(run: LoadedRun) -> dict[str, str]:
    """Which site each part of a recalibrated model comes from (none for a plain run)."""
    site = _site(run)
    if not site:
        return {}
    before = site.get("decision_before") or {}
    value = number(before.get("value"))
    old = f"{before.get('policy', '?')}" + (f" at {value:.3f}" if value is not None else "")
    return {
        "Data": f"{site.get('site_data', '?')} (the site's sample)",
        "Model weights": f"from {site.get('from', '?')}, trained on {site.get('trained_on', '?')} "
        "(shared, not copied)",
        "Re-fitted on the site": "calibration, operating point and conformal sets, on "
        f"{_cases(site.get('tuning_cases'))} outside the sample's test split; before: {old}, "
        f"chosen on {before.get('chosen_on', '?')} at the training site",
        "Checked on": f"the sample's test split, {_cases(site.get('check_cases'))}",
    }


def _decision_word(run: LoadedRun) -> str:
    return "decision rule" if multiclass.is_multiclass(run) else "decision threshold"
