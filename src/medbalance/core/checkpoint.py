"""Self-describing, atomically written checkpoints.

``best.safetensors`` holds the model weights and, in the safetensors header, everything
``predict`` needs: model name, class names, channels, image and presize, normalisation, the
resolved config, the package version and a fingerprint of the training data. ``last.pt`` holds
the training state for ``--resume`` (optimizer, scheduler, history); it is read with
``torch.load(weights_only=True)``, so it cannot run code.

Every file is written to a temporary name in the same folder and renamed, so a killed run never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medbalance.core.files import atomic_write

__all__ = ["load_checkpoint", "read_metadata", "save_checkpoint", "save_weights"]

_META_KEY = "medbalance"


def save_checkpoint(path: Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    """Write the model's weights and ``metadata`` (JSON-able) to a ``.safetensors`` file."""
    save_weights(path, model.state_dict(), metadata)


def save_weights(path: Path, weights: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write a state dict and ``metadata`` (JSON-able) to a ``.safetensors`` file, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    header = {_META_KEY: json.dumps(metadata, default=str)}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=header))


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata stored in a medbalance checkpoint, without loading the weights."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint; give the best.safetensors of a run")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"{path}: not a safetensors checkpoint ({error}); give the best.safetensors that "
            "medbalance train wrote"
        ) from None
    if _META_KEY not in header:
        raise ValueError(f"{path}: not a medbalance checkpoint (no '{_META_KEY}' metadata)")
    result: dict[str, Any] = json.loads(header[_META_KEY])
    return result


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata of a medbalance checkpoint."""
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    return load_file(str(path)), metadata
