"""demo: the synthetic data generator and a tiny end-to-end demo."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from medbalance.cli.app import app
from medbalance.data.catalog import load_catalog
from medbalance.workflows import demo
from medbalance.workflows.demo import DEFAULT_COUNTS, demo_epochs, make_synthetic_xrays

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


def test_tiny_demo_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEFAULT_COUNTS", TINY)
    two = functools.partial(demo.run_demo, remedies=("baseline", "oversample"), bootstrap=50)
    monkeypatch.setattr(demo, "run_demo", two)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo-out"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.lower().count("synthetic") >= 7
    out = tmp_path / "demo-out"
    assert (out / "inspect" / "summary.json").is_file()
    assert len(list(out.glob("compare/runs/*/seed0/report.html"))) == 2
    html = (out / "compare" / "comparison.html").read_text()
    assert "SYNTHETIC data" in html and "Verdict" in html
    assert (out / "compare" / "comparison.md").read_text().count("SYNTHETIC") >= 1
