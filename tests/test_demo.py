"""demo: the synthetic data generator and a tiny end-to-end demo."""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from typer.testing import CliRunner

from medbalance.cli.app import app
from medbalance.data.catalog import load_catalog
from medbalance.workflows import demo
from medbalance.workflows.demo import DEFAULT_COUNTS, demo_epochs, make_synthetic_xrays

if TYPE_CHECKING:
    from medbalance.comparison.report import Comparison

TINY = {
    "train": {"normal": 24, "lesion": 6},
    "val": {"normal": 8, "lesion": 8},
    "test": {"normal": 8, "lesion": 8},
}


def test_default_set_is_about_600_images_at_6_to_1() -> None:
    total = sum(n for per in DEFAULT_COUNTS.values() for n in per.values())
    assert 550 <= total <= 650
    for per in DEFAULT_COUNTS.values():
        assert per["normal"] / per["lesion"] == pytest.approx(6, rel=0.05)
    # 120 s left, 2 s of overhead per run, 1 s per epoch, 3 runs -> (120 - 6 - 5) / 3 = 36 -> 30
    assert demo_epochs(120, epoch_s=1.0, overhead_s=2.0, load=3.0) == 30
    assert demo_epochs(120, epoch_s=4.0, overhead_s=2.0, load=3.0) == 9
    assert demo_epochs(10, epoch_s=4.0, overhead_s=8.0, load=3.0) == 3


def test_generator_writes_the_promised_counts_labelled_synthetic(tmp_path: Path) -> None:
    root = make_synthetic_xrays(tmp_path / "synthetic_xrays", counts=TINY, size=32, seed=3)
    for split, per_class in TINY.items():
        for name, n in per_class.items():
            files = sorted((root / split / name).glob("*.png"))
            assert len(files) == n, (split, name)
    readme = (root / "README.txt").read_text()
    assert readme.startswith("SYNTHETIC") and "train: 24 normal, 6 lesion" in readme
    with Image.open(root / "train" / "lesion" / "synthetic_0000.png") as image:
        assert image.size == (32, 32) and image.mode == "L"
        assert "SYNTHETIC" in image.info["Comment"]
    catalog = load_catalog(root)
    assert catalog.class_names == ("lesion", "normal")
    assert list(catalog.class_counts("test")) == [8, 8]
    # the same call keeps the files; other files are never overwritten
    stamp = (root / "val" / "normal" / "synthetic_0001.png").stat().st_mtime_ns
    make_synthetic_xrays(root, counts=TINY, size=32, seed=3)
    assert (root / "val" / "normal" / "synthetic_0001.png").stat().st_mtime_ns == stamp
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a medbalance synthetic data set"):
        make_synthetic_xrays(tmp_path / "mine", counts=TINY)


def test_tiny_demo_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medbalance")
    monkeypatch.setattr(demo, "DEFAULT_COUNTS", TINY)
    two = functools.partial(demo.run_demo, remedies=("baseline", "oversample"), bootstrap=50)
    monkeypatch.setattr(demo, "run_demo", two)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo-out"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.lower().count("synthetic") >= 7
    out = tmp_path / "demo-out"
    assert (out / "inspect" / "summary.json").is_file()
    reports = sorted(out.glob("compare/runs/*/seed0/report.html"))
    assert len(reports) == 2
    for report in reports:  # each run's report says SYNTHETIC and names the run and data
        page = report.read_text(encoding="utf-8")
        remedy = report.parent.parent.name
        assert "<title>SYNTHETIC data: medbalance report:" in page
        assert '<p class="synthetic"><b>SYNTHETIC data</b>' in page
        assert f"<h1>{remedy}/seed0 — synthetic_xrays (2 classes)</h1>" in page
    html = (out / "compare" / "comparison.html").read_text()
    assert "SYNTHETIC data" in html and "Verdict" in html
    assert (out / "compare" / "comparison.md").read_text().count("SYNTHETIC") >= 1
    # every path the demo prints or logs exists after it (no deleted probe folder)
    said = result.output + "\n".join(r.getMessage() for r in caplog.records)
    paths = re.findall(re.escape(str(tmp_path)) + r"[^\s,:;)]*", said)
    assert paths and all(Path(p.rstrip(".")).exists() for p in paths), paths
    assert ".probe" not in said
    # the explanation of a baseline at chance appears exactly when the baseline is at chance
    rows = json.loads((out / "compare" / "comparison.json").read_text())["rows"]
    baseline = next(row for row in rows if row["remedy"] == "baseline")
    at_chance = baseline["auroc_ci_low"] <= 0.5 <= baseline["auroc_ci_high"]
    assert ("That is the imbalance at work, not a bug" in html) == at_chance
    assert ("note: baseline: test AUROC" in result.output) == at_chance


def test_demo_probe_run_is_silent_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The timing probe's own records (header, precision, epochs, report path) stay hidden:
    the real runs print them, and its folder is gone when the demo goes on."""
    from medbalance.training.config import TrainConfig

    data = make_synthetic_xrays(tmp_path / "synthetic_xrays", counts=TINY, size=32)
    base = TrainConfig(data=str(data), epochs=3, size=32, model="smallcnn", bootstrap=20)
    caplog.set_level(logging.INFO, logger="medbalance")
    epoch_s, overhead_s = demo._probe(base, tmp_path / ".probe")
    assert epoch_s > 0 and overhead_s >= 0
    assert not (tmp_path / ".probe").exists()
    assert [r.name for r in caplog.records if r.levelno < logging.WARNING] == [
        "medbalance.workflows.demo"
    ]
    assert "2-epoch probe run (discarded)" in caplog.records[0].getMessage()
    assert logging.getLogger("medbalance").level == logging.INFO  # restored


def _comparison_at(out: Path, auroc: dict[str, tuple[float, float, float]]) -> Comparison:
    """A Comparison whose rows hold ``remedy: (mean, ci_low, ci_high)`` of the test AUROC."""
    from medbalance.comparison.report import Comparison

    rows = [
        {"remedy": name, "seeds": 1, "auroc_mean": m, "auroc_ci_low": lo, "auroc_ci_high": hi}
        for name, (m, lo, hi) in auroc.items()
    ]
    return Comparison(out, "auroc", "baseline", rows, [], "Verdict")


def test_chance_note_explains_a_baseline_at_chance(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "baseline" / "seed0"
    run.mkdir(parents=True)
    default = {"threshold": 0.5, "metrics": {"sensitivity": 0.0, "specificity": 1.0}}
    (run / "metrics.json").write_text(json.dumps({"at_default_threshold": default}))
    chance = _comparison_at(
        tmp_path, {"baseline": (0.465, 0.321, 0.605), "oversample": (0.807, 0.687, 0.917)}
    )
    note = demo.chance_note(chance, epochs=3, counts=DEFAULT_COUNTS)
    assert note is not None and note.startswith(
        "baseline: test AUROC 0.465 (95% CI 0.321–0.605) includes 0.5"
    )
    assert "not a bug" in note and "330 normal and 55 lesion images in train" in note
    assert "(at the usual 0.5 threshold it called every test image normal)" in note
    assert "in 3 epochs" in note and "oversample" not in note
    also = _comparison_at(
        tmp_path, {"baseline": (0.465, 0.321, 0.605), "ldam-drw": (0.501, 0.354, 0.638)}
    )
    note = demo.chance_note(also, epochs=3, counts=DEFAULT_COUNTS)
    assert note is not None and "ldam-drw: test AUROC 0.501 (95% CI 0.354–0.638)" in note
    default["metrics"]["specificity"] = 0.9  # no lesion flagged, but not every image normal
    (run / "metrics.json").write_text(json.dumps({"at_default_threshold": default}))
    note = demo.chance_note(chance, epochs=3, counts=DEFAULT_COUNTS)
    assert note is not None and "not a bug" in note and "called every test image" not in note
    learnt = _comparison_at(
        tmp_path, {"baseline": (0.75, 0.62, 0.86), "oversample": (0.8, 0.7, 0.9)}
    )
    assert demo.chance_note(learnt, epochs=3, counts=DEFAULT_COUNTS) is None


def test_demo_data_readme_marks_it_synthetic_for_the_report(tmp_path: Path) -> None:
    from medbalance.reporting.run_data import synthetic_marker

    root = make_synthetic_xrays(tmp_path / "synthetic_xrays", counts=TINY, size=32)
    assert synthetic_marker(str(root)) == "SYNTHETIC DATA - generated by medbalance demo"
    assert synthetic_marker(str(tmp_path)) is None
