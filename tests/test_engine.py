"""End to end on generated data: training learns, resume equals an uninterrupted run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbalance.cli.app import app
from medbalance.core.checkpoint import read_metadata
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.workflows.training import train_and_evaluate as fit


def _config(data: Path, out: Path, **changes: object) -> TrainConfig:
    values: dict[str, object] = dict(
        data=str(data),
        out=str(out),
        epochs=4,
        batch_size=16,
        lr=2e-3,
        device="cpu",
        seed=1,
        bootstrap=50,
    )
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_fit_learns_and_writes_the_run(tiny_npz: Path, tmp_path: Path) -> None:
    result = fit(_config(tiny_npz, tmp_path / "run", epochs=10))
    run = tmp_path / "run"
    for name in (
        "config.json",
        "history.csv",
        "best.safetensors",
        "last.pt",
        "metrics.json",
        "predictions.csv",
        "report.html",
    ):
        assert (run / name).is_file(), name
    assert result.metrics["test"]["balanced_accuracy"] > 0.75  # chance is 0.5
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 40
    assert metrics["threshold"]["chosen_on"] == "val"
    assert metrics["metrics"]["balanced_accuracy"]["value"] > 0.75
    lo, hi = metrics["metrics"]["auroc"]["ci"]
    assert lo <= metrics["metrics"]["auroc"]["value"] <= hi
    meta = read_metadata(run / "best.safetensors")
    assert meta["class_names"] == ["0", "1"] and meta["channels"] == 1
    assert meta["threshold"]["value"] == metrics["threshold"]["value"]
    assert meta["epoch"] == result.best_epoch
    assert len((run / "history.csv").read_text().splitlines()) == 11
    # fit scores val and test once and reuses the probabilities for the evaluation; a fresh
    # `medbalance evaluate` (which rebuilds the model from the checkpoint) gives the same numbers
    from medbalance.workflows.training import evaluate_run

    again = evaluate_run(run, n_bootstrap=50, seed=1, report=False)
    for key, entry in metrics["metrics"].items():
        assert again["metrics"][key]["value"] == pytest.approx(entry["value"], abs=1e-6), key
    assert again["threshold"] == metrics["threshold"]


def test_resume_after_kill_equals_uninterrupted(tiny_npz: Path, tmp_path: Path) -> None:
    full = fit(_config(tiny_npz, tmp_path / "full", loss="ldam", drw_epoch=2))
    fit(_config(tiny_npz, tmp_path / "cut", loss="ldam", drw_epoch=2), stop_after_epoch=1)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = fit(_config(tiny_npz, tmp_path / "cut", loss="ldam", drw_epoch=2), resume=True)
    assert resumed.best_epoch == full.best_epoch
    for split in ("val", "test"):
        for key in ("auroc", "balanced_accuracy", "loss"):
            assert resumed.metrics[split][key] == pytest.approx(full.metrics[split][key], abs=1e-6)


@pytest.mark.parametrize(
    "changes",
    [
        {"sampler": "undersample", "loss": "weighted-ce"},
        {"sampler": "balanced-batches", "loss": "focal", "select": "balanced_accuracy"},
        {"sampler": "none", "loss": "logit-adjusted", "crt_epochs": 1},
        {"sampler": "oversample:0.5", "loss": "cb-focal", "drw_epoch": 1},
        {"loss": "cost-ce", "loss_options": {"cost_matrix": [[0, 1], [5, 0]]}, "precision": "bf16"},
    ],
)
def test_remedies_run(tiny_npz: Path, tmp_path: Path, changes: dict[str, object]) -> None:
    result = fit(_config(tiny_npz, tmp_path / "r", epochs=2, **changes))
    assert not math.isnan(result.metrics["test"]["auroc"])


def test_folder_data_trains(tiny_tree: Path, tmp_path: Path) -> None:
    result = fit(_config(tiny_tree, tmp_path / "r", epochs=2, size=32, model="smallcnn"))
    assert result.config.presize == 40
    assert set(result.metrics) == {"val", "test"}


def test_28px_arrays_train_at_64px_from_the_native_cache(tiny_npz: Path, tmp_path: Path) -> None:
    # was refused: "presize (28) must be at least size (64)"
    from typer.testing import CliRunner

    from medbalance.cli import app

    out = tmp_path / "r64"
    args = ["train", str(tiny_npz), "--out", str(out), "--size", "64", "--epochs", "1"]
    cli = CliRunner().invoke(app, [*args, "--model", "smallcnn", "--bootstrap", "20"])
    assert cli.exit_code == 0, cli.output
    stored = json.loads((out / "config.json").read_text())
    assert (stored["size"], stored["presize"]) == (64, 28)
    assert json.loads((out / "metrics.json").read_text())["n"] == 40


def test_multiclass_rule_on_binary_data_fails_before_any_epoch(
    tiny_npz: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medbalance.cli import app

    out = tmp_path / "prior"
    cli = CliRunner().invoke(
        app, ["train", str(tiny_npz), "--out", str(out), "--threshold", "prior"]
    )
    assert cli.exit_code == 2
    assert "'prior' is a multi-class rule" in cli.output and "Traceback" not in cli.output
    assert not out.exists()  # nothing written, no epoch trained


def test_cli_train_and_errors(tiny_npz: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "train",
            *(str(tiny_npz), "--out", str(tmp_path / "r"), "--epochs", "1", "--device", "cpu"),
            *("--threshold", "sensitivity>=0.9", "--bootstrap", "20", "--schedule", "constant"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "run folder" in ok.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["threshold"]["policy"] == "sensitivity>=0.9"
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (stored["bootstrap"], stored["schedule"]) == (20, "constant")
    typo = runner.invoke(app, ["train", str(tiny_npz), "--threshold", "sensitivty>=0.9"])
    assert typo.exit_code == 2 and "did you mean 'sensitivity>=0.9'" in typo.output
    bad = runner.invoke(app, ["train", str(tiny_npz), "--loss", "focall"])
    assert bad.exit_code == 2 and "did you mean 'focal'" in bad.output
    offline = runner.invoke(
        app,
        [
            "train",
            str(tiny_npz),
            "--out",
            str(tmp_path / "p"),
            "--model",
            "resnet18",
            "--pretrained",
        ],
    )
    assert offline.exit_code == 2 and "--weights PATH" in offline.output


def test_lr_find_writes_plot_and_suggests(tiny_npz: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["lr-find", str(tiny_npz), "--out", str(tmp_path), "--steps", "12", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    suggested = float(result.output.split("suggested lr: ")[1].split()[0])
    assert 1e-6 <= suggested <= 1.0


@pytest.mark.parametrize("n_images", [0, 30, 1024])
def test_precise_bn_re_estimates_statistics_on_eval_transformed_train_images(
    tiny_npz: Path, tmp_path: Path, n_images: int
) -> None:
    import torch
    from torch import nn

    from medbalance.training.prepare import prepare_run
    from medbalance.training.trainer import Trainer

    run = prepare_run(
        _config(tiny_npz, tmp_path, model="resnet18", size=28, precise_bn=n_images),
        device=torch.device("cpu"),
    )  # batch 16; 100 train images
    data = run.data
    trainer = Trainer(run.config, data, torch.device("cpu"))
    first = next(m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d))
    before = first.running_mean.clone()
    images: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    hooks = [
        trainer.model.register_forward_hook(lambda _m, args, _o: images.append(args[0])),
        first.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach())),
    ]
    trainer.recalibrate_bn()
    for hook in hooks:
        hook.remove()
    if n_images == 0:
        assert not seen and torch.equal(first.running_mean, before)
        return
    # equal batches of 16 only: 30 -> 16 images, 1024 (all 100) -> 96
    assert [len(b) for b in seen] == [16] * (1 if n_images == 30 else 6)
    # the inputs are training images through the evaluation transform, each used once
    train_idx = data.indices("train")
    reference = trainer.transform(torch.from_numpy(data.images.take(train_idx)), train=False)
    used = torch.cat(images).flatten(1)
    distance = torch.cdist(used, reference.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    assert distance.min(dim=1).values.max() < 1e-4
    assert len(set(distance.argmin(dim=1).tolist())) == len(used)
    # and the layer now holds the average of those batches' statistics
    torch.testing.assert_close(
        first.running_mean, torch.cat(seen).mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5
    )
    variances = [b.transpose(0, 1).reshape(b.shape[1], -1).var(dim=1) for b in seen]
    torch.testing.assert_close(
        first.running_var, torch.stack(variances).mean(0), rtol=1e-4, atol=1e-5
    )


def test_crt_keeps_batchnorm_statistics_frozen() -> None:
    import torch
    from torch import nn

    from medbalance.training.engine import train_one_epoch

    class Plain(nn.Module):
        def forward(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
            return x

    torch.manual_seed(0)
    batches = [(torch.randn(8, 1, 6, 6) + 3, torch.randint(0, 2, (8,))) for _ in range(3)]
    for frozen in (True, False):
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
        norm = model[1]
        before = norm.running_mean.clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train_one_epoch(
            model,
            batches,
            Plain(),
            nn.CrossEntropyLoss(),
            optimizer,
            None,  # type: ignore[arg-type]
            torch.device("cpu"),
            frozen_bn=frozen,
        )
        assert torch.equal(norm.running_mean, before) is frozen
        assert int(norm.num_batches_tracked) == (0 if frozen else 3)


@pytest.mark.realdata
def test_trains_on_real_chest_xrays(shared_data: Path, tmp_path: Path) -> None:
    """Real Kermany JPEGs (120 training images, patient-grouped val): three short epochs learn
    the task, and evaluation-mode predictions do not collapse to one class."""
    result = fit(
        TrainConfig(
            data=str(shared_data / "chest_xray_mini"),
            out=str(tmp_path / "run"),
            size=64,
            epochs=3,
            resplit_val=0.2,
            group_pattern=r"^((?:NORMAL2-)?IM-\d+|person\d+)",
            device="cpu",
            bootstrap=100,
        )
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 48
    assert metrics["metrics"]["auroc"]["value"] > 0.85  # 0.97 when written
    assert result.history[0]["val_balanced_accuracy"] > 0.6  # 0.90 when written; 0.5 = collapse
    assert result.metrics["test"]["balanced_accuracy"] > 0.7


def test_three_classes_train_and_evaluate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from conftest import write_tree

    data = write_tree(tmp_path / "data", {"bacterial": 30, "normal": 60, "viral": 20})
    with caplog.at_level("INFO", logger="medbalance"):
        result = fit(_config(data, tmp_path / "run", epochs=2, size=32, model="smallcnn"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["class_names"] == ["bacterial", "normal", "viral"]
    assert metrics["threshold"]["policy"] == "offsets:balanced"  # the multi-class default
    assert metrics["positive_class"] is None and len(metrics["threshold"]["offsets"]) == 3
    assert "needs two classes" not in caplog.text  # the default is the task's, not youden's
    assert "offsets:balanced, chosen on val at the end (the multi-class default)" in caplog.text
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threshold"] == (
        "offsets:balanced"
    )  # config.json records the rule used
    assert "macro_f1" in result.metrics["test"]
    rows = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert rows[0].count("prob_") == 3 and len(rows) == 1 + metrics["n"]
    assert metrics["n"] == sum(metrics["counts"]["test"].values())


def test_ema_scores_and_keeps_the_moving_average(tiny_npz: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    result = fit(
        _config(tiny_npz, tmp_path / "ema", epochs=2, model="smallcnn", ema=0.9, select_rule="best")
    )
    trainer = result.trainer
    assert trainer is not None and trainer.ema is not None
    best = load_file(str(tmp_path / "ema" / "best.safetensors"))
    averaged = trainer.ema.module.state_dict()
    raw = trainer.model.state_dict()
    key = next(k for k in best if k.endswith("weight") and best[k].ndim > 1)
    if result.best_epoch == 1:  # the last epoch: the file holds the average, not the raw weights
        torch.testing.assert_close(best[key], averaged[key].cpu())
    assert not torch.equal(averaged[key], raw[key])  # the average differs from the weights
    assert json.loads((tmp_path / "ema" / "config.json").read_text())["ema"] == 0.9


def test_standard_errors_of_validation_metrics() -> None:
    from medbalance.training.engine import standard_error

    # Hanley & McNeil (1982) by hand, AUC 0.9 with 50 positives and 50 negatives:
    # Q1 = 0.9/1.1, Q2 = 1.62/1.9; var = (0.09 + 49(Q1 - 0.81) + 49(Q2 - 0.81)) / 2500
    row = {"val_auroc": 0.9, "val_sensitivity": 0.8, "val_specificity": 0.6}
    assert standard_error("auroc", row, 50, 50) == pytest.approx(0.03212, abs=1e-4)
    assert standard_error("sensitivity", row, 100, 10) == pytest.approx(0.04)
    assert standard_error("balanced_accuracy", row, 100, 24) == pytest.approx(
        0.5 * 0.1077, abs=1e-3
    )


def test_within_noise_keeps_later_weights_unless_clearly_worse() -> None:
    import numpy as np

    from medbalance.training.engine import _keep, _peak

    class _Data:
        class catalog:
            @staticmethod
            def class_counts(split: str) -> np.ndarray:
                return np.array([50, 50])

    class _Trainer:
        def __init__(self) -> None:
            self.positive, self.best_epoch, self.data = 1, 0, _Data()
            self.history = [{"val_auroc": 0.95, "val_loss": 0.3}]

    config = TrainConfig(data="x", select_rule="within-noise")
    peak = _peak("auroc", _Trainer().history)
    # SE at AUC 0.95 with 50/50 is about 0.021: 0.935 is within the noise, 0.90 is not
    assert _keep(config, {"val_auroc": 0.935, "val_loss": 0.4}, _Trainer(), peak)  # type: ignore[arg-type]
    assert not _keep(config, {"val_auroc": 0.90, "val_loss": 0.4}, _Trainer(), peak)  # type: ignore[arg-type]
    strict = TrainConfig(data="x", select_rule="best")
    assert not _keep(strict, {"val_auroc": 0.935, "val_loss": 0.4}, _Trainer(), peak)  # type: ignore[arg-type]
    last = TrainConfig(data="x")  # the default keeps every epoch, so the run ends on its last
    assert _keep(last, {"val_auroc": 0.60, "val_loss": 0.9}, _Trainer(), peak)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="within-noise needs a metric"):
        TrainConfig(data="x", select="loss", select_rule="within-noise")


def test_precision_auto_is_chosen_from_the_hardware_and_agrees_with_fp32(
    tiny_npz: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch

    from medbalance.core.device import choose_precision

    precision, channels_last, reason = choose_precision(torch.device("cpu"))
    assert precision in ("bf16", "fp32") and reason
    common = dict(epochs=3, model="smallcnn", seed=4)
    full = fit(_config(tiny_npz, tmp_path / "fp32", precision="fp32", **common))
    auto = fit(_config(tiny_npz, tmp_path / "auto", precision="auto", **common))
    stored = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert stored["precision"] == precision and stored["channels_last"] == channels_last
    assert stored["precision_reason"] == f"auto: {reason}"
    # numerics stay safe: the final evaluation runs in fp32 either way; the runs may differ
    # only by the training rounding (stated tolerance: 0.05 AUROC, 0.1 mean |p| difference)
    assert (
        abs(
            full.evaluation["metrics"]["auroc"]["value"]
            - auto.evaluation["metrics"]["auroc"]["value"]
        )
        <= 0.05
    )
    p_full, p_auto = (
        np.array(
            [
                float(r.split(",")[4])
                for r in (tmp_path / r / "predictions.csv").read_text().splitlines()[1:]
            ]
        )
        for r in ("fp32", "auto")
    )
    assert np.abs(p_full - p_auto).mean() <= 0.1


def test_a_diverged_run_is_the_users_to_fix_not_a_bug() -> None:
    import numpy as np
    import torch

    from medbalance.evaluation.scoring import Scores
    from medbalance.training.engine import TrainingDiverged, split_metrics

    logits = np.array([[0.1, np.nan], [0.3, 0.2]], dtype=np.float32)
    scores = Scores("val", np.arange(2), np.array([0, 1]), np.full((2, 2), 0.5), logits)
    with pytest.raises(TrainingDiverged, match="val outputs are not finite.*lower --lr"):
        split_metrics(scores, ("a", "b"), torch.nn.CrossEntropyLoss(), 1)
    assert issubclass(TrainingDiverged, ValueError)  # one line and exit code 2 in the CLI
