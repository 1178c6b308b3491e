"""Choosing the torch device, once, for training, evaluation and prediction alike."""

from __future__ import annotations

import torch

__all__ = ["select_device"]


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple MPS is not available here; use --device cpu")
    try:
        return torch.device(name)  # also cuda:1, cpu:0
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
