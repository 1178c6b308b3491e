"""An ensemble of trained models (the K fold models of a cross-validation) that averages their
class probabilities, with one decision chosen on out-of-fold predictions.

A CV folder holds ``ensemble.json``: the members (paths of their ``best.safetensors``, relative
to the folder), how they are combined (``combine``: ``mean`` of the probabilities, or ``stack``:
that mean through the logistic regression stored under ``stacker`` as plain numbers, see
:mod:`medbalance.evaluation.stacking`) and the decision record.
:func:`load_model` opens a run folder, a checkpoint or a CV folder alike, so ``predict`` and
``evaluate`` take any of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from medbalance.core.files import atomic_write_text
from medbalance.core.run_folder import RunFolder
from medbalance.evaluation._parsing import parse_choice
from medbalance.evaluation.calibration import Calibration, read_calibration
from medbalance.evaluation.conformal import ConformalScores, read_conformal
from medbalance.evaluation.decision import Decision, read_decision
from medbalance.evaluation.inference import Trained, load_trained
from medbalance.evaluation.scoring import Scores
from medbalance.evaluation.stacking import Stacker

if TYPE_CHECKING:
    from medbalance.data.prepared import Prepared

__all__ = [
    "ENSEMBLE_FILE",
    "MEMBER_KEYS",
    "Combine",
    "Ensemble",
    "Scorer",
    "load_model",
    "parse_combine",
    "score_cases",
    "store_decision",
    "write_ensemble",
]

ENSEMBLE_FILE = RunFolder.ENSEMBLE
# what every member of an ensemble must share: one task, at one input size
MEMBER_KEYS = ("class_names", "presize", "channels", "image_size")
_FORMAT = "medbalance-ensemble/1"


class Combine(StrEnum):
    """How an ensemble's members become one prediction."""

    MEAN = "mean"  # the mean of the members' probabilities
    STACK = "stack"  # that mean through a logistic regression fit on out-of-fold outputs


def parse_combine(value: str) -> Combine:
    """``value`` as a :class:`Combine`; an unknown name lists the choices."""
    return parse_choice(Combine, value, "combine")


class Scorer(Protocol):
    """What ``predict`` needs of a model: one trained model or an ensemble."""

    @property
    def class_names(self) -> list[str]: ...

    @property
    def presize(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def decision(self) -> Decision: ...

    @property
    def calibration(self) -> Calibration | None: ...

    @property
    def conformal(self) -> ConformalScores | None: ...

    def probabilities(self, batch_uint: np.ndarray) -> np.ndarray: ...


@dataclass
class Ensemble:
    """Members that share classes and preprocessing; probabilities are their mean, or that mean
    through the stacker (``record["combine"] == "stack"``)."""

    members: list[Trained]
    record: dict[str, Any]  # ensemble.json
    combine: Combine = field(init=False)
    stacker: Stacker | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.combine = parse_combine(str(self.record.get("combine", "mean")))
        if self.combine is Combine.STACK:
            if not isinstance(self.record.get("stacker"), dict):
                raise ValueError("a stacked ensemble's record needs a 'stacker' object")
            self.stacker = Stacker.from_record(self.record["stacker"])
            if self.stacker.n_classes != len(self.members[0].class_names):
                raise ValueError(
                    f"the stacker has {self.stacker.n_classes} classes, the members "
                    f"{len(self.members[0].class_names)}; run cv again"
                )
        first = self.members[0].metadata
        for member in self.members[1:]:
            for key in MEMBER_KEYS:
                if member.metadata[key] != first[key]:
                    raise ValueError(
                        f"ensemble members differ in {key} ({first[key]!r} vs "
                        f"{member.metadata[key]!r}); members must be trained on the same data"
                    )

    @property
    def class_names(self) -> list[str]:
        return self.members[0].class_names

    @property
    def presize(self) -> int:
        return self.members[0].presize

    @property
    def channels(self) -> int:
        return self.members[0].channels

    @property
    def positive(self) -> int:
        return self.members[0].positive

    @property
    def decision(self) -> Decision:
        meta = {**self.members[0].metadata, "threshold": self.record["decision"]}
        return read_decision(meta)

    @property
    def calibration(self) -> Calibration | None:
        """The calibration of the ensemble's own probabilities (None in older records)."""
        return read_calibration(self.record)

    @property
    def conformal(self) -> ConformalScores | None:
        """The conformal scores of the ensemble's tuning cases (None in older records)."""
        return read_conformal(self.record)

    @torch.no_grad()
    def probabilities(self, batch_uint: np.ndarray) -> np.ndarray:
        """The mean of the members' class probabilities for a presized batch, through the
        stacker when there is one."""
        mean = np.mean([m.probabilities(batch_uint) for m in self.members], axis=0)
        return mean if self.stacker is None else self.stacker.apply(mean).astype(mean.dtype)

    def summary(self) -> dict[str, Any]:
        """``metrics.json``'s ``ensemble`` entry: members and how they are combined."""
        return {"members": len(self.members), "combine": self.combine.value}


def score_cases(model: Scorer, data: Prepared, idx: np.ndarray, split: str) -> Scores:
    """``model``'s probabilities (one trained model or an ensemble) for items ``idx`` of
    ``data``, named ``split``, in batches through its own ``probabilities``."""
    from medbalance.data.prepared import BatchLoader

    loader = BatchLoader(data.images, data.catalog.labels, idx, 256)
    with torch.inference_mode():
        probs = np.concatenate([model.probabilities(x.numpy()) for x, _ in loader])
    return Scores(split, idx, data.catalog.labels[idx], probs)


def write_ensemble(
    folder: Path,
    members: list[Path],
    decision: Decision,
    extra: dict[str, Any],
    *,
    stacker: Stacker | None = None,
) -> Path:
    """Write ``ensemble.json`` for checkpoints ``members`` (stored relative to ``folder``, with
    ``..`` for members outside it);
    with ``stacker``, the ensemble is stacked and the record holds its numbers."""
    from medbalance.core.checkpoint import read_metadata

    stacked = {"stacker": stacker.to_record()} if stacker is not None else {}
    record = {
        "format": _FORMAT,
        "combine": (Combine.STACK if stacker is not None else Combine.MEAN).value,
        "members": [os.path.relpath(Path(m).resolve(), folder.resolve()) for m in members],
        # pinned: a member retrained later (--overwrite) is refused, not silently used
        "member_run_ids": [read_metadata(Path(m)).get("run_id") for m in members],
        "decision": decision.to_record(),
        **stacked,
        **extra,
    }
    return _write_record(folder, record)


def store_decision(
    folder: Path, ensemble: Ensemble, decision: Decision, extra: dict[str, Any] | None = None
) -> Path:
    """Replace the decision (and the ``extra`` entries) in ``folder``'s ``ensemble.json``
    (members unchanged)."""
    record = {**ensemble.record, "decision": decision.to_record(), **(extra or {})}
    return _write_record(folder, record)


def _write_record(folder: Path, record: dict[str, Any]) -> Path:
    text = json.dumps(record, indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write_text(folder / ENSEMBLE_FILE, text)


def load_model(path: Path, *, device: str = "cpu") -> Trained | Ensemble:
    """A checkpoint, a run folder (its ``best.safetensors``) or a CV folder (its ensemble).

    Raises:
        FileNotFoundError: nothing medbalance can load is there.
        ValueError: ``ensemble.json`` is damaged or its members disagree.
    """
    path = Path(path)
    if path.is_dir() and (path / ENSEMBLE_FILE).is_file():
        return _load_ensemble(path, device)
    if path.is_dir():
        path = path / "best.safetensors"
    return load_trained(path, device=device)


def _check_pinned(
    file: Path, record: dict[str, Any], members: list[Path], loaded: list[Trained]
) -> None:
    """Each member is still the run the ensemble was made of (records from before pinning
    have no ids and are taken as they are)."""
    pinned = record.get("member_run_ids")
    if not isinstance(pinned, list) or len(pinned) != len(members):
        return
    for path, trained, run_id in zip(members, loaded, pinned, strict=True):
        now = trained.metadata.get("run_id")
        if run_id is not None and now != run_id:
            raise ValueError(
                f"{file}: member {path} is another run now (run id {now}, the ensemble was made "
                f"of {run_id}): its operating point no longer holds; make the ensemble again "
                "(medbalance ensemble / cv into a new --out)"
            )


def _load_ensemble(folder: Path, device: str) -> Ensemble:
    file = folder / ENSEMBLE_FILE
    fix = "run medbalance cv again into a new --out to rewrite it"
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        members = [folder / str(m) for m in record["members"]]
        record["decision"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{file}: not a readable ensemble record ({error}); {fix}") from None
    if not members:
        raise ValueError(f"{file}: an ensemble needs at least one member; {fix}")
    views = int(record["decision"].get("tta", 1) or 1)
    loaded = [load_trained(m, device=device, tta=views) for m in members]
    _check_pinned(file, record, members, loaded)
    try:
        return Ensemble(loaded, record)
    except ValueError as error:
        raise ValueError(f"{file}: {error}; {fix}") from None
