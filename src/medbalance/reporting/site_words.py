"""The words of the report's "Will this hold at my site?" section (:mod:`.site` draws it).

What a clinician reads beside the numbers: :func:`in_short`, what each number means for use at
another hospital; :func:`calibration_words`, the prior correction and the temperature;
:func:`operating_words`, the operating point, its guaranteed bound and the prevalence it rests
on; :func:`conformal_body`, conformal prediction sets and the refer rate when ``metrics.json``
has them (read field by field: a record without a field simply shows less).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medbalance.reporting import multiclass
from medbalance.reporting.format import (
    esc,
    fmt,
    fmt_ci,
    guarantee_text,
    note,
    table,
    threshold_text,
)
from medbalance.reporting.run_data import LoadedRun, metric_entry, number

__all__ = ["calibration_words", "conformal_body", "in_short", "operating_words", "value_ci"]

_PREVALENCE_FREE = ("youden", "sensitivity>=", "specificity>=")


def value_ci(entry: Any) -> str:
    """A share stored as a number or ``{value, ci}``, in percent: ``45.3% (95% CI 38.0–52.1%)``."""
    value, ci = metric_entry(entry)
    shown = fmt("ppv", value)
    if ci is not None and None not in ci:
        shown += f" (95% CI {fmt_ci('ppv', ci)})"
    return shown


def _share(priors: dict[str, dict[str, Any]], key: str, name: str) -> float | None:
    entry = (priors.get(key) or {}).get(name)
    return metric_entry(entry)[0] if key == "estimated" else number(entry)


# --- in short -------------------------------------------------------------------------------


def in_short(
    run: LoadedRun, priors: dict[str, dict[str, Any]], curve: dict[str, np.ndarray] | None
) -> str:
    """The callout at the top of the section: what travels to another hospital and what not."""
    metrics, split, pos = run.result.get("metrics") or {}, run.split, run.pos_name
    items = []
    if run.positive is not None:
        sens, spec = value_ci(metrics.get("sensitivity")), value_ci(metrics.get("specificity"))
        items.append(
            f"Sensitivity {sens} and specificity {spec} describe the model on images like the "
            f"{split} split's. They carry over to another hospital whatever its prevalence, as "
            "long as its patients, scanners and disease look like these; only labelled cases "
            "from that hospital can confirm it."
        )
    else:
        items.append(
            "Each class's sensitivity (the per-class results) describes the model on images "
            f"like the {split} split's and carries over whatever the class shares are, as long "
            "as patients and scanners look like these; only labelled local cases can confirm it."
        )
    items.append(_bound_sentence(run))
    if curve is not None:
        at = {float(q): i for i, q in enumerate(curve["prevalence"])}
        evaluated = _share(priors, "evaluated", pos)
        here = metric_entry(metrics.get("ppv"))[0]
        quoted = [
            f"{fmt('ppv', number(float(curve['ppv'][at[q]])))} at {q:.0%}"
            for q in (0.05, 0.01)
            if q in at
        ]
        items.append(
            f"PPV does not carry over: on the {split} split, where {fmt('ppv', evaluated)} of "
            f"the images have {pos}, {fmt('ppv', here)} of the flagged images have it; at the "
            f"same sensitivity and specificity it would be {' and '.join(quoted)} prevalence "
            "(the plot and table below)."
        )
    items.append(_probability_sentence(run, priors))
    estimated = _estimated_sentence(run, priors)
    if estimated:
        items.append(estimated)
    refer = _refer_rate(run.result.get("conformal"))
    if refer is not None:
        items.append(
            f"Conformal sets: {fmt('ppv', refer)} of the {split} images get more than one "
            "possible class (or none) and would be referred to a reader."
        )
    lines = "".join(f"<li>{esc(item)}</li>" for item in items if item)
    return (
        f'<div class="callout"><b>In short, for use at another hospital</b><ul>{lines}</ul></div>'
    )


def _bound_sentence(run: LoadedRun) -> str:
    point, metrics = run.point, run.result.get("metrics") or {}
    policy = str(point.get("policy", ""))
    rate, _, target = policy.replace(" ", "").partition(">=")
    record = point.get("guarantee")
    if isinstance(record, dict) and guarantee_text(point):
        level, bound = number(record.get("level")), number(record.get("lower_bound"))
        seen = value_ci(metrics.get(rate))
        return (
            f"The threshold is guaranteed: with {100 * (level or 0):g}% confidence, {rate} is "
            f"at least {target} on cases like the {point.get('chosen_on', '?')} cases (lower "
            f"bound {bound:.3f}); on the {run.split} split it was {seen}."
        )
    if target and rate in ("sensitivity", "specificity"):
        return (
            f"The target {policy} was met on {point.get('chosen_on', '?')} as a point "
            "estimate, without a confidence bound: on new cases the rate can fall below it "
            f"(medbalance evaluate RUN --threshold '{policy}' --guarantee 0.95 chooses one "
            "whose lower confidence bound meets it)."
        )
    return ""


def _probability_sentence(run: LoadedRun, priors: dict[str, dict[str, Any]]) -> str:
    record = run.result.get("calibration")
    if not isinstance(record, dict) or not isinstance(record.get("after"), dict):
        return (
            "The probabilities were not calibrated in this evaluation: do not read them as "
            "the chance of disease."
        )
    before, after = (_ece(run, record.get(k)) for k in ("before", "after"))
    train = _share(priors, "train", run.pos_name) if run.positive is not None else None
    where = f" ({fmt('ppv', train)} {run.pos_name})" if train is not None else ""
    caveat = (
        "; on this split calibration did not lower the error, so read them with care"
        if before is not None and after is not None and after >= before
        else ""
    )
    return (
        f"Calibrated probabilities (expected calibration error {fmt('ece', after)}, "
        f"{fmt('ece', before)} before calibration{caveat}) read as chances at the training "
        f"prevalence{where}. Where the disease is rarer a stated probability overstates the "
        "chance, where it is commoner it understates it (evaluate --prevalence re-targets "
        "them)."
    )


def _ece(run: LoadedRun, block: Any) -> float | None:
    """The ECE the reliability diagram shows: of the positive class's probability for two
    classes (as the Calibration section's), of the top class otherwise."""
    if not isinstance(block, dict):
        return None
    if run.positive is not None:
        return metric_entry((block.get("ece_per_class") or {}).get(run.pos_name))[0]
    return metric_entry(block.get("ece"))[0]


def _estimated_sentence(run: LoadedRun, priors: dict[str, dict[str, Any]]) -> str:
    estimated = priors.get("estimated") or {}
    names = [run.pos_name] if run.positive is not None else run.classes
    parts, apart = [], []
    for name in names:
        value, ci = metric_entry(estimated.get(name))
        train = _share(priors, "train", name)
        if value is None:
            continue
        parts.append(f"{name} {value_ci(estimated.get(name))} (training {fmt('ppv', train)})")
        low, high = ci if ci is not None else (None, None)
        if train is not None and low is not None and high is not None:
            apart.append(not low <= train <= high)
    if not parts:
        return ""
    if len(names) == 1:
        verdict = (
            "the training prevalence lies outside its interval: this site's case mix differs, "
            "so read PPV and NPV at the estimated prevalence"
            if any(apart)
            else "the training prevalence lies inside its interval: no sign of a different mix"
        )
    elif any(apart):
        verdict = (
            f"the training share lies outside the interval for {sum(apart)} of the classes: "
            "this site's case mix differs, so read each class's PPV at the estimated shares"
        )
    else:
        verdict = "the training shares lie inside the intervals: no sign of a different case mix"
    return f"Estimated from the images' calibrated probabilities: {'; '.join(parts)}; {verdict}."


# --- calibration ----------------------------------------------------------------------------


# the tuning cases a calibration or conformal record names, in words
_TUNING_WORDS = {"val": "validation", "oof": "out-of-fold", "site": "site's sample"}


def calibration_words(run: LoadedRun, record: dict[str, Any]) -> str:
    """The prior correction and the temperature in words, and how to read the table."""
    chosen = _TUNING_WORDS.get(str(record.get("chosen_on")), "?")
    steps = [_prior_words(run, record.get("prior_weights")), _temperature_words(record)]
    decided = (
        " Decisions use the model's own probabilities, so calibration changes what a "
        "probability means, not which images are flagged."
        if run.positive is not None
        else " Decisions use the model's own probabilities; calibration changes what they mean."
    )
    text = (
        f"Fitted on the {chosen} cases, in two steps. {' '.join(steps)}{decided} The table "
        f"compares both on the {run.split} split (lower is better for all of them); the "
        "diagram shows the calibrated curve beside the model's own."
    )
    return f"<p>{esc(text)}</p>"


def _prior_words(run: LoadedRun, weights: Any) -> str:
    if not isinstance(weights, list) or len(weights) != len(run.classes):
        return (
            "1. No prior correction: the model's outputs are taken to follow the training "
            "prevalence (no resampling or balanced loss moved them, or the checkpoint does not "
            "record the prior the model learned)."
        )
    values = [number(w) for w in weights]
    pos = run.positive
    mine, other = (values[pos], values[1 - pos]) if pos is not None else (None, None)
    if mine is not None and other:
        factor = mine / other
        way = "rarer" if factor > 1 else "commoner"
        return (
            f"1. Prior correction: the imbalance remedy taught the model that {run.pos_name} "
            f"is {way} than in the training data; the odds of {run.pos_name} are multiplied "
            f"by {factor:.2f} to bring them back to the training prevalence."
        )
    each = ", ".join(f"{c} ×{fmt('w', w)}" for c, w in zip(run.classes, values, strict=True))
    return (
        "1. Prior correction: each class's probability is multiplied by its training share "
        "over the share the model learned under the imbalance remedy, then rescaled to sum to "
        f"1 ({each})."
    )


def _temperature_words(record: dict[str, Any]) -> str:
    method = record.get("method", "temperature")
    if method == "vector":
        scale = ", ".join(f"{v:.2f}" for v in record.get("scale") or [])
        return (
            f"2. Vector scaling: each class's log-probability times its own factor ({scale}) "
            "plus its own bias, fitted to the tuning cases' log loss."
        )
    if method == "isotonic":
        return (
            "2. Isotonic regression: each class's probability through a non-decreasing step "
            "function fitted to the tuning cases (one class against the rest), renormalised."
        )
    t = number(record.get("temperature"))
    if t is None:
        return "2. Temperature: not recorded."
    if abs(math.log(t)) < 0.05:
        how = "about 1: the confidence was already right after the correction"
    elif t > 1:
        how = "above 1 softens the probabilities: the model was over-confident"
    else:
        how = "below 1 sharpens the probabilities: the model was under-confident"
    if method == "bcts":
        return (
            f"2. Bias-corrected temperature scaling: T = {t:.2f}, {how}; and a bias per class, "
            "which moves the base rate to the tuning cases' class shares."
        )
    return f"2. Temperature scaling: T = {t:.2f}, {how}."


# --- the operating point --------------------------------------------------------------------


def operating_words(run: LoadedRun, priors: dict[str, dict[str, Any]]) -> str:
    """The operating point, its bound, and the prevalences it and the probabilities rest on."""
    point, pos = run.point, run.pos_name
    chosen = str(point.get("chosen_on", "?"))
    policy = str(point.get("policy", "")).replace(" ", "")
    if run.positive is None:
        text = (
            f"Decision rule {multiclass.rule_text(point)}, chosen on {chosen}. A rule that "
            "uses the training class shares (accuracy, prior, logit-adjust, cost) assumes the "
            "site has them too; the table below sets the shares it rests on beside the site's."
        )
        return f"<p>{esc(text)}</p>"
    text = f"Images are flagged as {pos} from a probability of {threshold_text(point)}, "
    text += f"chosen on {chosen}."
    bound = guarantee_text(point)
    if bound:
        text += (
            f" Guaranteed: {bound}. The lower bound, not the point estimate, is what the "
            "guarantee promises for new cases like the tuning cases."
        )
    val = _share(priors, "val", pos)
    share = f" (where {fmt('ppv', val)} had {pos})" if val is not None else ""
    if policy.startswith(_PREVALENCE_FREE):
        text += (
            f" The rule reads sensitivity and specificity only, so the threshold does not "
            f"depend on the validation prevalence{share}."
        )
    else:
        text += (
            f" The rule depends on prevalence: it was chosen at the validation prevalence"
            f"{share} (or the one its policy names); at another prevalence a different "
            "threshold would be best for it."
        )
    text += (
        " The prevalences below are those the page's numbers rest on: PPV and NPV elsewhere "
        f"on the page hold at the {run.split} split's, the calibrated probabilities at "
        "training's."
    )
    return f"<p>{esc(text)}</p>"


# --- conformal prediction sets --------------------------------------------------------------


def _refer_rate(record: Any) -> float | None:
    """The share of images referred (set not exactly one class): ``refer_rate``."""
    return metric_entry(record.get("refer_rate"))[0] if isinstance(record, dict) else None


_OVERALL = {  # metrics.json conformal key: (name, what it means)
    "refer_rate": ("Refer rate", "images whose set is not exactly one class: a reader looks"),
    "coverage": ("Coverage, all images", "images whose set holds their true class"),
    "mean_set_size": ("Mean set size", "classes per set; 1 is a single call"),
}


def conformal_body(run: LoadedRun) -> str:
    """The refer rate, coverage and set size of ``metrics.json``'s ``conformal`` (written by
    :func:`medbalance.evaluation.conformal.conformal_report`), overall and per class; a note
    when the run has none. Fields a record lacks show as ``n/a``."""
    record = run.result.get("conformal")
    if not isinstance(record, dict) or not record:
        return note(
            "conformal prediction sets and the refer rate (metrics.json holds none; "
            "evaluate with --conformal LEVEL adds them)"
        )
    level, needed = number(record.get("level")), number(record.get("needed_cases"))
    chosen = _TUNING_WORDS.get(str(record.get("chosen_on")), "")
    text = (
        f"Conformal prediction sets at level {fmt('ppv', level)}, calibrated class by class "
        + (f"on the {chosen} cases" if chosen else "")
        + ": each set holds the classes the model cannot rule out, so that each class's true "
        f"cases fall inside their set at least {fmt('ppv', level)} of the time, the rare class "
        "included. A set of more than one class (or none) means the model is unsure: refer the "
        "image to a reader rather than act on its call. A class whose coverage on the "
        f"{run.split} split falls clearly below the level did not keep that promise there."
    )
    if needed is not None:
        text += (
            f" A class needs at least {needed:.0f} tuning cases; with fewer it enters every set."
        )
    if record.get("chosen_on") == run.split:
        text += (
            f" Caution: measured on the {run.split} cases the sets were calibrated on, where "
            "coverage holds by construction; evaluate the test split."
        )
    rows = [[name, _with_ci(key, record.get(key)), meaning]
            for key, (name, meaning) in _OVERALL.items()]  # fmt: skip
    overall = table(["Measure", "Value (95% CI)", "What it means"], rows, align="lrl")
    return f"<p>{esc(text)}</p>{overall}{_conformal_classes(run, record, needed)}"


def _conformal_classes(run: LoadedRun, record: dict[str, Any], needed: float | None) -> str:
    per_class = record.get("per_class")
    if not isinstance(per_class, dict):
        return ""
    rows = []
    for name in run.classes:
        found = per_class.get(name)
        entry: dict[str, Any] = found if isinstance(found, dict) else {}
        tuning = number(entry.get("tuning_cases"))
        few = tuning is not None and needed is not None and tuning < needed
        rows.append([
            name,
            _with_ci("n", entry.get("n")),
            _with_ci("n", tuning) + (" (too few: always in the set)" if few else ""),
            _with_ci("coverage", entry.get("coverage")),
            _with_ci("mean_set_size", entry.get("mean_set_size")),
        ])  # fmt: skip
    head = ["Class", "Images", "Tuning cases", "Coverage (95% CI)", "Mean set size (95% CI)"]
    return table(head, rows)


def _with_ci(key: str, entry: Any) -> str:
    """A measure of the conformal record with its 95% CI: shares (coverage, refer rate) in
    percent, sizes to two decimals, counts whole."""
    value, ci = metric_entry(entry)
    share = key in ("coverage", "refer_rate")

    def shown(v: float | None) -> str:
        if v is None:
            return "n/a"
        if share:
            return f"{100 * v:.1f}"
        return f"{v:.0f}" if key == "n" else f"{v:.2f}"

    unit = "%" if share else ""
    if ci is None or None in ci:
        return shown(value) + (unit if value is not None else "")
    return f"{shown(value)}{unit} (95% CI {shown(ci[0])}–{shown(ci[1])}{unit})"
