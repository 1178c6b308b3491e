"""The report's multi-class and ordinal sections, from hand-written run folders, and the galleries
a trained model and a CV ensemble give a three-class report."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import write_tree
from medbalance.evaluation.gallery import GalleryItem
from medbalance.reporting.report import write_report
from test_report import make_run

THREE = ("normal", "bacteria", "virus")
CONFUSION = [[7, 2, 1], [1, 5, 0], [0, 3, 1]]  # rows: true class


def _edit(run: Path, **changes: Any) -> None:
    path = run / "metrics.json"
    result = json.loads(path.read_text())
    for key, value in changes.items():
        result[key] = value
    path.write_text(json.dumps(result))


def _three_class_run(tmp_path: Path, **metrics: Any) -> Path:
    """A 3-class run decided by offsets:balanced; accuracy 0.62 vs 0.66 at argmax, balanced
    accuracy 0.70 vs 0.61; per-class values that differ by class."""
    run = make_run(tmp_path / "run", THREE)
    per_class = {
        name: {
            "sensitivity": {"value": 0.5 + 0.1 * c, "ci": [0.4 + 0.1 * c, 0.6 + 0.1 * c]},
            "ppv": {"value": 0.3 + 0.1 * c, "ci": [0.2, 0.45]},
            "f1": {"value": 0.61 + c / 100, "ci": [0.5, 0.7]},
            "specificity": {"value": 0.9, "ci": [0.85, 0.95]},
            "support": sum(CONFUSION[c]),
        }
        for c, name in enumerate(THREE)
    }
    base = {
        "accuracy": {"value": 0.62, "ci": [0.55, 0.69]},
        "balanced_accuracy": {"value": 0.70, "ci": [0.64, 0.76]},
        "auroc": {"value": 0.85, "ci": [0.8, 0.9]},
        "macro_f1": {"value": 0.66, "ci": [0.6, 0.7]},
    }
    _edit(
        run,
        threshold={"policy": "offsets:balanced", "value": None, "chosen_on": "val"},
        metrics={**base, **metrics},
        per_class=per_class,
        confusion_matrix=CONFUSION,
        at_default_threshold={
            "threshold": "argmax",
            "metrics": {"accuracy": 0.66, "balanced_accuracy": 0.61, "macro_f1": 0.6},
        },
    )
    return run


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


def _plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "|", html)


def test_three_class_report_has_curves_per_class_table_and_row_percentages(
    tmp_path: Path,
) -> None:
    weighted = {"weighted_auroc": {"value": 0.812, "ci": [0.751, 0.862]}}
    run = _three_class_run(tmp_path, **weighted)
    image = np.full((8, 8), 0.5)
    items = [GalleryItem("virus called bacteria", image, caption=f"img{i}") for i in range(2)]
    items.append(GalleryItem("normal called bacteria", image, caption="img9"))
    page = write_report(run, gallery_confusions=items).read_text(encoding="utf-8")
    curves = _section(page, "operating-point")
    assert 'alt="one-vs-rest ROC curves"' in curves and 'alt="one-vs-rest PR curves"' in curves
    assert "Weighted AUROC 0.812 (95% CI 0.751–0.862)" in curves
    assert "Macro AUROC 0.850 (95% CI 0.800–0.900)" in curves
    cards = page.split('<div class="cards">')[1].split("</div></div>")[0]
    assert "Weighted AUROC" in page.split('<section id="data">')[0] and "Macro AUROC" in cards
    # per class: value and CI in their own cells, class by class
    table = _plain(_section(page, "per-class"))
    assert "|virus||4||70.0%||60.0–80.0%||50.0%||20.0–45.0%||0.630||0.500–0.700||90.0%|" in table
    assert "|normal||10||50.0%||40.0–60.0%||30.0%||20.0–45.0%||0.610|" in table
    # counts and row percentages in each cell, rows in class order
    matrix = _plain(_section(page, "confusion"))
    assert "normal (true)||7 (70.0%)||2 (20.0%)||1 (10.0%)||10|" in matrix
    assert "virus (true)||0 (0.0%)||3 (75.0%)||1 (25.0%)||4|" in matrix
    assert matrix.index("normal (true)") < matrix.index("bacteria (true)")


def test_decision_section_shows_accuracy_beside_balanced_accuracy_and_argmax(
    tmp_path: Path,
) -> None:
    page = write_report(_three_class_run(tmp_path)).read_text(encoding="utf-8")
    decision = _section(page, "decision")
    assert (
        "offsets:balanced (chosen on val)" in decision and "maximises balanced accuracy" in decision
    )
    rows = _plain(decision)
    assert "|plain argmax||66.0%||61.0%||0.600|" in rows
    assert "|change from argmax||-4.0 points||+9.0 points|" in rows
    assert "gave up 4.0 points of accuracy for 9.0 points of balanced accuracy" in decision
    assert 'class="callout warn"' in decision
    assert "Weighted AUROC" not in page  # absent from metrics.json: skipped, no error
    assert 'id="ordinal"' not in page  # a nominal task


def test_argmax_rule_says_there_is_nothing_to_compare(tmp_path: Path) -> None:
    run = _three_class_run(tmp_path)
    _edit(run, threshold={"policy": "argmax", "value": None, "chosen_on": "val"})
    decision = _section(write_report(run).read_text(encoding="utf-8"), "decision")
    assert "No comparison with plain argmax: the rule is argmax itself." in decision
    assert "62.0% (95% CI 55.0–69.0%)" in decision and "70.0% (95% CI 64.0–76.0%)" in decision


def test_top_confusions_table_and_gallery(tmp_path: Path) -> None:
    run = _three_class_run(tmp_path)
    image = np.full((8, 8), 0.5)
    items = [GalleryItem("virus called bacteria", image, caption=f"img{i}") for i in range(2)]
    items.append(GalleryItem("normal called bacteria", image, caption="img9"))
    section = _section(write_report(run, gallery_confusions=items).read_text(), "confusions")
    rows = _plain(section.split("</table>")[0])
    first = rows.index("|virus||bacteria||3||75.0%|")  # the most frequent confusion first
    assert first < rows.index("|normal||bacteria||2||20.0%|") < rows.index("|normal||virus||1|")
    groups = re.findall(r"<h3>([^<]+)</h3><div class=\"gallery\">(.*?)</div>", section)
    assert [(title, body.count("<figure>")) for title, body in groups] == [
        ("virus called bacteria", 2),
        ("normal called bacteria", 1),
    ]


def test_binary_report_has_no_multiclass_sections(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path / "run")).read_text(encoding="utf-8")
    for key in ("decision", "ordinal", "confusions"):
        assert f'id="{key}"' not in page and f'href="#{key}"' not in page
    assert "Decision threshold" in page and "one-vs-rest" not in page


def _ordinal_run(tmp_path: Path) -> Path:
    """Grades 0..3; errors (called − true) -2 once, -1 once, 0 six times, +1 once, +2 once."""
    grades = ("0", "1", "2", "3")
    run = make_run(tmp_path / "run", grades)
    true = [0, 0, 1, 1, 2, 2, 3, 3, 3, 0]
    called = [0, 1, 1, 3, 2, 1, 3, 1, 3, 0]
    with (run / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        probs = [f"prob_{g}" for g in grades]
        writer.writerow(["id", "path", "true_label", *probs, "predicted_label", "threshold"])
        for i, (t, c) in enumerate(zip(true, called, strict=True)):
            p = np.full(4, 0.1)
            p[c] = 0.7
            writer.writerow([f"i{i}", "", grades[t], *p, grades[c], ""])
    matrix = np.zeros((4, 4), dtype=int)
    np.add.at(matrix, (true, called), 1)
    _edit(
        run,
        ordinal=True,
        n=10,
        confusion_matrix=matrix.tolist(),
        metrics={
            "balanced_accuracy": {"value": 0.6, "ci": [0.4, 0.8]},
            "quadratic_kappa": {"value": 0.712, "ci": [0.433, 0.901]},
            "mean_abs_error": {"value": 0.6, "ci": [0.2, 1.1]},
            "within_one_accuracy": {"value": 0.8, "ci": [0.5, 1.0]},
        },
    )
    return run


def test_ordinal_report_has_kappa_and_the_grade_errors(tmp_path: Path) -> None:
    page = write_report(_ordinal_run(tmp_path)).read_text(encoding="utf-8")
    section = _plain(_section(page, "ordinal"))
    assert "|Quadratic weighted kappa||0.712||0.433–0.901|" in section
    assert "|Mean absolute grade error||0.600||0.200–1.100|" in section
    assert "|Within-one-grade accuracy||80.0%||50.0–100.0%|" in section
    for error, n, share in (("-2", 1, "10.0%"), ("-1", 1, "10.0%"), ("0 (right)", 6, "60.0%")):
        assert f"|{error}||{n}||{share}|" in section
    assert "|+1||1||10.0%|" in section and "|+2||1||10.0%|" in section and "|+3|" not in section
    assert "20.0% of the 10 images are called one grade off, 20.0% more than one" in section
    assert "in grade order" in _section(page, "confusion")
    assert 'href="#ordinal"' in page and "Quadratic weighted kappa" in page.split("<section")[0]


def test_ordinal_report_leads_with_quadratic_kappa(tmp_path: Path) -> None:
    page = write_report(_ordinal_run(tmp_path)).read_text(encoding="utf-8")
    cards = re.findall(r'<div class="card"><b>([^<]+)</b>', page)
    assert cards[0] == "Quadratic weighted kappa" and "Balanced accuracy" in cards[1:]
    rows = re.findall(r"<tr><td>([^<]+)</td>", _section(page, "metrics"))
    assert rows[:3] == [
        "Quadratic weighted kappa",
        "Mean absolute grade error",
        "Within-one-grade accuracy",
    ]
    nominal = write_report(_three_class_run(tmp_path / "nominal")).read_text(encoding="utf-8")
    assert re.findall(r'<div class="card"><b>([^<]+)</b>', nominal)[0] == "Balanced accuracy"


def test_ordinal_section_without_predictions_says_what_is_missing(tmp_path: Path) -> None:
    run = _ordinal_run(tmp_path)
    (run / "predictions.csv").unlink()
    section = _section(write_report(run).read_text(encoding="utf-8"), "ordinal")
    assert "Quadratic weighted kappa" in section
    assert "Not available: the grade errors (needs predictions.csv)" in section


# --- galleries from real models: one run and a CV ensemble ----------------------------------


@pytest.fixture(scope="module")
def three_class_cv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-fold CV of smallcnn, 1 epoch, on a tiny 3-class tree of 32 px images."""
    from medbalance.training.config import TrainConfig
    from medbalance.workflows.cv import cross_validate

    root = tmp_path_factory.mktemp("cv3")
    os.environ["MEDBALANCE_CACHE"] = str(root / "cache")
    counts = {"a": 14, "b": 10, "c": 8}
    tree = write_tree(root / "data", {"train": counts, "val": counts, "test": counts})
    config = TrainConfig(
        data=str(tree), epochs=1, model="smallcnn", size=32, bootstrap=20, device="cpu", seed=1
    )
    cross_validate(config, folds=2, out=root / "cv")
    return root / "cv"


def test_cv_report_has_galleries_with_ensemble_gradcam(three_class_cv: Path) -> None:
    page = (three_class_cv / "report.html").read_text(encoding="utf-8")
    for key in ("errors", "confusions", "gradcam"):
        assert "<figure>" in _section(page, key), key
    cams = _section(page, "gradcam")
    assert '<div class="gallery cam">' in cams and "called right" in cams
    # every probability in a caption says which class it is for
    for key in ("errors", "confusions", "gradcam"):
        captions = re.findall(r"<figcaption>(.*?)</figcaption>", _section(page, key))
        assert captions and all(re.search(r": p\([abc]\)=[01]\.\d\d", c) for c in captions), key
        assert not any("p=" in c for c in captions), key
    assert "Not available" not in _section(page, "confusions")
    metrics = json.loads((three_class_cv / "metrics.json").read_text())
    off_diagonal = np.array(metrics["confusion_matrix"])
    np.fill_diagonal(off_diagonal, 0)
    top = np.unravel_index(off_diagonal.argmax(), off_diagonal.shape)
    names = metrics["class_names"]
    assert f"<h3>{names[top[0]]} called {names[top[1]]}</h3>" in page
