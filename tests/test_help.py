"""``--help`` reads at 80 columns: every option has a help line, train's options sit in panels,
arguments are named as the README names them."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from medbalance.cli.app import app

PANELS = (
    "Data", "Model and images", "Imbalance remedy", "Schedule", "Selection and decision",
    "Output", "Hardware",
)  # fmt: skip


def _commands() -> dict[str, Any]:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_and_argument_has_a_help_line(name: str) -> None:
    command = _commands()[name]
    missing = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
    assert missing == []
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    assert all(p.metavar and p.metavar.isupper() for p in arguments)  # DATA, RUN, MODEL


def test_train_help_fits_80_columns_in_panels() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output  # no option name or value cut off
    titles = [line.split("─")[1].strip() for line in lines if line.startswith("╭─")]
    assert titles == ["Arguments", "Options", *PANELS]
    assert "Usage: medbalance train [OPTIONS] [DATA]" in result.output
    assert "--threshold,--decision" in result.output
    assert len(lines) < 170  # 222 lines in one panel before


def test_quiet_is_a_root_option() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert "--quiet" in result.output and "-q" in result.output


@pytest.mark.parametrize("name", sorted(_commands()))
def test_no_help_is_cut_off_at_80_columns(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
