"""Nothing lost: the checks a run folder passes before training writes anything into it.

- A fresh run refuses a folder that holds another run (its files would be overwritten, and a
  run killed half-way would leave a folder mixing two runs), unless ``overwrite``. Even then
  nothing moves until every check of the new run has passed: the old run's files (only the files
  a run writes; anything else stays) are then set aside in ``.replaced-*`` and removed once the
  new run has written its first checkpoint, or put back if it fails before that. A folder whose
  files are not a medbalance training run (a cv or ensemble folder, a user's files with run-like
  names) is never emptied, and the data folder is never an output folder.
- A run killed before its first checkpoint (``last.pt``) starts again with the same command.
- ``resume`` continues only the same run: ``last.pt`` must be a readable training state of this
  data, and the configuration may differ only in :data:`RESUME_MAY_CHANGE` (where the run runs
  and how it is reported, never what it learns); any other difference is named and refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import shutil
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medbalance.core.files import PART_SUFFIX
from medbalance.core.run_folder import RunFolder
from medbalance.training.config import ConfigError, TrainConfig

__all__ = [
    "RESUME_MAY_CHANGE",
    "check_fresh_start",
    "config_differences",
    "drop_set_aside",
    "new_run_id",
    "read_training_state",
    "restore_set_aside",
    "set_aside",
]

# keys that --resume may change: where the run runs, what it is called, how it is reported
RESUME_MAY_CHANGE = ("out", "data", "device", "bootstrap", "compile", "track", "track_uri")


def new_run_id() -> str:
    """A short random id that ties every file of one run together."""
    return uuid.uuid4().hex[:12]


def check_fresh_start(folder: RunFolder, config: TrainConfig, *, overwrite: bool) -> list[Path]:
    """The files of an earlier run that a fresh start would replace; nothing is changed here.

    A folder holding only the ``config.json`` (and ``history.csv``) of this same configuration
    without a checkpoint (a run killed before its first ``last.pt``) is started again.

    Raises:
        ValueError: ``out`` is a file or the data folder, or the folder holds a run and
            ``overwrite`` is off, or it holds something that is not a medbalance training run.
    """
    _check_not_the_data(folder, config)
    if folder.path.exists() and not folder.path.is_dir():
        raise ValueError(f"--out {folder.path} is a file; give a folder for the run")
    found = folder.run_files()
    started = [
        p
        for p in found
        if p not in (folder.config, folder.history) and not p.name.endswith(PART_SUFFIX)
    ]
    if not found or (not started and _same_config(folder, config)):
        return [p for p in found if p != folder.config]  # removed when the run starts
    if not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
        raise ValueError(
            f"{folder.path} already holds a run ({names}); give another --out, --resume to "
            "continue it, or --overwrite to replace it"
        )
    if not _is_training_run(folder):
        raise ValueError(
            f"{folder.path} holds {', '.join(p.name for p in found[:4])} but is not a medbalance "
            "training run (no readable config.json of a run, no checkpoint); --overwrite never "
            "empties such a folder: give another --out"
        )
    return found


def _check_not_the_data(folder: RunFolder, config: TrainConfig) -> None:
    data = Path(config.data).expanduser()
    if not data.is_dir():
        return
    out, data = folder.path.resolve(), data.resolve()
    if out == data or data in out.parents:
        raise ValueError(
            f"--out {folder.path} is inside the data folder {config.data}; the run's files would "
            "mix with the images: give an --out outside the data"
        )


def _is_training_run(folder: RunFolder) -> bool:
    """A training run's folder: a checkpoint, or a ``config.json`` a run wrote (not a cv's,
    an ensemble's or a comparison's, and no ``ensemble.json`` beside it)."""
    if any((folder.path / name).exists() for name in (RunFolder.ENSEMBLE, RunFolder.COMPARISON)):
        return False
    if folder.last.is_file() or folder.best.is_file():
        return True
    try:
        stored = folder.read_config()
    except (ValueError, OSError):
        return False
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {"data", "sampler", "loss"} <= set(stored) and set(stored) <= known


SET_ASIDE_PREFIX = ".replaced-"


def set_aside(folder: RunFolder, files: Sequence[Path]) -> Path | None:
    """Move ``files`` (an earlier run's, or a killed start's) into ``FOLDER/.replaced-<time>``,
    once every check of the new run has passed; None when there is nothing to move."""
    if not files:
        return None
    aside = folder.path / f"{SET_ASIDE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{new_run_id()[:4]}"
    aside.mkdir()
    for path in files:
        if path.exists():
            path.replace(aside / path.name)
    return aside


def restore_set_aside(folder: RunFolder, aside: Path | None) -> None:
    """The new run failed before its first checkpoint: remove what it wrote and put the
    earlier run's files back."""
    if aside is None or not aside.is_dir():
        return
    for path in folder.run_files():
        path.unlink(missing_ok=True)
    for path in aside.iterdir():
        path.replace(folder.path / path.name)
    aside.rmdir()


def drop_set_aside(folder: RunFolder) -> None:
    """The new run has its first checkpoint: the runs it replaced are removed."""
    for aside in folder.path.glob(f"{SET_ASIDE_PREFIX}*"):
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)


def read_training_state(path: Path) -> dict[str, Any]:
    """``last.pt``, read with ``weights_only`` (it cannot run code).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a medbalance training state (empty, damaged, pickled code, other keys).
    """
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} does not exist; start the run without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"--resume: {path} is not a readable medbalance training state ({first[:160]}); "
            "start afresh with --overwrite"
        ) from None
    keys = {"epoch", "phase", "model", "optimizer", "history", "fingerprint"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise ValueError(
            f"--resume: {path} is not a medbalance training state (expected keys "
            f"{sorted(keys)}); start afresh with --overwrite"
        )
    return state


def config_differences(
    stored: Mapping[str, Any],
    config: TrainConfig,
    *,
    ignore: Sequence[str] = ("out",),
    unresolved: bool = False,
) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, planned value)`` for every key but ``ignore`` whose value in a
    stored ``config.json`` differs from ``config``'s (compared as JSON); with ``unresolved``, a
    key the config leaves to the data (None) matches any stored value. A key that an older
    ``config.json`` lacks (an option added since) counts as its default, so a run started
    before the option existed can still be resumed."""
    planned = json.loads(json.dumps(config.to_dict(), default=str))
    stored = {**_defaults(), **stored}
    return [
        (key, stored.get(key), planned.get(key))
        for key in sorted(set(planned) | set(stored))
        if key not in ignore
        and not (unresolved and planned.get(key) in (None, "auto"))
        and stored.get(key) != planned.get(key)
    ]


def _defaults() -> dict[str, Any]:
    """Every option with a default, as ``config.json`` would store it."""
    values = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }
    values["ordinal"] = False  # a config.json older than the option trained plain classes
    return dict(json.loads(json.dumps(values, default=str)))


def _differences(folder: RunFolder, config: TrainConfig, *, unresolved: bool = False) -> list[str]:
    """The keys (other than :data:`RESUME_MAY_CHANGE`) whose stored value differs."""
    found = config_differences(
        folder.read_config(), config, ignore=RESUME_MAY_CHANGE, unresolved=unresolved
    )
    return [f"{key} {old!r} -> {new!r}" for key, old, new in found]


def _same_config(folder: RunFolder, config: TrainConfig) -> bool:
    """Whether ``config.json`` holds this configuration, resolved as the run would resolve it
    (size, presize, model, lr and an ``auto`` precision filled in)."""
    from medbalance.core.device import select_device
    from medbalance.training.prepare import native_size, resolve_sizes

    # unreadable data is refused later with its own message; compare what is known
    with contextlib.suppress(ValueError, FileNotFoundError):
        config = resolve_sizes(config, native_size(config.data), select_device(config.device))
    try:
        return not _differences(folder, config, unresolved=True)
    except ValueError:  # an unreadable config.json of a killed run: not the same run
        return False


def check_resume_config(folder: RunFolder, config: TrainConfig) -> None:
    """Refuse ``--resume`` with a configuration that changes what the run learns.

    Raises:
        ConfigError: naming every key that differs (and what may differ).
    """
    if not folder.config.is_file():
        return  # killed before config.json was written: nothing to compare against
    differ = _differences(folder, config)
    if differ:
        raise ConfigError(
            f"--resume: {folder.config} holds another configuration ({'; '.join(differ[:4])}); "
            f"a resumed run may change only {', '.join(RESUME_MAY_CHANGE)}. Resume with the "
            "same options, or start afresh with --overwrite"
        )
