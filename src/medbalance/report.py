"""One self-contained HTML page per run, in the order a clinician reads it.

:func:`write_report` reads a run folder (``metrics.json`` and ``predictions.csv`` from the
evaluation, ``config.json`` and ``history.csv`` from training, optionally ``best.safetensors``
and ``inspect/summary.json``) and writes ``report.html``: the headline numbers with 95% CIs and
where they come from, the data, the operating point (ROC, PR, sensitivity/specificity against the
threshold), the confusion matrix, every metric, calibration, the classes one by one, the training
run, and galleries of the most confident errors and Grad-CAM overlays given by the caller.

The page needs no network and no JavaScript: images are inline base64 PNGs, styles inline.
Every optional input that is missing becomes a short "not available" note.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.figures import array_img, figure_img, new_figure
from medbalance.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GalleryItem", "report_from_run", "write_report"]

_PERCENT = {"sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy"}
_METRICS = {  # key: (clinical name, what it means); {pos} is the positive class
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
_CARDS = {  # key: hint under a headline number; {v} is the value per 100
    "sensitivity": "finds {v} of 100 patients with {pos}",
    "specificity": "clears {v} of 100 patients without {pos}",
    "ppv": "{v} of 100 flagged patients have {pos}",
    "npv": "{v} of 100 cleared patients do not have {pos}",
    "auroc": "ranking quality, independent of the threshold",
    "balanced_accuracy": "mean sensitivity over the classes",
    "macro_f1": "F1 averaged over the classes",
    "accuracy": "share of all cases classified right",
}
_POLICIES = {
    "youden": "Youden's J: maximises sensitivity + specificity − 1",
    "f1": "maximises F1",
    "argmax": "the most probable class (argmax)",
    "prior": "probabilities re-weighted by the training class priors",
}
_SECTIONS = {
    "data": "Data",
    "operating-point": "Operating point",
    "confusion": "Confusion matrix",
    "metrics": "Metrics with 95% CIs",
    "calibration": "Calibration",
    "per-class": "Per-class results",
    "training": "Training run",
    "errors": "Most confident errors",
    "gradcam": "Grad-CAM",
}
_CSS = """
body{margin:0;background:#eef1f5;color:#1d2733;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,Helvetica,Arial,sans-serif}main,header>div{max-width:1180px;margin:0 auto;padding:0 20px}
header{background:#173f5f;color:#fff;padding:24px 0 20px;margin-bottom:22px}
h1{margin:0 0 6px;font-size:26px}h2{margin:0 0 12px;font-size:21px;color:#173f5f}
h3{font-size:16px;margin:18px 0 8px}dl{display:grid;gap:3px 16px;margin:10px 0 0;
grid-template-columns:max-content 1fr}dt{color:#b9cfe2}dd{margin:0}
nav{margin-top:14px;font-size:13px}nav a{color:#d5e6f5;margin-right:14px}
.cards{display:grid;gap:14px;margin:0 0 18px;
grid-template-columns:repeat(auto-fit,minmax(190px,1fr))}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 3px #0002;
border-top:4px solid #20639b}.card b{color:#44556a}.card .value{font-size:34px;font-weight:700;
font-variant-numeric:tabular-nums;line-height:1.25}.card small{display:block;color:#5b6b7d}
section{background:#fff;border-radius:10px;padding:20px 24px;margin:0 0 18px;
box-shadow:0 1px 3px #0002}.callout{background:#e8f3fb;border-left:5px solid #20639b;
padding:12px 16px;border-radius:6px;margin:0 0 18px}.callout.warn{background:#fff4e0;
border-color:#d9822b}.note{color:#5b6b7d;font-style:italic}.row{display:flex;gap:24px;
flex-wrap:wrap;align-items:flex-start}.row>*{flex:1 1 420px}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{padding:6px 10px;
border-bottom:1px solid #dde3ea;text-align:left;vertical-align:top}th{background:#f1f4f8}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}img.plot{width:100%;height:auto;display:block;
margin:8px 0}.config{display:grid;grid-template-columns:repeat(3,max-content minmax(0,1fr));
gap:2px 12px;font-size:13px}.config dt{color:#5b6b7d}.config dd{overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 7px;border-radius:4px;font-size:12px;font-weight:700;
color:#fff;background:#d9822b}.badge.error{background:#c0392b}.gallery{display:grid;gap:14px;
grid-template-columns:repeat(auto-fill,minmax(200px,1fr))}.gallery.cam{
grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}figure{margin:0;background:#f7f9fb;
border:1px solid #dde3ea;border-radius:8px;padding:8px}figure div{display:flex;gap:6px}
figure img{width:100%;min-width:0;height:auto;image-rendering:pixelated}
figcaption{font-size:13px;margin-top:4px}figcaption b{display:block;font-size:14px}
@media print{body{background:#fff}section,.card{box-shadow:none;border:1px solid #ccc}}
"""


@dataclass(frozen=True)
class GalleryItem:
    """One image of a gallery; ``heatmap`` (``H x W`` in [0, 1]) is overlaid when set.

    ``image`` is ``H x W`` or ``H x W x 3``, in [0, 1] or ``uint8``.
    """

    title: str
    image: np.ndarray
    heatmap: np.ndarray | None = None
    caption: str = ""


@dataclass(frozen=True)
class _Run:
    """What was read from a run folder; missing optional parts are empty or None."""

    path: Path
    result: dict[str, Any]  # metrics.json
    config: dict[str, Any]
    meta: dict[str, Any]  # checkpoint metadata
    history: list[dict[str, Any]] | None
    predictions: tuple[np.ndarray, np.ndarray] | None  # true class index, probabilities
    inspect: dict[str, Any] | None
    problems: dict[str, str]  # file name -> why it could not be read

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.result.get("class_names", [])]

    @property
    def positive(self) -> int | None:
        pos = self.result.get("positive_class")
        return self.classes.index(pos) if len(self.classes) == 2 and pos in self.classes else None

    @property
    def pos_name(self) -> str:
        return self.classes[self.positive] if self.positive is not None else "the class"

    @property
    def point(self) -> dict[str, Any]:
        return dict(self.result.get("threshold") or {})

    @property
    def split(self) -> str:
        return str(self.result.get("split", "test"))


def report_from_run(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report.html`` from the run's files alone (no image galleries)."""
    return write_report(Path(run_dir))


def write_report(
    run_dir: Path,
    *,
    gallery_errors: Sequence[GalleryItem] = (),
    gallery_cam: Sequence[GalleryItem] = (),
    out: Path | None = None,
) -> Path:
    """Write a self-contained ``report.html`` for an evaluated run.

    Args:
        run_dir: A run folder holding at least ``metrics.json``.
        gallery_errors: The most confident errors, drawn as given.
        gallery_cam: Images with Grad-CAM heat maps (``heatmap`` set), drawn with an overlay.
        out: Where to write (default ``RUN_DIR/report.html``); written atomically.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``metrics.json`` is missing (evaluate the run first).
        ValueError: ``metrics.json`` is not a JSON object, or a gallery image has a wrong shape.
    """
    run = _load(Path(run_dir))
    galleries = [  # first: a bad image fails before any plotting
        _gallery_section("errors", gallery_errors, "no images were given to the report"),
        _gallery_section("gradcam", gallery_cam, "no Grad-CAM maps were given to the report"),
    ]
    sections = [_data_section, _operating_section, _confusion_section, _metrics_section]
    sections += [_calibration_section, _per_class_section, _training_section]
    body = "".join(section(run) for section in sections) + "".join(galleries)
    title = f"medbalance report: {run.path.resolve().name}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"{_header(run, title)}<main>{_headline(run)}{body}</main></body></html>\n"
    )
    target = Path(out) if out is not None else run.path / "report.html"
    atomic_write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return target


# --- reading the run ------------------------------------------------------------------------


def _load(run_dir: Path) -> _Run:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; evaluate the run first (medbalance evaluate {run_dir})"
        )
    result = _read_json(path)
    classes = [str(c) for c in result.get("class_names", [])]
    problems: dict[str, str] = {}

    def optional(name: str, read: Callable[[Path], Any]) -> Any:
        if not (run_dir / name).is_file():
            return None
        try:
            return read(run_dir / name)
        except (OSError, ValueError, KeyError) as error:  # shown on the page instead
            problems[name] = f"{type(error).__name__}: {error}"
            return None

    meta = optional("best.safetensors", _read_metadata) or {}
    return _Run(
        path=run_dir,
        result=result,
        config=optional("config.json", _read_json) or meta.get("config") or {},
        meta=meta,
        history=optional("history.csv", _read_history),
        predictions=optional("predictions.csv", lambda p: _read_predictions(p, classes)),
        inspect=optional("inspect/summary.json", _read_json),
        problems=problems,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError

    from medbalance.checkpoint import read_metadata

    try:
        return read_metadata(path)
    except SafetensorError as error:  # a damaged file: say so on the page
        raise ValueError(str(error)) from error


def _read_history(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v if k == "phase_name" else _float(v) for k, v in row.items()} for row in rows]


def _read_predictions(path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [f"prob_{c}" for c in classes]
    missing = [c for c in ["true_label", *columns] if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError("no rows" if not rows else f"columns {missing} are missing")
    if unknown := sorted({r["true_label"] for r in rows} - set(classes)):
        raise ValueError(f"true labels {unknown} are not among the classes {classes}")
    labels = np.array([classes.index(r["true_label"]) for r in rows])
    return labels, np.array([[_float(r[c]) for c in columns] for r in rows])


def _float(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _num(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _entry(entry: Any) -> tuple[float | None, tuple[float | None, float | None] | None]:
    """``(value, ci)`` of a metric stored as a number or as ``{"value": .., "ci": [..]}``."""
    if not isinstance(entry, dict):
        return _num(entry), None
    ci = entry.get("ci")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return _num(entry.get("value")), (_num(ci[0]), _num(ci[1]))
    return _num(entry.get("value")), None


# --- formatting -----------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text))


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if key in _PERCENT else f"{value:.3f}"


def _fmt_ci(key: str, ci: tuple[float | None, float | None] | None) -> str:
    if ci is None:
        return "—"
    low, high = ci
    if low is None or high is None:
        return "n/a"
    return f"{100 * low:.1f}–{100 * high:.1f}%" if key in _PERCENT else f"{low:.3f}–{high:.3f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A table of escaped text; ``align`` has ``l`` or ``r`` per column (default ``lrr..``)."""
    align = align or "l" + "r" * (len(head) - 1)

    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(
            f"<{tag}{' class=num' if a == 'r' else ''}>{_e(v)}</{tag}>"
            for a, v in zip(align, values, strict=True)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">Not available: {_e(text)}.</p>'


def _section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(_SECTIONS[key])}</h2>{body}</section>'


def _threshold_text(point: dict[str, Any]) -> str:
    policy, value = str(point.get("policy", "unknown")), _num(point.get("value"))
    how = _POLICIES.get(policy, policy)
    return f"{value:.3f} ({how})" if value is not None else how


# --- images ---------------------------------------------------------------------------------


# --- header ---------------------------------------------------------------------------------


def _remedy(config: dict[str, Any]) -> str:
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


def _header(run: _Run, title: str) -> str:
    config, point = run.config, run.point
    model, size = config.get("model") or run.meta.get("model"), config.get("size")
    model = f"{model or 'unknown'}" + (f" at {size}×{size} px" if size else "")
    split_counts = _counts(run).get(run.split, {})
    cases = ", ".join(f"{split_counts[c]} {c}" for c in run.classes if c in split_counts)
    rows = {
        "Data": config.get("data") or (run.inspect or {}).get("source") or "unknown",
        "Model": model + (" (ImageNet-pretrained)" if config.get("pretrained") else ""),
        "Imbalance remedy": _remedy(config),
        "Evaluated on": f"the {run.split} split: {run.result.get('n', '?')} images"
        + (f" ({cases})" if cases else ""),
        "Decision threshold": f"{_threshold_text(point)}, chosen on {point.get('chosen_on', '?')}",
    }
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows.items())
    links = "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name in _SECTIONS.items())
    return f"<header><div><h1>{_e(title)}</h1><dl>{meta}</dl><nav>{links}</nav></div></header>"


def _headline(run: _Run) -> str:
    metrics: dict[str, Any] = run.result.get("metrics") or {}
    keys = ["sensitivity", "specificity", "ppv", "npv", "auroc"]
    if run.positive is None:
        keys = [k for k in ("balanced_accuracy", "auroc", "macro_f1", "accuracy") if k in metrics]
    cards = []
    for key in keys:
        value, ci = _entry(metrics.get(key))
        per_100 = f"{100 * value:.0f}" if value is not None else "n/a"
        hint = _CARDS[key].format(v=per_100, pos=run.pos_name)
        ci_text = "no confidence interval" if ci is None else f"95% CI {_fmt_ci(key, ci)}"
        cards.append(
            f'<div class="card"><b>{_e(_METRICS[key][0].split(" (")[0])}</b>'
            f'<div class="value">{_e(_fmt(key, value))}</div>'
            f"<small>{_e(ci_text)}</small><small>{_e(hint)}</small></div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>{_provenance(run)}'


def _provenance(run: _Run) -> str:
    split, chosen = run.split, str(run.point.get("chosen_on", "unknown"))
    text = (
        f"All numbers on this page come from the {split} split ({run.result.get('n', '?')} "
        f"images). The decision threshold was chosen on {chosen}"
        + (" (the validation data), never on the test data" if chosen == "val" else "")
        + ". Intervals are 95% confidence intervals."
    )
    if split == "val" or chosen == split:
        text += (
            f" Caution: the {split} split also chose the threshold or the epoch, so these "
            "numbers are optimistic; report the test split."
        )
        return f'<div class="callout warn">{_e(text)}</div>'
    if split == "test":
        text += " The test split played no part in training, model selection or the threshold."
    return f'<div class="callout">{_e(text)}</div>'


# --- data -----------------------------------------------------------------------------------


def _counts(run: _Run) -> dict[str, dict[str, int]]:
    """Images per split and class: from metrics.json, else the inspection, else the checkpoint."""
    counts = run.result.get("counts") or (run.inspect or {}).get("counts") or {}
    if not counts and run.meta.get("train_counts") is not None:
        counts = {"train": run.meta["train_counts"]}
    tables = {}
    for split, per_class in counts.items():
        if isinstance(per_class, list) and len(per_class) == len(run.classes):
            per_class = dict(zip(run.classes, per_class, strict=True))  # counts in class order
        if split != "overall" and isinstance(per_class, dict):
            tables[split] = {str(c): int(n) for c, n in per_class.items()}
    return tables


def _data_section(run: _Run) -> str:
    counts = _counts(run)
    if counts:
        table = _counts_table(counts, run.classes)
        chart = figure_img(_plot_counts(counts, run.classes), "images per class and split")
        parts = [f'<div class="row"><div>{table}</div><div>{chart}</div></div>']
    else:
        parts = [_note("class counts (in neither metrics.json nor inspect/summary.json)")]
    parts.append(f"<h3>Warnings about the data</h3>{_findings(run)}")
    if run.inspect is None:
        parts.append(_note("a data inspection (medbalance inspect DATA --out RUN_DIR/inspect)"))
    return _section("data", "".join(parts))


def _counts_table(counts: dict[str, dict[str, int]], classes: list[str]) -> str:
    totals = {split: sum(per_class.values()) for split, per_class in counts.items()}
    rows: list[list[object]] = []
    for name in classes:
        cells = [(v.get(name, 0), v.get(name, 0) / max(totals[s], 1)) for s, v in counts.items()]
        rows.append([name, *(f"{n} ({share:.0%})" for n, share in cells)])
    rows.append(["Total", *totals.values()])
    ratios = [max(v.values()) / min(v.values()) if min(v.values()) else 0 for v in counts.values()]
    rows.append(["Imbalance ratio", *(f"{r:.2f} : 1" if r else "n/a" for r in ratios)])
    note = "<p>Imbalance ratio: the largest class count over the smallest.</p>"
    return _table(["Class", *counts], rows) + note


def _findings(run: _Run) -> str:
    """The warnings of metrics.json and the findings of inspect/summary.json, as a list."""
    items = [("warning", "", str(w), 0) for w in run.result.get("warnings") or []]
    for finding in (run.inspect or {}).get("findings", []):
        level, code = str(finding.get("level", "warning")), str(finding.get("code", ""))
        items.append(
            (level, code, str(finding.get("message", "")), len(finding.get("items") or []))
        )
    if not items:
        return "<p>None were raised.</p>"
    lines = [
        f'<li><span class="badge {_e(level)}">{_e(level)}</span> '
        + (f"<b>{_e(code)}</b>: " if code else "")
        + _e(message + (f" ({n} listed in inspect/summary.json)" if n else ""))
        + "</li>"
        for level, code, message, n in items
    ]
    return f"<ul>{''.join(lines)}</ul>"


def _plot_counts(counts: dict[str, dict[str, int]], classes: list[str]) -> Figure:
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


# --- operating point ------------------------------------------------------------------------


def _rates(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Sensitivity, specificity and PPV when ``score >= threshold`` is called positive."""
    flagged = score >= threshold
    ppv = float(y[flagged].mean()) if flagged.any() else math.nan
    return float(flagged[y].mean()), float((~flagged[~y]).mean()), ppv


def _no_predictions(run: _Run, what: str) -> str:
    why = run.problems.get("predictions.csv", "predictions.csv not found in the run folder")
    return _note(f"{what} (needs predictions.csv: {why})")


def _operating_section(run: _Run) -> str:
    if run.predictions is None:
        return _section("operating-point", _no_predictions(run, "the ROC and PR curves"))
    labels, probs = run.predictions
    threshold, pos = _num(run.point.get("value")), run.positive
    if pos is None or threshold is None:
        text = (
            f"<p>{len(run.classes)} classes: each curve is one class against the rest "
            f"(one-vs-rest). Decisions use {_e(_threshold_text(run.point))}, so there is no "
            "single threshold to mark.</p>"
        )
        return _section(
            "operating-point", text + figure_img(_plot_curves(run), "one-vs-rest curves")
        )
    y, score = labels == pos, probs[:, pos]
    if y.all() or not y.any():
        return _section("operating-point", _note(f"curves (the {run.split} split has one class)"))
    sens, spec, _ = _rates(y, score, threshold)
    text = (
        f"<p>At the chosen threshold {threshold:.3f} the model flags "
        f"{int((score >= threshold).sum())} of {len(y)} images as {_e(run.pos_name)}: "
        f"sensitivity {100 * sens:.1f}%, specificity {100 * spec:.1f}%. The red dot marks this "
        "operating point, the open square the naive threshold 0.5.</p>"
    )
    curves = figure_img(_plot_curves(run, threshold), "ROC and precision-recall curves")
    sweep = figure_img(
        _plot_sweep(y, score, threshold, run.pos_name), "rates against the threshold"
    )
    return _section("operating-point", f"{text}{curves}<h3>Choosing the threshold</h3>{sweep}")


def _plot_curves(run: _Run, threshold: float | None = None) -> Figure:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    assert run.predictions is not None
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
            sens, spec, ppv = _rates(y, score, t)
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


def _plot_sweep(y: np.ndarray, score: np.ndarray, threshold: float, pos: str) -> Figure:
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


# --- confusion matrix -----------------------------------------------------------------------


def _confusion_section(run: _Run) -> str:
    matrix = np.asarray(run.result.get("confusion_matrix") or [], dtype=np.int64)
    if matrix.shape != (len(run.classes), len(run.classes)):
        return _section("confusion", _note("a confusion matrix of the classes in metrics.json"))
    text = (
        "<p>Rows are the true classes (reference standard), columns the model's decision at the "
        "operating point. On the right each row is in percent: the diagonal is each class's "
        "sensitivity.</p>"
    )
    figure = figure_img(_plot_confusion(matrix, run.classes), "confusion matrix")
    return _section("confusion", text + figure)


def _plot_confusion(matrix: np.ndarray, classes: list[str]) -> Figure:
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


# --- metrics --------------------------------------------------------------------------------


def _metrics_section(run: _Run) -> str:
    metrics: dict[str, Any] = run.result.get("metrics") or {}
    if not metrics:
        return _section("metrics", _note("metrics (metrics.json holds none)"))
    default = run.result.get("at_default_threshold") or {}
    at_default, reference = default.get("metrics") or {}, default.get("threshold", 0.5)
    if reference == run.point.get("policy") or not set(at_default) & set(metrics):
        at_default = {}  # the same rule, or nothing to compare
    head = ["Metric", "At the operating point", "95% CI"]
    if at_default:
        head.append(f"At threshold {reference}" if _num(reference) else f"With {reference}")
    rows = []
    order = [*(k for k in _METRICS if k in metrics), *(k for k in metrics if k not in _METRICS)]
    for key in order:  # clinical order first, then anything else metrics.json holds
        (value, ci), (name, meaning) = _entry(metrics[key]), _METRICS.get(key, (key, ""))
        compare = [_fmt(key, _entry(at_default.get(key))[0])] if at_default else []
        rows.append(
            [name, _fmt(key, value), _fmt_ci(key, ci), *compare, meaning.format(pos=run.pos_name)]
        )
    text = (
        f"Operating point: {_threshold_text(run.point)}, chosen on "
        f"{run.point.get('chosen_on', '?')}."
    )
    if "ppv" in metrics or "npv" in metrics:
        text += (
            " PPV and NPV depend on how common the disease is; they hold for a prevalence like "
            f"that of the {run.split} split."
        )
    text = f"<p>{_e(text)}</p>"
    if all(_entry(entry)[1] is None for entry in metrics.values()):
        text += _note("confidence intervals (metrics.json has none; evaluate with bootstrap > 0)")
    table = _table([*head, "What it means"], rows, align="l" + "r" * (len(head) - 1) + "l")
    return _section("metrics", text + table)


# --- calibration ----------------------------------------------------------------------------


def _calibration_section(run: _Run) -> str:
    metrics = run.result.get("metrics") or {}
    scores = []
    for key in [k for k in ("ece", "brier") if k in metrics]:
        value, ci = _entry(metrics[key])
        interval = f" (95% CI {_fmt_ci(key, ci)})" if ci is not None else ""
        scores.append(f"{_METRICS[key][0]} {_fmt(key, value)}{interval}")
    text = (
        "<p>A well calibrated model that says 30% is right about 30% of the time: its points lie "
        f"on the diagonal. {_e('; '.join(scores) + '.' if scores else '')}</p>"
    )
    if run.predictions is None:
        return _section("calibration", text + _no_predictions(run, "the reliability diagram"))
    labels, probs = run.predictions
    if run.positive is not None:
        y, prob = labels == run.positive, probs[:, run.positive]
        what = f"predicted probability of {run.pos_name}"
        outcomes = (f"with {run.pos_name}", f"without {run.pos_name}")
    else:
        prob, y = probs.max(axis=1), probs.argmax(axis=1) == labels
        what, outcomes = "confidence in the most probable class", ("correct", "wrong")
    if y.all() or not y.any():
        return _section("calibration", text + _note("a reliability diagram (one outcome only)"))
    figure = figure_img(_plot_reliability(y, prob, what, outcomes), "reliability diagram")
    return _section("calibration", text + figure)


def _plot_reliability(
    y: np.ndarray, prob: np.ndarray, what: str, outcomes: tuple[str, str]
) -> Figure:
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, prob, n_bins=10, strategy="uniform")
    figure, (ax, hist) = new_figure(12, 5.0, ncols=2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    ax.plot(predicted, observed, "o-", lw=2, ms=7, label="model (10 equal-width bins)")
    ax.set(xlabel=what.capitalize(), ylabel="Observed frequency", title="Reliability diagram")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    hist.hist([prob[y], prob[~y]], bins=np.linspace(0, 1, 21), stacked=True, label=list(outcomes))
    hist.set(
        xlabel=what.capitalize(), ylabel="Images", title="Spread of the predictions", xlim=(0, 1)
    )
    hist.legend(fontsize=9)
    return figure


# --- per class ------------------------------------------------------------------------------


def _per_class_section(run: _Run) -> str:
    per_class: dict[str, Any] = run.result.get("per_class") or {}
    if not per_class:
        return _section("per-class", _note("per-class results (metrics.json holds none)"))
    keys = ["sensitivity", "specificity", "ppv", "npv", "f1"]
    keys = [k for k in keys if any(k in v for v in per_class.values())]
    rows = []
    for name, values in per_class.items():
        cells = []
        for key in keys:
            value, ci = _entry(values.get(key))
            cells.append(_fmt(key, value) + (f" ({_fmt_ci(key, ci)})" if ci else ""))
        rows.append([name, values.get("support", "?"), *cells])
    head = ["Class", "Cases", *(_METRICS[k][0].split(" (")[0] for k in keys)]
    text = "<p>Each class against all the others at the operating point; 95% CIs in brackets.</p>"
    return _section("per-class", text + _table(head, rows))


# --- training -------------------------------------------------------------------------------


def _chosen_epoch(run: _Run, select: str) -> tuple[int | None, str]:
    """The epoch of the evaluated checkpoint and where that was read."""
    for value, where in (
        (run.meta.get("epoch"), "the checkpoint"),
        (run.result.get("checkpoint_epoch"), "metrics.json"),
    ):
        if isinstance(value, int):
            return value, where
    scores = [row.get(f"val_{select}", math.nan) for row in run.history or []]
    if not scores or all(math.isnan(s) for s in scores):
        return None, ""
    best = np.nanargmin(scores) if select == "loss" else np.nanargmax(scores)
    return int((run.history or [])[best].get("epoch", best)), "the best epoch in history.csv"


def _training_section(run: _Run) -> str:
    parts, select = [], str(run.config.get("select", "auroc"))
    epoch, where = _chosen_epoch(run, select)
    if run.history:
        said = f"from epoch {epoch} (read from {where})" if epoch is not None else "unknown"
        parts.append(
            f"<p>The evaluated checkpoint is {_e(said)}: the epoch with the best validation "
            f"{_e(select)}.</p>"
        )
        parts.append(
            figure_img(_plot_history(run.history, select, epoch, run.config), "training curves")
        )
    else:
        why = run.problems.get("history.csv", "history.csv not found in the run folder")
        parts.append(_note(f"training curves ({why})"))
    if run.config:
        items = "".join(
            f"<dt>{_e(k)}</dt><dd>{_e(v if isinstance(v, str) else json.dumps(v))}</dd>"
            for k, v in sorted(run.config.items())
        )
        parts.append(f'<h3>Configuration</h3><dl class="config">{items}</dl>')
    else:
        parts.append(_note("the configuration (config.json not found)"))
    for name, why in run.problems.items():
        if name not in ("history.csv", "predictions.csv"):
            parts.append(f'<p class="note">{_e(name)} could not be read: {_e(why)}</p>')
    return _section("training", "".join(parts))


def _plot_history(
    history: list[dict[str, Any]], select: str, chosen: int | None, config: dict[str, Any]
) -> Figure:
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


# --- galleries ------------------------------------------------------------------------------


def _gallery_section(key: str, items: Sequence[GalleryItem], missing: str) -> str:
    if not items:
        return _section(key, _note(missing))
    from medbalance.gradcam import _as_rgb, overlay

    figures = []
    for item in items:
        try:
            rgb = np.round(_as_rgb(item.image) * 255).astype(np.uint8)
            image = array_img(rgb, item.title)
            if item.heatmap is not None:
                cam = array_img(overlay(rgb, item.heatmap), f"Grad-CAM: {item.title}")
                image = f"<div>{image}{cam}</div>"
        except ValueError as error:
            raise ValueError(f"gallery image {item.title!r}: {error}") from error
        caption = f"<b>{_e(item.title)}</b>{_e(item.caption)}"
        if item.heatmap is not None and not np.nanmax(item.heatmap) > 0:
            caption += "<br>No region raised the score (an all-zero map)."
        figures.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    intro = {
        "errors": "The errors the model was most sure about: look for labels to re-check, and for "
        "image features (markers, devices, borders) the model may have learnt instead of the "
        "disease.",
        "gradcam": "Left: the image; right: the Grad-CAM heat map (red: regions that raised the "
        "score most). It shows what the network used, not whether that is clinically right.",
    }[key]
    kind = "gallery cam" if any(item.heatmap is not None for item in items) else "gallery"
    return _section(key, f'<p>{_e(intro)}</p><div class="{kind}">{"".join(figures)}</div>')
