"""Test-time augmentation: the mean of a model's class probabilities over N fixed views.

The views are deterministic and medically safe, the kind training augmentation already shows
the model: the image itself, then small shifts (3% of the side, four directions), rotations of
±5 degrees and zooms of 0.95 and 1.05; never a vertical or horizontal flip (laterality matters
in medical images). :class:`TestTimeAugmentation` wraps a model so that its output is the log of
the averaged probabilities: a softmax of it gives the mean, so every scoring path (validation,
evaluate, predict, export) works unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MAX_VIEWS",
    "TestTimeAugmentation",
    "as_logits",
    "mean_softmax",
    "unwrap",
    "view_params",
    "with_tta",
]

# (shift x, shift y, rotation in degrees, zoom), in the order views are added
_VIEWS = (
    (0.0, 0.0, 0.0, 1.0),
    (0.03, 0.0, 0.0, 1.0),
    (-0.03, 0.0, 0.0, 1.0),
    (0.0, 0.03, 0.0, 1.0),
    (0.0, -0.03, 0.0, 1.0),
    (0.0, 0.0, 5.0, 1.0),
    (0.0, 0.0, -5.0, 1.0),
    (0.0, 0.0, 0.0, 1.05),
    (0.0, 0.0, 0.0, 0.95),
)
MAX_VIEWS = len(_VIEWS)


def view_params(views: int) -> tuple[tuple[float, float, float, float], ...]:
    """The first ``views`` views (1 = the image alone).

    Raises:
        ValueError: ``views`` outside 1..MAX_VIEWS.
    """
    if not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"--tta takes 1 to {MAX_VIEWS} views, got {views}")
    return _VIEWS[:views]


def _theta(shift_x: float, shift_y: float, degrees: float, zoom: float) -> Tensor:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of s moves the image by s/2
    return torch.tensor([[cos, -sin, -2 * shift_x], [sin, cos, -2 * shift_y]])


class TestTimeAugmentation(nn.Module):
    """``model`` averaged over ``views`` fixed views; returns log mean probabilities."""

    thetas: Tensor

    def __init__(self, model: nn.Module, views: int) -> None:
        super().__init__()
        self.model = model
        thetas = torch.stack([_theta(*v) for v in view_params(views)])
        self.register_buffer("thetas", thetas, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        probs = []
        for theta in self.thetas:
            grid = F.affine_grid(theta.expand(len(x), 2, 3).to(x.dtype), list(x.shape), False)
            view = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            probs.append(self.model(view))
        return as_logits(mean_softmax(probs))


def mean_softmax(outputs: Sequence[Tensor]) -> Tensor:
    """The mean of the class probabilities of several outputs (views or ensemble members)."""
    return torch.stack([torch.softmax(x.float(), dim=1) for x in outputs]).mean(dim=0)


def as_logits(probs: Tensor) -> Tensor:
    """Logits whose softmax is ``probs``: their log, with zeros kept finite."""
    return torch.log(probs.clamp_min(1e-12))


def with_tta(model: nn.Module, views: int) -> nn.Module:
    """``model`` itself for one view, else wrapped in :class:`TestTimeAugmentation`."""
    return model if views == 1 else TestTimeAugmentation(model, views)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a :class:`TestTimeAugmentation` (what checkpoints store)."""
    return model.model if isinstance(model, TestTimeAugmentation) else model
