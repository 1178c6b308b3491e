"""The result of a remedy comparison and its four files: comparison .csv, .md, .json and .html.

:class:`Comparison` holds the summary rows (they mirror ``comparison.csv``), the paired
comparisons against the reference remedy, the verdict and the notes. :func:`write_outputs`
writes the four files to the comparison folder, each atomically. The HTML page adds a bar chart
of the test metrics per remedy (:func:`bar_figure`, its legend beside the bars) and, for binary
tasks, the ROC curves and operating points of every run (drawn with
:mod:`medbalance.core.figures`), and links each run's ``report.html``. Its tables fit a 1,280 px
screen: each summary cell puts the CI on a line under mean ± sd, and headers wrap.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.comparison.stats import METRICS, FinishedRun, format_value, metric_label
from medbalance.core.figures import figure_img, new_figure
from medbalance.core.files import atomic_write_text, spreadsheet_safe
from medbalance.core.run_folder import strict_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Comparison", "bar_figure", "write_outputs"]


@dataclass
class Comparison:
    """The result of :func:`~medbalance.workflows.compare.compare` or
    :func:`~medbalance.workflows.compare.collect`; ``rows`` mirror ``comparison.csv``."""

    out: Path
    metric: str
    reference: str
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    verdict: str
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    paired_oof: list[dict[str, Any]] = field(default_factory=list)  # compare --folds
    oof_cases: int = 0
    task: str = "binary"  # "binary", "multiclass" or "ordinal" (stats.task_kind)

    def label(self, key: str) -> str:
        """The name of metric ``key`` for this task (``Macro AUROC`` for multi-class runs)."""
        return metric_label(key, self.task)

    def summary_table(self, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the summary table as text: ``comparison.md``'s, or, ``compact``,
        short headers and mean ± sd without the CI (for a terminal)."""
        head, rows, _, _ = _tables(self, compact=compact)
        return head, rows


_CSS = """
body{margin:0;background:#eef1f5;color:#1d2733;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,Helvetica,Arial,sans-serif}main,header>div{max-width:1180px;margin:0 auto;padding:0 20px}
header{background:#173f5f;color:#fff;padding:24px 0 20px;margin-bottom:22px}
h1{margin:0 0 6px;font-size:26px}h2{margin:0 0 12px;font-size:21px;color:#173f5f}
section{background:#fff;border-radius:10px;padding:20px 24px;margin:0 0 18px;
box-shadow:0 1px 3px #0002}.callout{background:#e8f3fb;border-left:5px solid #20639b;
padding:12px 16px;border-radius:6px;margin:0 0 18px}.callout.warn{background:#fff4e0;
border-color:#d9822b}.note{color:#5b6b7d;font-style:italic}
table{border-collapse:collapse;margin:6px 0 12px;width:100%;font-size:14px}th,td{padding:6px 8px;
border-bottom:1px solid #dde3ea;text-align:left;vertical-align:top}th{background:#f1f4f8}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num,td.value{white-space:normal}td.value small{display:block;color:#5b6b7d;white-space:nowrap}
img.plot{width:100%;height:auto;display:block;margin:8px 0}
.wide{overflow-x:auto;max-width:100%}
"""
_SHORT = {
    "balanced_accuracy": "Bal. acc.",
    "sensitivity": "Sens.",
    "specificity": "Spec.",
    "quadratic_kappa": "QWK",
    "mean_abs_error": "MAE",
    "within_one_accuracy": "±1 acc.",
}
_BARS = (
    "auroc", "balanced_accuracy", "sensitivity", "specificity", "ppv", "f1", "macro_f1",
    "quadratic_kappa", "within_one_accuracy",
)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value) if isinstance(value, int) else spreadsheet_safe(str(value))


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_cell(row.get(c)) for c in columns] for row in rows])
    return buffer.getvalue()


def _value_cell(row: dict[str, Any], key: str, compact: bool = False) -> str:
    mean, sd = row.get(f"{key}_mean", math.nan), row.get(f"{key}_sd", math.nan)
    if math.isnan(mean):
        return "n/a"
    text = format_value(mean) + (f" ± {format_value(sd)}" if not math.isnan(sd) else "")
    if compact:
        return text
    lo, hi = row.get(f"{key}_ci_low", math.nan), row.get(f"{key}_ci_high", math.nan)
    return text + (f" [{format_value(lo)}, {format_value(hi)}]" if not math.isnan(lo) else "")


def _keys(comparison: Comparison) -> list[str]:
    """The metrics of the rows, the verdict's first (quadratic kappa leads for grades)."""
    keys = [k for k in METRICS if any(f"{k}_mean" in r for r in comparison.rows)]
    return sorted(keys, key=lambda k: k != comparison.metric)


def _tables(
    comparison: Comparison, compact: bool = False
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(head, rows) of the summary and of the paired comparison, as text cells."""
    keys = _keys(comparison)
    names = [_SHORT.get(k, comparison.label(k)) if compact else comparison.label(k) for k in keys]
    head = ["remedy", "seeds", *names, "time (s)" if compact else "train time (s)"]
    body = []
    for row in comparison.rows:
        seconds = row["train_seconds_mean"]
        sd = row["train_seconds_sd"]
        time_cell = "n/a" if math.isnan(seconds) else f"{seconds:.1f}"
        time_cell += f" ± {sd:.1f}" if not math.isnan(sd) else ""
        body.append(
            [
                row["remedy"],
                str(row["seeds"]),
                *(_value_cell(row, k, compact) for k in keys),
                time_cell,
            ]
        )
    paired_head, paired_body = _paired_table(comparison, comparison.paired)
    return head, body, paired_head, paired_body


def _paired_table(
    comparison: Comparison, entries: Sequence[dict[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    ref = comparison.reference
    paired_head = ["remedy", "seed", "metric", ref, "remedy value", f"remedy − {ref}", "95% CI"]
    paired_head += ["p", "outside the noise"]
    paired_body = [
        [
            e["remedy"],
            str(e["seed"]),
            comparison.label(e["metric"]),
            format_value(e["reference_value"]),
            format_value(e["remedy_value"]),
            format_value(e["difference"], True),
            f"[{format_value(e['ci_low'], True)}, {format_value(e['ci_high'], True)}]",
            format_value(e["p_value"]),
            "yes" if e["outside_noise"] else "no",
        ]
        for e in entries
    ]
    return paired_head, paired_body


_OOF_READING = (
    "compare --folds: every remedy ran as a cv folder. The table above and the first pairing use "
    "each fold ensemble's test cases; this pairing uses the out-of-fold predictions of all "
    "train+val cases, the same cases for every remedy (the folds depend on the seed only), each "
    "at its own OOF-chosen operating point. More cases give tighter intervals; they are train+val "
    "cases, not the held-out test split."
)


def _context(runs: Mapping[str, list[FinishedRun]]) -> str:
    run = next(iter(runs.values()))[0]
    config, result = run.config, run.result
    counts = (result.get("counts") or {}).get(result.get("split", "test"), {})
    cases = "; ".join(f"{c}: {n}" for c, n in counts.items())
    seeds = sorted({r.seed for rs in runs.values() for r in rs})
    point = result.get("threshold") or {}
    return (
        f"data {config.get('data', '?')}; model {config.get('model', '?')} at "
        f"{config.get('size', '?')} px; {config.get('epochs', '?')} epochs; seeds "
        f"{', '.join(map(str, seeds))}; {result.get('split', 'test')} split n={result.get('n')}"
        + (f" ({cases})" if cases else "")
        + f"; operating point per run: {point.get('policy', '?')}, chosen on "
        f"{point.get('chosen_on', 'val')}"
    )


_READING = (
    "Each cell: mean ± sd over seeds [95% CI]. The CI is the stratified bootstrap interval that "
    "the lowest seed's run stored in its metrics.json (uncertainty from the test cases of one "
    "run); the sd is the spread between seeds. Metrics other than AUROC are taken at each run's "
    "operating point, chosen on its validation split. Train time sums the per-epoch times in "
    "history.csv. Paired comparisons resample the same test cases for both runs (seed k with "
    "seed k, each at its own threshold); a difference is outside the noise when its 95% CI "
    "excludes 0."
)
_TASK_READING = {
    "multiclass": "Multi-class: AUROC is the macro mean of the one-vs-rest AUROCs, sensitivity and "
    "specificity are macro averages, and every run is scored at its stored decision rule; the "
    "remedies are paired on macro AUROC and balanced accuracy.",
    "ordinal": "Ordinal grades: AUROC is the macro one-vs-rest AUROC; quadratic kappa is Cohen's "
    "kappa with quadratic weights (a miss by two grades costs four times a miss by one), mean abs. "
    "error is in grade steps (lower is better), within-one accuracy is the share of cases at most "
    "one grade off; the remedies are paired on macro AUROC, balanced accuracy and quadratic kappa.",
}


def _reading(comparison: Comparison) -> str:
    """How to read the summary table, with what the metrics mean for this task."""
    extra = _TASK_READING.get(comparison.task)
    return f"{_READING} {extra}" if extra else _READING


def _markdown(
    comparison: Comparison, runs: Mapping[str, list[FinishedRun]], note: str | None
) -> str:
    head, body, paired_head, paired_body = _tables(comparison)

    def table(h: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        lines = ["| " + " | ".join(h) + " |", "|---|" + "--:|" * (len(h) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

    parts = ["# Remedy comparison", ""]
    if note:
        parts += [f"> **{note}**", ""]
    parts += [f"**{comparison.verdict}**", "", _context(runs) + ".", ""]
    parts += ["## Test metrics at each run's operating point", "", table(head, body), ""]
    parts += [_reading(comparison), ""]
    parts += [f"## Paired comparison against {comparison.reference}", ""]
    parts += [table(paired_head, paired_body) if paired_body else "No other remedy.", ""]
    if comparison.paired_oof:
        oof_head, oof_body = _paired_table(comparison, comparison.paired_oof)
        parts += [
            f"## Paired comparison on out-of-fold cases (n={comparison.oof_cases})",
            "",
            table(oof_head, oof_body),
            "",
            _OOF_READING,
            "",
        ]
    if comparison.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in comparison.notes), ""]
    return "\n".join(parts)


def _oof_section(comparison: Comparison, table: Any) -> str:
    if not comparison.paired_oof:
        return ""
    head, body = _paired_table(comparison, comparison.paired_oof)
    return (
        f"<h2>Paired comparison on out-of-fold cases (n={comparison.oof_cases})</h2>"
        f'{table(head, body)}<p class="note">{html.escape(_OOF_READING)}</p>'
    )


def _summary_html(comparison: Comparison) -> str:
    """The summary table for the page: each cell holds mean ± sd, then the CI on a line of its
    own, so that the table fits a 1,280 px screen without scrolling sideways."""
    keys = _keys(comparison)
    head = ["remedy", "seeds", *(comparison.label(k) for k in keys), "train time (s)"]
    cells = "".join(
        f"<th{'' if k == 0 else ' class=num'}>{html.escape(h)}</th>" for k, h in enumerate(head)
    )
    body = []
    for row in comparison.rows:
        values = []
        for key in keys:
            mean = format_value(row.get(f"{key}_mean", math.nan))
            sd, lo = row.get(f"{key}_sd", math.nan), row.get(f"{key}_ci_low", math.nan)
            text = html.escape(mean) + (f" ±&nbsp;{format_value(sd)}" if not math.isnan(sd) else "")
            if not math.isnan(lo):
                hi = format_value(row.get(f"{key}_ci_high", math.nan))
                text += f"<small>[{format_value(lo)}, {html.escape(hi)}]</small>"
            values.append(f"<td class='num value'>{text}</td>")
        seconds, sd = row["train_seconds_mean"], row["train_seconds_sd"]
        time = "n/a" if math.isnan(seconds) else f"{seconds:.1f}"
        time += f" ±&nbsp;{sd:.1f}" if not math.isnan(sd) else ""
        body.append(
            f"<tr><td>{html.escape(str(row['remedy']))}</td><td class=num>{row['seeds']}</td>"
            f"{''.join(values)}<td class='num value'>{time}</td></tr>"
        )
    table = f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="wide">{table}</div>'


def bar_figure(comparison: Comparison) -> Figure:
    """Grouped bars of the test metrics per remedy, with ± sd over seeds (one seed: the run's
    95% CI) as error bars, and the legend beside the axes, where it covers no bar."""
    keys = [k for k in _BARS if k in _keys(comparison)]
    figure, (ax,) = new_figure(11, 4.6)
    n = len(comparison.rows)
    width = 0.8 / max(n, 1)
    span = [0.0, 1.05]  # metrics are rates in [0, 1]; kappa can be negative, MAE above 1
    for k, row in enumerate(comparison.rows):
        means = np.array([row[f"{key}_mean"] for key in keys])
        if row["seeds"] >= 2:
            err: Any = np.array([row[f"{key}_sd"] for key in keys])
        else:
            lo = np.array([row[f"{key}_ci_low"] for key in keys])
            hi = np.array([row[f"{key}_ci_high"] for key in keys])
            err = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
        x = np.arange(len(keys)) + (k - (n - 1) / 2) * width
        ends = means + np.array([-1, 1])[:, None] * (err if np.ndim(err) == 2 else [err, err])
        ends = ends[np.isfinite(ends)]
        if ends.size:
            span = [min(span[0], float(ends.min()) - 0.05), max(span[1], float(ends.max()))]
        ax.bar(x, means, width, yerr=err, capsize=3, color=f"C{k % 10}", label=row["remedy"])
    ax.set_xticks(np.arange(len(keys)), [comparison.label(k) for k in keys])
    ax.set(ylim=tuple(span), ylabel="test value", title="Test metrics per remedy")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    figure.legend(fontsize=9, loc="outside right upper", title="remedy", title_fontsize=9)
    return figure


def _plot_bars(comparison: Comparison) -> str:
    return figure_img(bar_figure(comparison), "bar chart of test metrics per remedy", dpi=130)


def _plot_roc(comparison: Comparison, runs: Mapping[str, list[FinishedRun]]) -> str:
    from sklearn.metrics import roc_curve

    figure, (ax,) = new_figure(6.4, 6)
    for k, row in enumerate(comparison.rows):
        for j, run in enumerate(runs[row["remedy"]]):
            if run.positive is None:
                continue
            y = run.labels == run.positive
            if y.all() or not y.any():
                continue
            fpr, tpr, _ = roc_curve(y, run.probs[:, run.positive])
            label = f"{row['remedy']} (AUROC {format_value(row['auroc_mean'])})" if j == 0 else None
            ax.plot(fpr, tpr, color=f"C{k % 10}", lw=1.8 if j == 0 else 1, alpha=1 - 0.4 * (j > 0),
                    label=label)  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity",
           ylabel="Sensitivity", title="ROC curves, every run")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return figure_img(figure, "ROC curves of every run", dpi=130)


def _plot_points(comparison: Comparison, runs: Mapping[str, list[FinishedRun]]) -> str:
    figure, (ax,) = new_figure(6.4, 6)
    markers = "osD^vP*Xhp"
    for k, row in enumerate(comparison.rows):
        points = [(1 - r.value("specificity"), r.value("sensitivity")) for r in runs[row["remedy"]]]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, ls="", marker=markers[k % len(markers)], ms=9, color=f"C{k % 10}",
                alpha=0.8, clip_on=False, label=row["remedy"])  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal",
           xlabel="1 − specificity", ylabel="Sensitivity",
           title="Operating points (chosen on val), test split")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    alt = "sensitivity against 1 - specificity of every run's operating point"
    return figure_img(figure, alt, dpi=130)


def _data_title(runs: Mapping[str, list[FinishedRun]]) -> str:
    """``synthetic_xrays (2 classes)``: the data's short name and its number of classes."""
    run = next(iter(runs.values()))[0]
    data = str(run.config.get("data") or "unknown data").rstrip("/\\")
    classes = run.result.get("class_names") or []
    return (Path(data).name or data) + (f" ({len(classes)} classes)" if classes else "")


def _html(comparison: Comparison, runs: Mapping[str, list[FinishedRun]], note: str | None) -> str:
    def e(text: object) -> str:
        return html.escape(str(text))

    def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        def cells(tag: str, values: Sequence[str]) -> str:
            return "".join(
                f"<{tag}{'' if k == 0 else ' class=num'}>{e(v)}</{tag}>"
                for k, v in enumerate(values)
            )

        body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
        table = f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"
        return f'<div class="wide">{table}</div>'  # a wide table scrolls inside its box

    _, _, paired_head, paired_body = _tables(comparison)
    binary = all(r.positive is not None for rs in runs.values() for r in rs)
    plots = _plot_bars(comparison)
    if binary:
        plots += _plot_roc(comparison, runs) + _plot_points(comparison, runs)
    else:
        plots += '<p class="note">ROC curves and operating points: binary tasks only.</p>'
    links = " · ".join(
        f'<a href="runs/{e(r.remedy)}/seed{r.seed}/report.html">{e(r.remedy)} seed {r.seed}</a>'
        for rs in runs.values()
        for r in rs
        if (r.path / "report.html").is_file()
    )
    warn = f'<div class="callout warn"><b>{e(note)}</b></div>' if note else ""
    notes = "".join(f"<li>{e(n)}</li>" for n in comparison.notes)
    title = f"medbalance: remedy comparison — {_data_title(runs)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><div><h1>{e(title)}</h1><div>{e(_context(runs))}</div></div></header><main>"
        f'{warn}<div class="callout"><b>{e(comparison.verdict)}</b></div>'
        f"<section><h2>Test metrics at each run's operating point</h2>{_summary_html(comparison)}"
        f'<p class="note">{e(_reading(comparison))}</p></section>'
        f"<section><h2>Paired comparison against {e(comparison.reference)}</h2>"
        f"{table(paired_head, paired_body) if paired_body else '<p>No other remedy.</p>'}"
        f"{_oof_section(comparison, table)}"
        f"</section><section><h2>Plots</h2>{plots}<p class='note'>Error bars: ± sd over "
        "seeds; with one seed, the run's 95% bootstrap CI.</p></section>"
        + (f"<section><h2>Notes</h2><ul>{notes}</ul></section>" if notes else "")
        + (f"<section><h2>Run reports</h2><p>{links}</p></section>" if links else "")
        + "</main></body></html>\n"
    )


def write_outputs(
    comparison: Comparison, runs: Mapping[str, list[FinishedRun]], *, note: str | None
) -> list[Path]:
    """Write ``comparison.csv``, ``.md``, ``.json`` and ``.html`` to ``comparison.out``, each
    atomically, with ``note`` at the top; return their paths."""
    out = comparison.out
    texts = {
        "comparison.csv": _csv(comparison.rows),
        "comparison.md": _markdown(comparison, runs, note),
        "comparison.json": json.dumps(
            strict_json(
                {
                    "note": note,
                    "metric": comparison.metric,
                    "task": comparison.task,
                    "reference": comparison.reference,
                    "verdict": comparison.verdict,
                    "notes": comparison.notes,
                    "rows": comparison.rows,
                    "paired": comparison.paired,
                    "paired_oof": comparison.paired_oof,
                    "oof_cases": comparison.oof_cases,
                }
            ),
            indent=2,
        )
        + "\n",
        "comparison.html": _html(comparison, runs, note),
    }
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return [out / name for name in texts]
