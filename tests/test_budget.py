"""The run length planned from the data (training/budget.py): steps into epochs, bounds, and
that the plan is the length the loader and the schedule really have."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from medbalance.training import budget
from medbalance.training.budget import plan_epochs, steps_per_epoch
from medbalance.training.config import ConfigError, TrainConfig
from medbalance.training.prepare import prepare_run
from medbalance.training.trainer import Trainer

LABELS = np.array([0] * 400 + [1] * 146)  # BreastMNIST's training counts


def test_default_is_the_suites_budget_of_1000_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_epochs(TrainConfig(data="x", ordinal=False), LABELS)
    assert budget.DEFAULT_STEPS == 1000  # changed only through benchmarks/suite.py
    # 546 oversampled draws / 64 = 9 steps an epoch: 1,000 steps are 112 epochs, capped at 60
    assert (plan.epochs, plan.steps_per_epoch) == (60, 9)
    assert (
        plan.reason
        == "the default budget of 1000 optimizer steps, 9 per epoch, capped at 60 epochs"
    )
    monkeypatch.setattr(budget, "DEFAULT_STEPS", None)  # no budget: the plain 10 epochs
    assert plan_epochs(TrainConfig(data="x", ordinal=False), LABELS).epochs == 10


@pytest.mark.parametrize(
    ("changes", "epochs", "per_epoch", "said"),
    [
        ({"steps": 120}, 14, 9, "--steps 120 optimizer steps, 9 per epoch"),  # 546 draws / 64
        ({"steps": 30}, 10, 9, "raised to the floor of 10"),
        ({"steps": 100_000}, 60, 9, "capped at 60 epochs"),
        ({"steps": 100, "sampler": "none"}, 12, 9, "9 per epoch"),  # 546 / 64, rounded up
        ({"steps": 100, "sampler": "undersample"}, 20, 5, "5 per epoch"),  # 2 x 146 draws
        ({"steps": 100, "batch_size": 32}, 10, 18, "18 per epoch"),
        ({"epochs": 7}, 7, 9, "--epochs 7"),
    ],
)
def test_plan(changes: dict[str, object], epochs: int, per_epoch: int, said: str) -> None:
    plan = plan_epochs(TrainConfig(data="x", ordinal=False, **changes), LABELS)  # type: ignore[arg-type]
    assert (plan.epochs, plan.steps_per_epoch) == (epochs, per_epoch)
    assert said in plan.reason


@pytest.mark.parametrize(
    "sampler", ["none", "oversample", "oversample:0.5", "undersample", "balanced-batches"]
)
def test_steps_per_epoch_is_the_loaders_length(
    tiny_npz: Path, tmp_path: Path, sampler: str
) -> None:
    config = TrainConfig(
        data=str(tiny_npz), out=str(tmp_path / "r"), sampler=sampler, batch_size=16, device="cpu"
    )
    run = prepare_run(config)
    trainer = Trainer(run.config, run.data, run.device)
    labels = run.data.catalog.labels[run.data.indices("train")]
    assert steps_per_epoch(run.config, labels) == len(trainer.loader_for(0, "full"))


def test_a_planned_run_trains_the_planned_epochs(
    tiny_npz: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medbalance.training.engine import fit

    out = tmp_path / "run"
    # 100 oversampled draws / 32 = 4 steps per epoch: 60 steps are 15 epochs; DRW at 2/3
    config = TrainConfig(
        data=str(tiny_npz), out=str(out), steps=60, batch_size=32, drw=True, device="cpu",
        precise_bn=0, bootstrap=0,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="medbalance"):
        result = fit(config)
    assert result.config.epochs == 15 and result.config.drw_epoch == 10
    assert len(result.history) == 15
    stored = json.loads((out / "config.json").read_text())
    assert (stored["epochs"], stored["steps"], stored["drw_epoch"]) == (15, 60, 10)
    said = "epochs     15 (--steps 60 optimizer steps, 4 per epoch; 60 optimizer steps)"
    assert said in caplog.text  # the run header's line
    # the one-cycle schedule was planned for exactly that length: it ends at its final rate
    assert result.history[-1]["lr"] < result.history[0]["lr"] / 100


def test_drw_epoch_outside_a_planned_run_is_refused_before_training(
    tiny_npz: Path, tmp_path: Path
) -> None:
    config = TrainConfig(  # 100 draws / 64: 2 steps an epoch; 1,000 steps: capped at 60 epochs
        data=str(tiny_npz), out=str(tmp_path / "r"), drw_epoch=60, device="cpu"
    )
    with pytest.raises(ConfigError, match=r"drw_epoch must fall inside the run \(1\.\.59\)"):
        prepare_run(config)
    assert not (tmp_path / "r").exists()
