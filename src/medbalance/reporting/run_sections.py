"""Two sections of the HTML report that read like every run's: the data and the training run.

:func:`data_body` gives the class counts per split (a table and a chart) and the warnings of
``metrics.json`` and ``inspect/summary.json`` (and, for one model trained on little data, the
suite's advice to cross-validate); :func:`training_body` the evaluated epoch, the
training curves and the configuration, and which optional files could not be read. The report
(:mod:`~medbalance.reporting.report`) wraps each in its section.
"""

from __future__ import annotations

import json

from medbalance.core.figures import figure_img
from medbalance.reporting.format import esc, note, table
from medbalance.reporting.plots import plot_counts, plot_history
from medbalance.reporting.run_data import LoadedRun, chosen_epoch, split_counts
from medbalance.training.header import cv_advice

__all__ = ["data_body", "training_body"]


# --- data -----------------------------------------------------------------------------------


def data_body(run: LoadedRun) -> str:
    """Class counts per split (table and chart) and the warnings about the data."""
    counts = split_counts(run)
    if counts:
        listing = _counts_table(counts, run.classes)
        chart = figure_img(plot_counts(counts, run.classes), "images per class and split")
        parts = [f'<div class="row"><div>{listing}</div><div>{chart}</div></div>']
        parts += _cv_note(run, sum(counts.get("train", {}).values()))
    else:
        parts = [note("class counts (in neither metrics.json nor inspect/summary.json)")]
    parts.append(f"<h3>Warnings about the data</h3>{_findings(run)}")
    if run.inspect is None:
        parts.append(note("a data inspection (medbalance inspect DATA --out RUN_DIR/inspect)"))
    return "".join(parts)


def _cv_note(run: LoadedRun, train_images: int) -> list[str]:
    """The header's small-data advice, for a single run: not for an ensemble, nor for a fold
    of ``cv`` (``CV_DIR/folds/foldK``), which already are what it advises."""
    single = not run.result.get("ensemble") and run.path.parent.name != "folds"
    advice = cv_advice(train_images) if single else None
    if advice is None:
        return []
    text = f"{advice[0].upper()}{advice[1:]}; medbalance cv may do better than this one model."
    return [f'<p class="note">{esc(text)}</p>']


def _counts_table(counts: dict[str, dict[str, int]], classes: list[str]) -> str:
    totals = {split: sum(per_class.values()) for split, per_class in counts.items()}
    rows: list[list[object]] = []
    for name in classes:
        cells = [(v.get(name, 0), v.get(name, 0) / max(totals[s], 1)) for s, v in counts.items()]
        rows.append([name, *(f"{n} ({share:.0%})" for n, share in cells)])
    rows.append(["Total", *totals.values()])
    ratios = [max(v.values()) / min(v.values()) if min(v.values()) else 0 for v in counts.values()]
    rows.append(["Imbalance ratio", *(f"{r:.2f} : 1" if r else "n/a" for r in ratios)])
    legend = "<p>Imbalance ratio: the largest class count over the smallest.</p>"
    return table(["Class", *counts], rows) + legend


def _findings(run: LoadedRun) -> str:
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
        f'<li><span class="badge {esc(level)}">{esc(level)}</span> '
        + (f"<b>{esc(code)}</b>: " if code else "")
        + esc(message + (f" ({n} listed in inspect/summary.json)" if n else ""))
        + "</li>"
        for level, code, message, n in items
    ]
    return f"<ul>{''.join(lines)}</ul>"


# --- training -------------------------------------------------------------------------------


def training_body(run: LoadedRun) -> str:
    """The chosen epoch, the training curves and the configuration."""
    parts, select = [], str(run.config.get("select", "auroc"))
    epoch, where = chosen_epoch(run, select)
    if run.history:
        said = f"from epoch {epoch} (read from {where})" if epoch is not None else "unknown"
        parts.append(
            f"<p>The evaluated checkpoint is {esc(said)}: the epoch with the best validation "
            f"{esc(select)}.</p>"
        )
        parts.append(
            figure_img(plot_history(run.history, select, epoch, run.config), "training curves")
        )
    elif isinstance(run.result.get("ensemble"), dict):
        members = run.result["ensemble"].get("members", "its")
        parts.append(
            f"<p>An ensemble of {esc(members)} models: each member's training curves are in "
            "its own run folder (listed in ensemble.json).</p>"
        )
    else:
        why = run.problems.get("history.csv", "history.csv not found in the run folder")
        parts.append(note(f"training curves ({why})"))
    if run.config:
        items = "".join(
            f"<dt>{esc(k)}</dt><dd>{esc(v if isinstance(v, str) else json.dumps(v))}</dd>"
            for k, v in sorted(run.config.items())
        )
        parts.append(f'<h3>Configuration</h3><dl class="config">{items}</dl>')
    else:
        parts.append(note("the configuration (config.json not found)"))
    for name, why in run.problems.items():
        if name not in ("history.csv", "predictions.csv"):
            parts.append(f'<p class="note">{esc(name)} could not be read: {esc(why)}</p>')
    return "".join(parts)
