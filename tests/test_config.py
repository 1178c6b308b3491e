from __future__ import annotations

import dataclasses
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
        ({"drw_epoch": 10, "epochs": 10}, "drw_epoch must fall inside the run"),
        ({"epochs": True}, "epochs must be a positive integer"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"drw": "yes"}, "drw must be true or false"),
        ({"freeze_epochs": 2}, "give --pretrained or --weights PATH"),
        ({"pretrained": True, "weights": "w.pth"}, "not both"),
        ({"size": 64, "presize": 4}, "presize must be between 8 and 4096"),
    ],
)
def test_rules(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(data="x", **changes)  # type: ignore[arg-type]


def test_epochs_or_steps_not_both(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('data = "x.npz"\nsteps = 500\n')
    with pytest.raises(ConfigError, match=r"either epochs \(10\) or steps \(500\), not both"):
        load_config(tmp_path / "c.toml", {"epochs": 10})
    assert load_config(tmp_path / "c.toml").steps == 500


def test_missing_data_and_written_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no data given"):
        load_config(None, {})
    config = TrainConfig(data="x", epochs=2)
    config.write(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"sampler": "oversampel"}, "unknown sampler 'oversampel'.*did you mean 'oversample'"),
        ({"sampler": "auot"}, r"unknown sampler 'auot'.*auto \(oversample; none with --ordinal\)"),
        ({"sampler": "oversample:2"}, r"alpha .* must be in \[0, 1\]"),
        ({"loss": "focl"}, "unknown loss 'focl'.*did you mean 'focal'"),
        (
            {"loss": "focal", "loss_options": {"gama": 2}},
            "unknown option.*gama.*did you mean gamma",
        ),
        ({"loss": "cost-ce"}, r"needs option\(s\) cost_matrix"),
        ({"threshold": "youdn"}, "threshold: .*youden"),
        ({"bootstrap": -1}, "bootstrap must be 0 or more"),
    ],
)
def test_components_are_checked_when_the_config_is_built(
    changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(data="x", **changes)  # type: ignore[arg-type]


def test_presize_below_size_is_allowed() -> None:
    # 28 px MedMNIST at 64 px: the cache keeps 28 px, the device resamples once
    assert TrainConfig(data="x", size=64, presize=28).presize == 28


def test_written_config_holds_only_train_config_keys(tiny_npz: Path, tmp_path: Path) -> None:
    import torch

    from medbalance.training.prepare import prepare_run

    run = prepare_run(TrainConfig(data=str(tiny_npz), size=64), device=torch.device("cpu"))
    resolved = run.config
    assert (resolved.size, resolved.presize, resolved.native_size) == (64, 28, 28)
    assert resolved.class_names == ("0", "1") and resolved.positive_index == 1
    resolved.write(tmp_path / "config.json")
    stored = json.loads((tmp_path / "config.json").read_text())
    assert set(stored) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig(**stored) == TrainConfig(**resolved.to_dict())


def test_a_multiclass_rule_on_binary_data_fails_before_training(
    tiny_npz: Path, tmp_path: Path
) -> None:
    import torch

    from medbalance.training.prepare import prepare_run

    config = TrainConfig(data=str(tiny_npz), out=str(tmp_path / "run"), threshold="prior")
    with pytest.raises(ConfigError, match="'prior' is a multi-class rule.*two classes"):
        prepare_run(config, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="positive class 'x' is not a class"):
        prepare_run(TrainConfig(data=str(tiny_npz), positive_class="x"), device=torch.device("cpu"))
    assert not (tmp_path / "run").exists()


def test_drw_flag_rule_is_one_function() -> None:
    from medbalance.training.config import default_drw_epoch

    assert [default_drw_epoch(n) for n in (1, 2, 3, 10, 12)] == [1, 1, 2, 6, 8]


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("c.yaml", "data: !!python/object/apply:os.system ['echo hacked']\n", "not a valid YAML"),
        ("c.toml", "data = 'x.npz\nepochs = 3\n", "not a valid TOML"),
        ("c.json", "{data: x}", "not a valid JSON"),
    ],
)
def test_a_broken_config_file_is_a_config_error(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config(tmp_path / name)
