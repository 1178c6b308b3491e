"""The report's "Will this hold at my site?" section (reporting/site.py), from hand-written runs:
the numbers of metrics.json's calibration, guarantee, site and conformal records on the page, a
note for runs evaluated before calibration, and the PPV/NPV curve against Bayes' rule."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medbalance.core.run_folder import RunFolder
from medbalance.reporting.report import write_report
from medbalance.reporting.site import predictive_values
from test_report import BINARY, make_run
from test_report_layout import CHROMIUM, _assert_fits


def _edit(run: Path, **changes: Any) -> None:
    path = run / "metrics.json"
    result = json.loads(path.read_text())
    result.update(changes)
    path.write_text(json.dumps(result))


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


def _plain(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "|", html)))


def _entry(value: float, low: float, high: float) -> dict[str, Any]:
    return {"value": value, "ci": [low, high]}


def _calibration(classes: tuple[str, ...], weights: list[float] | None) -> dict[str, Any]:
    def block(shift: float) -> dict[str, Any]:
        return {
            "brier": _entry(0.183 - shift, 0.161 - shift, 0.205 - shift),
            "log_loss": _entry(0.544 - shift, 0.471 - shift, 0.622 - shift),
            "ece": _entry(0.091 - shift, 0.062 - shift, 0.127 - shift),
            "mce": _entry(0.312 - shift, 0.201 - shift, 0.488 - shift),
            "ece_per_class": {
                c: _entry(0.071 + k / 100 - shift, 0.05, 0.12) for k, c in enumerate(classes)
            },
        }

    return {
        "method": "temperature",
        "temperature": 1.37,
        "prior_weights": weights,
        "chosen_on": "val",
        "before": block(0.0),
        "after": block(0.032),
    }


def _binary_site_run(tmp_path: Path) -> Path:
    """A binary run with calibration (prior-corrected), a guaranteed threshold and a site."""
    run = make_run(tmp_path / "run")
    _edit(
        run,
        calibration=_calibration(BINARY, [0.5588, 1.4412]),
        threshold={
            "policy": "sensitivity>=0.8",
            "value": 0.41,
            "chosen_on": "val",
            "guarantee": {"level": 0.95, "lower_bound": 0.8312, "estimate": 0.9104},
        },
        site={
            "training_prior": {"NORMAL": 0.667, "PNEUMONIA": 0.333},
            "evaluated_prior": {"NORMAL": 0.7, "PNEUMONIA": 0.3},
            "at_prior": {
                "prior": {"NORMAL": 0.95, "PNEUMONIA": 0.05},
                "ppv": {
                    "NORMAL": _entry(0.9931, 0.989, 0.996),
                    "PNEUMONIA": _entry(0.1764, 0.1093, 0.4512),
                },
                "npv": _entry(0.9931, 0.989, 0.996),
            },
            "estimated_prior": {
                "NORMAL": _entry(0.88, 0.84, 0.92),
                "PNEUMONIA": _entry(0.12, 0.08, 0.16),
            },
            "estimated_from": "calibrated",
        },
    )
    return run


def test_site_section_shows_the_numbers_of_metrics_json(tmp_path: Path) -> None:
    page = write_report(_binary_site_run(tmp_path)).read_text(encoding="utf-8")
    assert '<a href="#site">Will this hold at my site?</a>' in page
    section = _section(page, "site")
    text = _plain(section)
    assert "<h2>Will this hold at my site?</h2>" in section
    # calibration before and after, with CIs, in words and in the reliability diagram
    assert "|Brier score||0.183||0.161–0.205||0.151||0.129–0.173|" in text
    assert "|Log loss||0.544||0.471–0.622||0.512||0.439–0.590|" in text
    assert "|Expected calibration error||0.091||0.062–0.127||0.059||0.030–0.095|" in text
    assert "|Maximum calibration error||0.312||0.201–0.488||0.280||0.169–0.456|" in text
    assert "|ECE, PNEUMONIA||0.081||0.050–0.120||0.049||" in text  # the positive class's
    assert "expected calibration error 0.049, 0.081 before calibration)" in text
    assert "T = 1.37, above 1 softens the probabilities: the model was over-confident" in text
    assert "odds of PNEUMONIA are multiplied by 2.58" in text  # 1.4412 / 0.5588
    assert 'alt="reliability diagram before and after calibration"' in section
    # the operating point with its bound and point estimate, and the prevalence it assumes
    assert "sensitivity on val 0.910 (95% lower bound 0.831, guaranteed >= 0.8)" in text
    assert "|PNEUMONIA||33.3%||" in text  # training prevalence, from site.training_prior
    # PPV/NPV over prevalences: the plot, and metrics.json's site prior and estimate
    assert 'alt="PPV and NPV against prevalence"' in section
    assert "(5.0% PNEUMONIA): PPV 17.6% (95% CI 10.9–45.1%), NPV 99.3% (95% CI 98.9–99.6%)" in (
        text
    )
    assert "PNEUMONIA 12.0% (95% CI 8.0–16.0%) (training 33.3%)" in text
    assert "training prevalence lies outside its interval" in text
    assert "Not available: conformal prediction sets" in text


@pytest.mark.parametrize("record", ["absent", "null"])
def test_runs_evaluated_before_calibration_say_not_available(tmp_path: Path, record: str) -> None:
    run = make_run(tmp_path / "run")
    if record == "null":
        _edit(run, calibration=None)
    section = _section(write_report(run).read_text(encoding="utf-8"), "site")
    text = _plain(section)
    assert "Not available: calibration before and after (metrics.json holds none" in text
    assert "not calibrated in this evaluation" in text
    assert "reliability diagram before and after" not in section
    assert 'alt="PPV and NPV against prevalence"' in section  # needs predictions.csv only
    assert "--prevalence P" in text  # how to get the site's numbers
    assert "--threshold 'youden'" in text  # how to get the calibration


def _bayes(sens: float, spec: float, q: float) -> tuple[float, float]:
    ppv = sens * q / (sens * q + (1 - spec) * (1 - q))
    npv = spec * (1 - q) / (spec * (1 - q) + (1 - sens) * q)
    return ppv, npv


@pytest.mark.parametrize("positive", [1, 0])
def test_ppv_curve_is_bayes_rule_from_sensitivity_and_specificity(positive: int) -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice(2, size=400, p=[0.75, 0.25] if positive == 1 else [0.25, 0.75])
    hit = rng.random(400) < np.where(labels == positive, 0.85, 0.1)  # called positive
    preds = np.where(hit, positive, 1 - positive)
    y, flagged = labels == positive, preds == positive
    sens, spec = flagged[y].mean(), (~flagged[~y]).mean()
    curve = predictive_values(labels, preds, positive, [0.01, 0.2], n_bootstrap=200)
    for i, q in enumerate((0.01, 0.2)):
        ppv, npv = _bayes(sens, spec, q)
        assert curve["ppv"][i] == pytest.approx(ppv, rel=1e-12)
        assert curve["npv"][i] == pytest.approx(npv, rel=1e-12)
        low, high = curve["ppv_ci"][i]
        assert low <= ppv <= high and high - low > 0
    # at the split's own prevalence Bayes' rule gives the PPV observed on it
    here = predictive_values(labels, preds, positive, [y.mean()], n_bootstrap=0)
    assert here["ppv"][0] == pytest.approx(y[flagged].mean(), rel=1e-12)
    assert np.isnan(here["ppv_ci"]).all()


def test_ppv_table_on_the_page_is_bayes_rule(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    rows = RunFolder(run).read_predictions(list(BINARY))
    y, flagged = rows.labels == 1, rows.preds == 1
    sens, spec = flagged[y].mean(), (~flagged[~y]).mean()
    text = _plain(_section(write_report(run).read_text(encoding="utf-8"), "site"))
    for q in (0.01, 0.2):
        ppv, npv = _bayes(sens, spec, q)
        assert re.search(
            rf"\|{100 * q:.1f}%\|\|\|\|{100 * ppv:.1f}% \([^)]+\)\|\|{100 * npv:.1f}%", text
        )
        flags = 1000 * (sens * q + (1 - spec) * (1 - q))
        assert f"flags {flags:.0f} ({flags * ppv:.0f} with PNEUMONIA)" in text


def _multiclass_site_run(tmp_path: Path, classes: tuple[str, ...]) -> Path:
    run = make_run(tmp_path / "run", classes)
    share = 1 / len(classes)
    _edit(
        run,
        calibration=_calibration(classes, None),
        site={
            "training_prior": {c: share for c in classes},
            "evaluated_prior": {c: share for c in classes},
            "at_prior": {
                "prior": {c: share for c in classes},
                "ppv": {c: _entry(0.4 + k / 100, 0.3, 0.5) for k, c in enumerate(classes)},
            },
            "estimated_prior": {c: _entry(share, share / 2, share * 1.5) for c in classes},
        },
        conformal={  # as evaluation.conformal.conformal_report writes it
            "level": 0.9,
            "chosen_on": "val",
            "method": "mondrian split conformal",
            "needed_cases": 9,
            "per_class": {
                c: {
                    "n": 20 + k,
                    "tuning_cases": 8 if k == 0 else 30,
                    "coverage": _entry(0.91, 0.85, 0.96),
                    "mean_set_size": _entry(1.4, 1.2, 1.6),
                }
                for k, c in enumerate(classes)
            },
            "coverage": _entry(0.93, 0.9, 0.96),
            "mean_set_size": _entry(1.31, 1.2, 1.4),
            "refer_rate": _entry(0.237, 0.2, 0.27),
            "warnings": [f"class {classes[0]!r} has 8 val case(s); needs at least 9"],
        },
    )
    return run


def test_multiclass_site_section(tmp_path: Path) -> None:
    classes = ("COVID", "NORMAL", "VIRAL")
    section = _section(
        write_report(_multiclass_site_run(tmp_path, classes)).read_text(encoding="utf-8"), "site"
    )
    text = _plain(section)
    assert "|ECE, VIRAL||0.091||0.050–0.120||0.059|" in text
    assert "No prior correction" in text
    assert "|VIRAL||33.3%|" in text and "|42.0% (30.0–50.0%)|" in text  # PPV at the given shares
    assert 'alt="reliability diagram before and after calibration"' in section
    assert "PPV and NPV against prevalence" not in section  # the curve is binary only
    assert "23.7% of the test images get more than one possible class" in text
    assert "|Refer rate||23.7% (95% CI 20.0–27.0%)|" in text
    assert "|Mean set size||1.31 (95% CI 1.20–1.40)|" in text
    assert "|COVID||20||8 (too few: always in the set)||91.0% (95% CI 85.0–96.0%)||1.40" in text
    assert "|VIRAL||22||30||91.0%" in text
    assert "at least 9 tuning cases" in text


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found")
def test_site_sections_fit_1280_px(tmp_path: Path) -> None:
    binary = _binary_site_run(tmp_path / "binary")
    write_report(binary)
    _assert_fits(binary / "report.html", tmp_path / "profile1")
    eight = _multiclass_site_run(tmp_path / "eight", tuple(f"class_{c}" for c in "abcdefgh"))
    write_report(eight)
    _assert_fits(eight / "report.html", tmp_path / "profile2")


def test_the_conformal_record_evaluate_writes_is_shown(tmp_path: Path) -> None:
    conformal = pytest.importorskip("medbalance.evaluation.conformal")
    rng = np.random.default_rng(5)
    names = ["normal", "bacteria", "virus"]
    labels = rng.choice(3, size=200, p=[0.6, 0.3, 0.1])
    probs = rng.dirichlet(np.ones(3), size=200) + 2 * np.eye(3)[labels]
    probs /= probs.sum(axis=1, keepdims=True)
    fitted = conformal.fit_conformal(labels[:100], probs[:100], names)
    record = conformal.conformal_report(
        labels[100:], probs[100:], fitted, 0.9, split="test", n_bootstrap=50
    )
    run = make_run(tmp_path / "run", tuple(names))
    _edit(run, conformal=record)
    text = _plain(_section(write_report(run).read_text(encoding="utf-8"), "site"))
    refer = record["refer_rate"]["value"]
    assert f"|Refer rate||{100 * refer:.1f}% (95% CI" in text
    assert f"{100 * refer:.1f}% of the test images get more than one possible class" in text
    rare = record["per_class"]["virus"]
    cover = f"{100 * rare['coverage']['value']:.1f}%"
    assert f"|virus||{rare['n']}||{rare['tuning_cases']}" in text and cover in text
