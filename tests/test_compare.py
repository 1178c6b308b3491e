"""compare: remedies side by side on the same data; collect; paired tests; remedy presets."""

from __future__ import annotations

import csv
import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medbalance.cli.app import app
from medbalance.evaluation.bootstrap import bootstrap_ci, with_ci
from medbalance.evaluation.metrics import binary_metrics
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.workflows import compare as compare_module
from medbalance.workflows.compare import (
    REMEDIES,
    RemedyName,
    collect,
    compare,
    cost_matrix,
    paired_runs,
    parse_remedies,
    remedy_config,
)


def _base(data: Path, **changes: object) -> TrainConfig:
    values: dict[str, object] = dict(
        data=str(data), epochs=1, batch_size=32, lr=2e-3, device="cpu", bootstrap=50
    )
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _fake_run(root: Path, remedy: str, seed: int, shift: float, n: int = 60) -> Path:
    """A finished run folder written by hand: metrics.json, predictions.csv, config, history."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * (n - n // 4) + [1] * (n // 4))
    score = np.clip(0.3 * labels + shift + rng.normal(0.35, 0.15, n), 0, 1)
    run = root / "runs" / remedy / f"seed{seed}"
    run.mkdir(parents=True)
    metric = functools.partial(binary_metrics, threshold=0.5)
    metrics = with_ci(metric(labels, score), bootstrap_ci(metric, labels, score, n_resamples=20))
    result = {
        "split": "test",
        "n": n,
        "class_names": ["normal", "lesion"],
        "positive_class": "lesion",
        "threshold": {"policy": "youden", "value": 0.5, "chosen_on": "val"},
        "metrics": metrics,
    }
    (run / "metrics.json").write_text(json.dumps(result))
    config = {"data": "x", "model": "smallcnn", "epochs": 3, "seed": seed, "bootstrap": 100}
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.csv").write_text("epoch,seconds\n0,1.5\n1,2.5\n")
    names = ["normal", "lesion"]
    with (run / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "true_label", "prob_normal", "prob_lesion",
                         "predicted_label", "threshold"])  # fmt: skip
        for i, (y, s) in enumerate(zip(labels, score, strict=True)):
            predicted = names[int(s >= 0.5)]
            writer.writerow([f"case{i}", "", names[y], 1 - s, s, predicted, 0.5])
    return run


def test_compare_writes_outputs_keeps_finished_runs_and_collect_agrees(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cmp"
    # a budget too small for more than the first run: the others are not started, and said so
    cut = compare(_base(tiny_npz), "baseline,oversample", out, seeds=2, budget_minutes=1e-6)
    assert [p.parent.parent.name for p in out.glob("runs/*/seed*/metrics.json")] == ["baseline"]
    assert any("budget" in n and "oversample/seed0" in n for n in cut.notes)
    assert "nothing to compare" in cut.verdict
    # the same command without a budget trains the other three
    result = compare(_base(tiny_npz), "baseline,oversample", out, seeds=2)
    for name in ("comparison.csv", "comparison.md", "comparison.html", "comparison.json"):
        assert (out / name).is_file(), name
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["remedy"] for r in rows] == ["baseline", "oversample"]
    for column in (
        "seeds",
        "auroc_mean",
        "auroc_sd",
        "auroc_ci_low",
        "auroc_ci_high",
        "balanced_accuracy_mean",
        "sensitivity_mean",
        "specificity_mean",
        "ppv_mean",
        "f1_mean",
        "ece_mean",
        "train_seconds_mean",
        "auroc_diff_vs_reference",
        "balanced_accuracy_diff_outside_noise",
    ):
        assert column in rows[0], column
    assert rows[0]["seeds"] == "2"
    markdown = (out / "comparison.md").read_text()
    assert markdown.splitlines()[2].startswith("**Verdict (test AUROC, mean over 2 seeds): best is")
    assert "noise" in result.verdict and result.verdict in (out / "comparison.html").read_text()
    assert "data:image/png;base64," in (out / "comparison.html").read_text()
    assert {(p["seed"], p["metric"]) for p in result.paired} == {
        (s, m) for s in (0, 1) for m in ("auroc", "balanced_accuracy")
    }

    # re-invocation: nothing is retrained
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed*/best.safetensors")}
    assert len(stamps) == 4

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("fit was called for a finished run")

    monkeypatch.setattr("medbalance.workflows.training.train_and_evaluate", no_training)
    table = (out / "comparison.csv").read_text()
    again = compare(_base(tiny_npz), "baseline,oversample", out, seeds=2)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "comparison.csv").read_text() == table and again.verdict == result.verdict

    # --collect reproduces the same table without training
    (out / "comparison.csv").unlink()
    cli = CliRunner().invoke(app, ["compare", "--collect", str(out)])
    assert cli.exit_code == 0, cli.output
    assert "Verdict" in cli.output
    assert (out / "comparison.csv").read_text() == table

    # a folder holding another config is an error, not overwritten
    with pytest.raises(ValueError, match="another config.*epochs 2 planned vs 1 stored"):
        compare(_base(tiny_npz, epochs=2), "baseline", out, seeds=1)


def test_compare_with_two_jobs_trains_in_workers_like_one_job(
    tiny_npz: Path, tmp_path: Path
) -> None:
    """``jobs=2`` trains the runs in two worker processes; each equals the run trained here."""
    import torch

    spec = "baseline,oversample"
    pooled = compare(_base(tiny_npz), spec, tmp_path / "pool", seeds=1, jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each of 2 workers uses
    try:
        here = compare(_base(tiny_npz), spec, tmp_path / "here", seeds=1, jobs=1)
    finally:
        torch.set_num_threads(threads)
    assert [r["remedy"] for r in pooled.rows] == ["baseline", "oversample"]
    assert [p.name for p in pooled.files] == [p.name for p in here.files]
    assert all(p.is_file() for p in pooled.files) and not pooled.notes
    assert {(p["remedy"], p["seed"], p["metric"]) for p in pooled.paired} == {
        ("oversample", 0, m) for m in ("auroc", "balanced_accuracy")
    }
    for remedy in ("baseline", "oversample"):
        a, b = (tmp_path / side / "runs" / remedy / "seed0" for side in ("pool", "here"))
        for name in ("metrics.json", "predictions.csv", "best.safetensors", "report.html"):
            assert (a / name).is_file(), f"{remedy}: {name}"
        config_a, config_b = (json.loads((r / "config.json").read_text()) for r in (a, b))
        assert {**config_a, "out": ""} == {**config_b, "out": ""}
        result_a, result_b = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
        assert result_a["n"] == 40 and result_a["metrics"] == result_b["metrics"], remedy
        assert result_a["threshold"] == result_b["threshold"], remedy


def test_unknown_remedy_suggests_the_nearest(tiny_npz: Path) -> None:
    with pytest.raises(ConfigError, match="unknown remedy 'oversampel'.*did you mean 'oversample'"):
        parse_remedies("baseline,oversampel")
    cli = CliRunner().invoke(app, ["compare", str(tiny_npz), "--remedies", "ldam-drv"])
    assert cli.exit_code == 2 and "did you mean 'ldam-drw'" in cli.output
    with pytest.raises(ConfigError, match="given twice"):
        parse_remedies("crt,crt")
    assert list(REMEDIES) == list(RemedyName)
    every = [name for name in REMEDIES if name != "aucm"]  # experimental: named, never in all
    assert [r.name for r in parse_remedies("all")] == every


def test_remedy_presets_resolve(tmp_path: Path) -> None:
    base = TrainConfig(data="d", epochs=9, sampler="oversample")
    config = {
        name: remedy_config(r, base, seed=2, out=tmp_path / name, n_classes=2, positive=1)
        for name, r in ((r.name, r) for r in parse_remedies("all"))
    }
    assert config["baseline"].sampler == "none" and config["baseline"].loss == "ce"
    assert config["ldam-drw"].drw_epoch == 6 and config["ldam-drw"].loss == "ldam"
    assert config["crt"].crt_epochs == 2 and config["crt"].seed == 2
    assert config["cost-ce"].loss_options == {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]}
    assert cost_matrix(3, 0, 5) == [[0, 5, 5], [1, 0, 1], [1, 1, 0]]
    short = TrainConfig(data="d", epochs=1)
    with pytest.raises(ConfigError, match="needs at least 2 epochs"):
        remedy_config(parse_remedies("ldam-drw")[0], short, seed=0, out=tmp_path, n_classes=2,
                      positive=1)  # fmt: skip
    custom = tmp_path / "focal2.toml"
    custom.write_text('loss = "focal"\nloss_options = {gamma = 2}\n')
    (remedy,) = parse_remedies([str(custom)])
    made = remedy_config(remedy, base, seed=0, out=tmp_path, n_classes=2, positive=1)
    assert remedy.name == "focal2" and made.loss == "focal" and made.sampler == "none"
    custom.write_text("epochs = 3\n")
    with pytest.raises(ConfigError, match="'epochs' is set by compare"):
        parse_remedies([str(custom)])
    custom.write_text("los = 'ce'\n")
    with pytest.raises(ConfigError, match="did you mean 'loss'"):
        parse_remedies([str(custom)])
    # a bad value fails when the file is read, not when its run starts
    custom.write_text("sampler = 'oversampel'\n")
    with pytest.raises(
        ConfigError, match="focal2.toml: unknown sampler.*did you mean 'oversample'"
    ):
        parse_remedies([str(custom)])
    custom.write_text("loss = 'focal'\nloss_options = {gama = 2}\n")
    with pytest.raises(ConfigError, match="focal2.toml: .*unknown option.*gama"):
        parse_remedies([str(custom)])
    custom.write_text("loss = 'ldam'\ndrw_epoch = 15\n")  # checked with compare's --epochs later
    assert parse_remedies([str(custom)])[0].overrides["drw_epoch"] == 15
    custom.write_text("loss = 'cost-ce'\nfn_cost = 3\n")  # the matrix comes from fn_cost
    (remedy,) = parse_remedies([str(custom)])
    made = remedy_config(remedy, base, seed=0, out=tmp_path, n_classes=2, positive=1)
    assert made.loss_options == {"cost_matrix": [[0.0, 1.0], [3.0, 0.0]]}


def test_paired_comparison_of_a_run_with_itself_is_zero(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "baseline", 0, shift=0.0)
    for metric in ("auroc", "balanced_accuracy"):
        result = paired_runs(run, run, metric, n_resamples=200)
        assert result["difference"] == 0.0
        assert result["ci_low"] == result["ci_high"] == 0.0
        assert not result["outside_noise"]


def test_collect_without_baseline_pairs_against_the_first(tmp_path: Path) -> None:
    for seed in (0, 1):
        _fake_run(tmp_path, "weighted-ce", seed, shift=0.0)
        _fake_run(tmp_path, "oversample", seed, shift=0.1)
    result = collect(tmp_path, metric="sensitivity")
    assert result.reference == "oversample"  # registry order: oversample before weighted-ce
    assert any("paired comparisons are against the first remedy, oversample" in n for n in
               result.notes)  # fmt: skip
    assert result.verdict.startswith("Verdict (test Sensitivity, mean over 2 seeds)")
    assert result.rows[0]["train_seconds_mean"] == pytest.approx(4.0)
    assert json.loads((tmp_path / "comparison.json").read_text())["reference"] == "oversample"
    with pytest.raises(ConfigError, match="did you mean 'auroc'"):
        collect(tmp_path, metric="aurc")
    with pytest.raises(FileNotFoundError, match="no finished run"):
        collect(tmp_path / "empty")
    assert compare_module.METRICS["ece"][1] is False  # lower is better


@pytest.mark.slow
def test_compare_with_folds_pairs_remedies_on_out_of_fold_cases(
    tiny_npz: Path, tmp_path: Path
) -> None:
    from medbalance.workflows.compare import compare

    base = TrainConfig(data=str(tiny_npz), epochs=1, model="smallcnn", bootstrap=50, device="cpu")
    result = compare(base, "baseline,oversample", tmp_path / "cmp", seeds=1, folds=3)
    assert result.oof_cases == 140  # train 100 + val 40, every one out of fold once
    metrics = {e["metric"] for e in result.paired_oof}
    assert {"auroc", "balanced_accuracy"} <= metrics
    assert all(
        e["remedy"] == "oversample" and e["reference"] == "baseline" for e in result.paired_oof
    )
    written = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert written["oof_cases"] == 140 and len(written["paired_oof"]) == len(result.paired_oof)
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Paired comparison on out-of-fold cases (n=140)" in markdown
    run = tmp_path / "cmp" / "runs" / "oversample" / "seed0"
    assert (run / "ensemble.json").is_file() and (run / "oof_predictions.csv").is_file()


def test_comparison_page_keeps_the_legend_off_the_bars_and_the_ci_on_its_own_line(
    tmp_path: Path,
) -> None:
    from matplotlib.transforms import Bbox

    from medbalance.comparison.report import bar_figure

    for remedy, shift in (("baseline", 0.0), ("oversample", 0.15), ("weighted-ce", 0.3)):
        for seed in (0, 1):
            _fake_run(tmp_path, remedy, seed, shift=shift)
    result = collect(tmp_path)
    figure = bar_figure(result)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    found = [*figure.legends, *(ax.get_legend() for ax in figure.axes)]
    legends = [legend for legend in found if legend is not None]
    assert len(legends) == 1
    legend = legends[0].get_window_extent(renderer)
    (ax,) = figure.axes
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    assert len(bars) == 3 * 6  # 3 remedies x 6 binary metrics drawn as bars
    # error bars too: each bar's line (a segment of a collection) and its caps (markers)
    segments = [seg for c in ax.collections for seg in c.get_segments()]  # type: ignore[attr-defined]
    errors = [Bbox(ax.transData.transform(seg)) for seg in segments if len(seg) == 2]
    errors += [
        line.get_window_extent(renderer) for line in ax.lines if np.asarray(line.get_xdata()).size
    ]
    assert len(segments) == len(bars)
    covered = [b for b in [*bars, *errors] if Bbox.intersection(legend, b) is not None]
    assert not covered, f"the legend {legend} covers {covered[:3]}"
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # beside the axes
    page = (tmp_path / "comparison.html").read_text(encoding="utf-8")
    assert "<title>medbalance: remedy comparison — x (2 classes)</title>" in page
    baseline = page.split("<tbody>")[1].split("</tr>")[0]
    auroc = result.rows[0]
    low, high = auroc["auroc_ci_low"], auroc["auroc_ci_high"]
    cell = f"{auroc['auroc_mean']:.3f} ±&nbsp;{auroc['auroc_sd']:.3f}<small>[{low:.3f}, {high:.3f}]"
    assert cell in baseline
    # the verdict's metric leads the table (here sensitivity, not the usual AUROC)
    head, _ = collect(tmp_path, metric="sensitivity").summary_table()
    assert head[:4] == ["remedy", "seeds", "Sensitivity", "AUROC"]
    html_head = (tmp_path / "comparison.html").read_text(encoding="utf-8").split("</thead>")[0]
    assert html_head.index("Sensitivity") < html_head.index("AUROC")
