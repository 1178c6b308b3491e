"""Load a trained model from its checkpoint alone, ready to score images.

A medbalance checkpoint carries everything needed: the model name, channels, class names, image
and presize sizes, normalisation statistics and the operating threshold. :func:`load_trained`
rebuilds the model and the evaluation transform from it; no config or data set is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medbalance.core.checkpoint import load_checkpoint
from medbalance.evaluation.calibration import Calibration, read_calibration
from medbalance.evaluation.conformal import ConformalScores, read_conformal
from medbalance.evaluation.decision import Decision, read_decision

__all__ = ["Trained", "load_trained"]


@dataclass
class Trained:
    """A model rebuilt from a checkpoint, with its evaluation transform and metadata."""

    model: nn.Module
    transform: nn.Module
    metadata: dict[str, Any]
    device: torch.device

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    @property
    def positive(self) -> int:
        return self.class_names.index(self.metadata["positive_class"])

    @property
    def decision(self) -> Decision:
        """The operating point stored in the checkpoint (argmax when none was stored)."""
        return read_decision(self.metadata)

    @property
    def calibration(self) -> Calibration | None:
        """The calibration fitted with the decision (None for older checkpoints)."""
        return read_calibration(self.metadata)

    @property
    def conformal(self) -> ConformalScores | None:
        """The conformal scores of the tuning cases, stored with the decision (None for older
        checkpoints)."""
        return read_conformal(self.metadata)

    @property
    def presize(self) -> int:
        return int(self.metadata["presize"])

    @property
    def channels(self) -> int:
        return int(self.metadata["channels"])

    @torch.no_grad()
    def probabilities(self, batch_uint: np.ndarray) -> np.ndarray:
        """Class probabilities for a presized ``(B, C, P, P)`` uint8/uint16 batch."""
        if batch_uint.dtype == np.uint16:
            batch_uint = batch_uint.astype(np.int32)
        x = self.transform(torch.from_numpy(batch_uint).to(self.device), train=False)
        logits = self.model(x).float()
        return torch.softmax(logits, dim=1).cpu().numpy()


def load_trained(checkpoint: Path, *, device: str = "cpu", tta: int | None = None) -> Trained:
    """Rebuild the model and evaluation transform stored in a ``best.safetensors``.

    Args:
        checkpoint: the file.
        device: where the model runs.
        tta: test-time augmentation views to average (default: as many as the stored decision
            was chosen with; 1 = none).
    """
    from medbalance.core.device import select_device
    from medbalance.models.augment import AugmentConfig, BatchTransform, NormStats
    from medbalance.models.backbones import create_model
    from medbalance.models.tta import with_tta

    state, metadata = load_checkpoint(Path(checkpoint))
    target = select_device(device)
    model = create_model(
        metadata["model"],
        num_classes=len(metadata["class_names"]),
        in_chans=int(metadata["channels"]),
        ordinal=bool(metadata.get("ordinal", False)),
    )
    model.load_state_dict(state)
    views = tta if tta is not None else read_decision(metadata).tta
    model = with_tta(model, views)
    model.to(target).eval()
    norm = NormStats.from_dict(metadata["normalization"])
    transform = BatchTransform(AugmentConfig(enabled=False), int(metadata["image_size"]), norm)
    return Trained(model, transform.to(target), metadata, target)
