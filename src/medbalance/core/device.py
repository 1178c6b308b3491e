"""Choosing the torch device, once, for training, evaluation and prediction alike."""

from __future__ import annotations

import torch

__all__ = ["choose_precision", "select_device"]


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


def choose_precision(device: torch.device) -> tuple[str, bool, str]:
    """``--precision auto``: (precision, channels_last, reason), from what torch reports.

    bf16 autocast with channels_last on CPUs with AMX or AVX-512-BF16 units (oneDNN) and on GPUs
    with bf16; fp16 with GradScaler on other CUDA GPUs; fp32 everywhere else.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return "fp16", True, f"{torch.cuda.get_device_name(device)} has no bf16; fp16 + GradScaler"
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        units = [
            name
            for name, probe in (
                ("AMX", getattr(torch.cpu, "_is_amx_tile_supported", None)),
                ("AVX-512-BF16", getattr(torch.cpu, "_is_avx512_bf16_supported", None)),
            )
            if probe is not None and probe()
        ]
        if units:
            return "bf16", True, f"the CPU has {' and '.join(units)} (oneDNN bf16 kernels)"
        return "fp32", False, "the CPU has no bf16 units (no AMX, no AVX-512-BF16)"
    return "fp32", False, f"no reduced precision chosen for {device.type}"
