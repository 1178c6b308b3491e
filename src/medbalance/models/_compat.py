"""Make ``import torchvision`` work on a CPU-only torch.

PyPI's torchvision 0.28.0 wheel is built against CUDA. On the CPU build of torch its compiled
extension (``torchvision/_C.so``) cannot load, and torchvision's own fake-tensor registrations
then fail at import time with ``operator torchvision::nms does not exist``; ``timm`` imports
torchvision and fails with it. We only need torchvision's pure-Python transforms, so when
(and only when) the compiled library is missing we declare the two operator schemas that
torchvision registers fake kernels for at import. The operators themselves stay unimplemented:
calling ``torchvision.ops.nms`` or the ``torchvision.io`` decoders would still fail, and
medbalance never does (images are decoded with Pillow).

Call :func:`ensure_torchvision` before the first ``import torchvision`` or ``import timm``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

__all__ = ["ensure_torchvision"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_libraries: list[object] = []  # keep the Library objects alive; dropping them unregisters


def _compiled_ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    import torch

    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(
        Path(spec.origin).parent.glob("_C*.pyd")
    )
    for path in candidates:
        try:
            torch.ops.load_library(str(path))
            return True
        except (OSError, RuntimeError):
            return False
    return False


@functools.cache
def ensure_torchvision() -> None:
    """Register torchvision's op schemas when its compiled extension cannot load."""
    import torch

    if _compiled_ops_load():
        return
    library = torch.library.Library("torchvision", "DEF")
    for name, schema in _SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            library.define(schema)
    _libraries.append(library)
