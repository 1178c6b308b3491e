"""report.py: a self-contained HTML page from a hand-written run folder (no training needed)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medbalance.evaluation.gallery import GalleryItem
from medbalance.reporting.gallery import cam_spread
from medbalance.reporting.report import report_from_run, write_report

CHROMIUM = Path("/usr/bin/chromium")
BINARY = ("NORMAL", "PNEUMONIA")
HEADINGS = (
    "Data",
    "Operating point",
    "Confusion matrix",
    "Metrics with 95% CIs",
    "Calibration",
    "Per-class results",
    "Training run",
    "Most confident errors",
    "Grad-CAM",
)


def _ci(value: float, half: float = 0.03) -> dict[str, Any]:
    return {"value": value, "ci": [max(0.0, value - half), min(1.0, value + half)]}


def _binary(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """The binary metrics of metrics.json, from scikit-learn."""
    from sklearn.metrics import brier_score_loss, matthews_corrcoef, roc_auc_score

    flagged = score >= threshold
    return {
        "sensitivity": float(flagged[y].mean()),
        "specificity": float((~flagged[~y]).mean()),
        "ppv": float(y[flagged].mean()),
        "npv": float((~y[~flagged]).mean()),
        "auroc": float(roc_auc_score(y, score)),
        "mcc": float(matthews_corrcoef(y, flagged)),
        "brier": float(brier_score_loss(y, score)),
        "ece": 0.05,
    }


def make_run(
    root: Path,
    classes: tuple[str, ...] = BINARY,
    *,
    n: int = 300,
    history: bool = True,
    cis: bool = True,
) -> Path:
    """Write config.json, history.csv, metrics.json and predictions.csv for a fake run."""
    rng = np.random.default_rng(0)
    k = len(classes)
    labels = rng.choice(k, size=n, p=[0.7, *[0.3 / (k - 1)] * (k - 1)])
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    binary = k == 2
    threshold = 0.41 if binary else None
    preds = (probs[:, 1] >= 0.41).astype(int) if binary else probs.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, preds), 1)
    root.mkdir(parents=True)
    config = {
        "data": "/data/chest_xray",
        "model": "smallcnn",
        "size": 28,
        "sampler": "none",
        "loss": "ldam",
        "loss_options": {"max_m": 0.5},
        "drw_epoch": 3,
        "crt_epochs": 0,
        "epochs": 6,
        "select": "auroc",
        "seed": 0,
    }
    (root / "config.json").write_text(json.dumps(config))
    if history:
        columns = ["epoch", "phase_name", "train_loss", "val_loss", "val_auroc", "lr", "seconds"]
        rows = [
            [e, "full", 1 / (e + 1), 1.2 / (e + 1) + 0.1, 0.8 + 0.03 * e, 1e-3, 2.0]
            for e in range(6)
        ]
        with (root / "history.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([columns, *rows])

    def entry(value: float) -> Any:
        return _ci(value) if cis else {"value": value}

    metrics = (
        {k: entry(v) for k, v in _binary(labels == 1, probs[:, 1], 0.41).items()}
        if binary
        else {"balanced_accuracy": entry(0.7), "auroc": entry(0.85), "macro_f1": entry(0.66)}
    )
    per_class = {
        name: {
            "sensitivity": entry(0.8),
            "specificity": entry(0.9),
            "ppv": entry(0.7),
            "npv": entry(0.95),
            "f1": entry(0.75),
            "support": int((labels == c).sum()),
        }
        for c, name in enumerate(classes)
    }
    result = {
        "split": "test",
        "n": n,
        "class_names": list(classes),
        "positive_class": classes[1] if binary else None,
        "threshold": {
            "policy": "youden" if binary else "argmax",
            "value": threshold,
            "chosen_on": "val",
        },
        "metrics": metrics,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "at_default_threshold": {
            "threshold": 0.5 if binary else "argmax",
            "metrics": _binary(labels == 1, probs[:, 1], 0.5) if binary else {"accuracy": 0.6},
        },
        "counts": {
            split: {c: int(m * (1 + i)) for i, c in enumerate(reversed(classes))}
            for split, m in (("train", 400), ("val", 50), ("test", 100))
        },
        "warnings": ["the data changed since training (fingerprint differs) <b>"],
        "checkpoint_epoch": 4,
    }
    (root / "metrics.json").write_text(json.dumps(result))
    with (root / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "id",
                "path",
                "true_label",
                *(f"prob_{c}" for c in classes),
                "predicted_label",
                "threshold",
            ]
        )
        for i in range(n):
            writer.writerow(
                [
                    f"test_images[{i}]",
                    "",
                    classes[labels[i]],
                    *probs[i].round(6),
                    classes[preds[i]],
                    "" if threshold is None else threshold,
                ]
            )
    return root


def _outside_data_uris(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def _gallery(n: int, heat: bool) -> list[GalleryItem]:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:28, 0:28] / 28
    blob = np.exp(-(((xx - 0.6) / 0.2) ** 2 + ((yy - 0.4) / 0.2) ** 2))
    return [
        GalleryItem(
            title=f"NORMAL called PNEUMONIA #{i}",
            image=np.clip(0.5 + 0.2 * rng.normal(size=(28, 28)), 0, 1),
            heatmap=blob if heat else None,
            caption=f"test_images[{i}]: p(PNEUMONIA)=0.9{i}",
        )
        for i in range(n)
    ]


def test_binary_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    path = write_report(run, gallery_errors=_gallery(3, False), gallery_cam=_gallery(2, True))
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page)
    assert "http" not in _outside_data_uris(page)  # no URL anywhere, not even as text
    assert "Youden" in page and "chosen on val" in page
    assert "come from the test split" in page
    auroc = json.loads((run / "metrics.json").read_text())["metrics"]["auroc"]
    low, high = auroc["ci"]
    assert f"{auroc['value']:.3f}" in page and f"95% CI {low:.3f}–{high:.3f}" in page
    assert "Sensitivity" in page and "95% CI" in page
    assert "At threshold 0.5" in page
    assert "DRW" in page and "ldam" in page
    assert "&lt;b&gt;" in page and "fingerprint differs) <b>" not in page  # text is escaped
    assert page.count("data:image/png;base64,") >= 6 + 3 + 2 * 2
    assert "Not available" not in page.split('id="training"')[1].split("</section>")[0]
    assert not list(run.glob(".report.html.*"))  # the temporary file was renamed


def test_multiclass_report_renders(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ("COVID", "NORMAL", "VIRAL"))
    page = report_from_run(run).read_text(encoding="utf-8")
    assert "one-vs-rest" in page and "argmax" in page
    for name in ("COVID", "VIRAL", "Balanced accuracy"):
        assert name in page
    assert "no images were given to the report" in page  # the galleries are empty


def test_missing_optional_inputs_give_notes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", history=False, cis=False)
    (run / "predictions.csv").unlink()
    out = tmp_path / "elsewhere" / "page.html"
    page = write_report(run, out=out).read_text(encoding="utf-8")
    assert "Not available: training curves (history.csv not found" in page
    assert "Not available: the ROC and PR curves (needs predictions.csv" in page
    assert "Not available: confidence intervals" in page
    assert "Not available: a data inspection" in page
    assert not (run / "report.html").exists()


def test_inspect_findings_and_bad_files_are_reported(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "inspect").mkdir()
    finding = {
        "level": "error",
        "code": "duplicate-bytes",
        "message": "4 files are identical",
        "items": ["a.png", "b.png"],
    }
    (run / "inspect" / "summary.json").write_text(json.dumps({"findings": [finding]}))
    (run / "history.csv").write_bytes(b"\xff\xfe\x00broken")
    (run / "best.safetensors").write_bytes(b"not a checkpoint")
    page = report_from_run(run).read_text(encoding="utf-8")
    assert "duplicate-bytes" in page and "(2 listed in inspect/summary.json)" in page
    assert "Not available: training curves (UnicodeDecodeError" in page
    assert "best.safetensors could not be read: ValueError" in page


def test_missing_metrics_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metrics\.json not found; evaluate the run first"):
        report_from_run(tmp_path)


def test_bad_gallery_image_names_the_item(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    item = GalleryItem(title="odd one", image=np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match=r"gallery image 'odd one': image must be H x W"):
        write_report(run, gallery_errors=[item])


def _chromium(page: Path, profile: Path, *extra: str) -> tuple[int, list[str]]:
    """Open ``page`` in headless Chromium; return the exit code and the page's console lines."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
    ]
    done = subprocess.run(
        [str(CHROMIUM), *flags, page.as_uri()], capture_output=True, text=True, timeout=120
    )
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, [line for line in lines if "CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    canary = tmp_path / "canary.html"  # proves a script error would show up in the log
    canary.write_text("<p>x</p><script>missing_function()</script>")
    _, console = _chromium(canary, tmp_path / "profile0", "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console), console
    run = make_run(tmp_path / "run")
    page = write_report(run, gallery_errors=_gallery(4, False), gallery_cam=_gallery(4, True))
    shot = tmp_path / "shot.png"
    code, console = _chromium(
        page, tmp_path / "profile", "--window-size=1280,4000", f"--screenshot={shot}"
    )
    assert code == 0 and not console, console
    assert shot.stat().st_size > 50_000
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # not a blank page


# --- title, synthetic data, counts, chance, Grad-CAM caveat, gallery captions ---------------


def _edit(run: Path, **changes: Any) -> None:
    path = run / "metrics.json"
    result = json.loads(path.read_text())
    result.update(changes)
    path.write_text(json.dumps(result))


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


def test_title_names_the_run_and_its_data(tmp_path: Path) -> None:
    run = make_run(tmp_path / "knee_kl-20261204-101500")
    page = report_from_run(run).read_text(encoding="utf-8")
    title = "knee_kl-20261204-101500 — chest_xray (2 classes)"
    assert f"<title>medbalance report: {title}</title>" in page
    assert f"<h1>{title}</h1>" in page
    # a compare run folder (runs/REMEDY/seedK) is named with its remedy, not a bare seed0
    seeded = make_run(tmp_path / "cmp" / "runs" / "ldam-drw" / "seed0")
    page = report_from_run(seeded).read_text(encoding="utf-8")
    assert "<h1>ldam-drw/seed0 — chest_xray (2 classes)</h1>" in page
    folded = make_run(tmp_path / "cv-knee" / "folds" / "fold2", ("0", "1", "2"))
    page = report_from_run(folded).read_text(encoding="utf-8")
    assert "<h1>cv-knee/fold2 — chest_xray (3 classes)</h1>" in page
    assert 'class="synthetic"' not in page  # /data/chest_xray says nothing of the kind


def test_runs_on_synthetic_data_say_so_at_the_top(tmp_path: Path) -> None:
    data = tmp_path / "synthetic_xrays"
    data.mkdir()
    (data / "README.txt").write_text("SYNTHETIC DATA - generated by medbalance demo\n\nmore\n")
    run = make_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": str(data)}))
    page = report_from_run(run).read_text(encoding="utf-8")
    header = page.split("</header>")[0]
    assert "<title>SYNTHETIC data: medbalance report: run — synthetic_xrays (2 classes)" in page
    assert '<p class="synthetic"><b>SYNTHETIC data</b>' in header
    assert "SYNTHETIC DATA - generated by medbalance demo" in header
    (data / "README.txt").write_text("Chest X-rays of the Kermany set\nSYNTHETIC DATA\n")
    page = report_from_run(run).read_text(encoding="utf-8")  # a README that does not say so
    assert "SYNTHETIC" not in page


def test_headline_rates_show_their_counts(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    matrix = json.loads((run / "metrics.json").read_text())["confusion_matrix"]
    (tn, fp), (fn, tp) = matrix  # rows: true NORMAL, PNEUMONIA; columns: called
    cards = report_from_run(run).read_text(encoding="utf-8").split('<div class="cards">')[1]
    cards = cards.split("</div></div>")[0]
    assert f"finds {tp} of the {tp + fn} images with PNEUMONIA" in cards
    assert f"clears {tn} of the {tn + fp} images without PNEUMONIA" in cards
    assert f"{tp} of the {tp + fp} flagged images have PNEUMONIA" in cards
    assert f"{tn} of the {tn + fn} cleared images do not have PNEUMONIA" in cards
    assert "of 100" not in cards
    _edit(run, confusion_matrix=None)  # no matrix: the rate itself, still not "of 100"
    page = report_from_run(run).read_text(encoding="utf-8")
    sensitivity = json.loads((run / "metrics.json").read_text())["metrics"]["sensitivity"]
    assert f"finds {100 * sensitivity['value']:.1f}% of the images with PNEUMONIA" in page
    assert "of 100" not in page


def test_a_ranking_at_chance_is_explained_at_the_top(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    top = report_from_run(run).read_text(encoding="utf-8").split('<section id="data">')[0]
    assert "chance" not in top  # AUROC well above 0.5
    result = json.loads((run / "metrics.json").read_text())
    metrics = {**result["metrics"], "auroc": {"value": 0.465, "ci": [0.321, 0.605]}}
    default = {"threshold": 0.5, "metrics": {"sensitivity": 0.0, "specificity": 1.0}}
    _edit(run, metrics=metrics, at_default_threshold=default)
    top = report_from_run(run).read_text(encoding="utf-8").split('<section id="data">')[0]
    assert "AUROC 0.465 (95% CI 0.321–0.605) includes 0.5" in top
    assert "At the naive threshold 0.5 it calls every test image NORMAL." in top
    assert "(here 2.0 NORMAL per PNEUMONIA image in train)" not in top  # the run has a remedy
    assert "too few epochs or too few images" in top
    config = json.loads((run / "config.json").read_text())
    plain = {**config, "loss": "ce", "loss_options": {}, "drw_epoch": None}
    (run / "config.json").write_text(json.dumps(plain))
    top = report_from_run(run).read_text(encoding="utf-8").split('<section id="data">')[0]
    assert "(here 2.0 NORMAL per PNEUMONIA image in train)" in top
    some = {"threshold": 0.5, "metrics": {"sensitivity": 0.0, "specificity": 0.9}}
    _edit(run, at_default_threshold=some)  # flags no case with the disease, but some without
    top = report_from_run(run).read_text(encoding="utf-8").split('<section id="data">')[0]
    assert "includes 0.5" in top and "calls every" not in top
    _edit(run, metrics={**metrics, "auroc": {"value": 0.2, "ci": [0.1, 0.3]}})
    top = report_from_run(run).read_text(encoding="utf-8").split('<section id="data">')[0]
    assert "lies below 0.5" in top and "Check the labels and the positive class" in top


def _blob(x: float, y: float, size: int = 28, width: float = 0.12) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.exp(-(((xx - x) / width) ** 2 + ((yy - y) / width) ** 2))


def test_cam_spread_tells_one_region_from_many() -> None:
    rng = np.random.default_rng(0)
    noise = [0.05 * rng.random((28, 28)) for _ in range(6)]
    corner = [_blob(0.12, 0.1) + n for n in noise]
    same = cam_spread(corner)
    assert same is not None and same.maps == 6 and same.same_region
    assert same.peak_spread < 0.05 and same.correlation > 0.9 and same.where == "the top left"
    places = [(0.15, 0.2), (0.8, 0.15), (0.5, 0.5), (0.2, 0.85), (0.85, 0.8), (0.5, 0.15)]
    spread = cam_spread([_blob(x, y) + n for (x, y), n in zip(places, noise, strict=True)])
    assert spread is not None and not spread.same_region
    assert spread.peak_spread > 0.25 and spread.correlation < 0.3
    # same place, different sizes: the peaks agree though the maps do not correlate highly
    sizes = cam_spread(
        [_blob(0.8, 0.8, size=s, width=w) for s, w in ((28, 0.05), (56, 0.3), (14, 0.15))]
    )
    assert sizes is not None and sizes.same_region and sizes.where == "the bottom right"
    flat = [np.zeros((28, 28)), np.full((28, 28), 0.3)]
    assert cam_spread(corner[:2] + flat) is None  # fewer than three maps with a peak


def test_gradcam_section_warns_when_every_map_lights_the_same_region(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    image = np.full((28, 28), 0.5)
    same = [GalleryItem(f"true positive {i}", image, _blob(0.1, 0.1)) for i in range(4)]
    section = _section(write_report(run, gallery_cam=same).read_text(encoding="utf-8"), "gradcam")
    assert '<div class="callout warn">Caution: these 4 Grad-CAM maps all light about' in section
    assert "the top left of the image" in section and "shortcut" in section
    places = [(0.2, 0.2), (0.8, 0.3), (0.3, 0.8), (0.75, 0.75)]
    moving = [GalleryItem(f"tp {i}", image, _blob(x, y)) for i, (x, y) in enumerate(places)]
    section = _section(write_report(run, gallery_cam=moving).read_text(encoding="utf-8"), "gradcam")
    assert "Caution" not in section and "The 4 maps differ from image to image" in section


def test_gallery_captions_name_the_class_of_each_probability() -> None:
    from types import SimpleNamespace

    from medbalance.evaluation.gallery import _confusions, _errors

    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.1, 0.3, 0.6]]
    )
    preds = probs.argmax(axis=1)
    images = SimpleNamespace(take=lambda rows: np.zeros((len(rows), 1, 8, 8), dtype=np.uint8))
    origins = [f"img{i}.png" for i in range(5)]
    data = SimpleNamespace(images=images, catalog=SimpleNamespace(origins=origins))
    scores = SimpleNamespace(labels=labels, probs=probs, indices=np.arange(5))
    names = ["normal", "bacteria", "virus"]
    errors = _errors(names, data, scores, preds)  # type: ignore[arg-type]
    assert [item.caption for item in errors] == [
        "img1.png: p(bacteria)=0.70, p(normal)=0.20",
        "img3.png: p(normal)=0.60, p(bacteria)=0.30",
    ]
    confusions = _confusions(names, data, scores, preds, 3, 2)  # type: ignore[arg-type]
    assert [item.caption for item in confusions] == [  # ties in class order
        "img1.png: p(bacteria)=0.70, p(normal)=0.20 (1 of 2 normal images called bacteria)",
        "img3.png: p(normal)=0.60, p(bacteria)=0.30 (1 of 2 bacteria images called normal)",
    ]
    assert not any("p=" in item.caption for item in [*errors, *confusions])
