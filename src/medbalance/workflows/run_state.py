"""Whether a planned run's folder holds that finished run, a run to resume, or nothing yet:
what ``compare`` and ``cv`` decide before training each of their runs."""

from __future__ import annotations

from pathlib import Path

from medbalance.core.run_folder import RunFolder
from medbalance.training.config import TrainConfig
from medbalance.training.guard import config_differences

__all__ = ["run_state"]


def run_state(config: TrainConfig, fingerprint: str) -> str:
    """Whether the run folder holds this finished run, a run to resume, or nothing yet."""
    folder = RunFolder(Path(config.out))
    run = folder.path
    finished = folder.is_evaluated() and folder.best.is_file()
    if not finished and not folder.last.is_file():
        return "new"
    if not folder.config.is_file():
        raise ValueError(f"{run} holds run files but no config.json; delete the folder to retrain")
    diff = [
        f"{key} {planned!r} planned vs {stored!r} stored"
        for key, stored, planned in config_differences(folder.read_config(), config)
    ]
    if diff:
        raise ValueError(
            f"{run} holds a run with another config ({'; '.join(diff[:3])}); delete the folder "
            "or use another --out"
        )
    if not finished:
        return "resume"
    stored = folder.read_metadata().get("data_fingerprint")
    if stored != fingerprint:
        raise ValueError(
            f"{run} was trained on other data (fingerprint {stored}, now {fingerprint}); "
            "delete the folder or use another --out"
        )
    return "done"
