from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbalance.training.config import ConfigError, TrainConfig, load_config


def test_file_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        'data = "x.npz"\nepochs = 3\nloss = "focal"\n[loss_options]\ngamma = 1.5\n'
    )
    config = load_config(tmp_path / "c.toml", {"epochs": 5, "lr": None})
    assert config.epochs == 5 and config.loss == "focal" and config.loss_options == {"gamma": 1.5}
    (tmp_path / "c.yaml").write_text("data: x.npz\nbatch-size: 16\n")
    assert load_config(tmp_path / "c.yaml").batch_size == 16


def test_unknown_key_suggests(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('data = "x"\nepoch = 3\n')
    with pytest.raises(
        ConfigError, match="unknown config key.*'epoch' \\(did you mean 'epochs'\\?\\)"
    ):
        load_config(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"device": "gpu"}, "device must be one of .* got 'gpu'"),
        ({"select": "auc"}, "did you mean 'auroc'"),
        ({"drw_epoch": 10}, "drw_epoch must fall inside the run"),
        ({"freeze_epochs": 2}, "give --pretrained or --weights PATH"),
        ({"pretrained": True, "weights": "w.pth"}, "not both"),
        ({"size": 64, "presize": 32}, "presize \\(32\\) must be at least size \\(64\\)"),
    ],
)
def test_rules(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(data="x", **changes)  # type: ignore[arg-type]


def test_missing_data_and_written_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no data given"):
        load_config(None, {})
    config = TrainConfig(data="x", epochs=2)
    config.write(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 2
