"""The ordinal head: CORN (Shi, Cao & Raschka 2021) with K class outputs.

"Deep neural networks for rank-consistent ordinal regression based on conditional
probabilities" (CORN) trains ``K - 1`` binary tasks on a shared linear layer: task ``k`` is
``P(y > k | y > k - 1) = sigmoid(l_k)``, learned only on the items with ``y > k - 1``. The
chain rule turns the conditionals into grade probabilities,

    log p_k     = sum_{j<k} logsigmoid(l_j) + logsigmoid(-l_k)     for k < K - 1
    log p_{K-1} = sum_{j<K-1} logsigmoid(l_j),

so the cumulative ``P(y > k) = prod_{j<=k} sigmoid(l_j)`` can only fall as ``k`` grows (rank
consistent) and the ``p_k`` sum to 1. :class:`CornLinear` returns these ``K`` log
probabilities as the model's "logits": ``softmax`` of them is ``p`` exactly, and plain
cross-entropy on them is the CORN loss (``tests/test_ordinal.py`` proves it). So every loss,
sampler, decision rule, TTA, ensemble, export and Grad-CAM sees an ordinary K-class model.

The head is written here rather than taken from ``coral-pytorch`` (whose ``corn_loss`` wants
the ``K - 1`` raw logits and a loss of its own): it is a few lines, and keeping K class
outputs leaves the rest of the pipeline unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CornLinear", "corn_log_probs", "use_corn_head"]


def corn_log_probs(logits: Tensor) -> Tensor:
    """``K`` log class probabilities ``[N, K]`` from CORN's ``K - 1`` conditional logits
    ``[N, K - 1]`` (formula in the module docstring), computed in float32."""
    logits = logits.float()
    cumulative = torch.cumsum(F.logsigmoid(logits), dim=1)  # log P(y > k), k = 0..K-2
    zero = logits.new_zeros(logits.shape[0], 1)
    reached = torch.cat([zero, cumulative], dim=1)  # log P(y > k - 1), k = 0..K-1
    stops = torch.cat([F.logsigmoid(-logits), zero], dim=1)  # log P(y = k | y > k - 1)
    return reached + stops


class CornLinear(nn.Linear):
    """A linear layer with ``num_classes - 1`` outputs whose forward returns CORN's
    ``num_classes`` log class probabilities.

    A subclass of :class:`torch.nn.Linear`, so its weights keep the names and the role of a
    classifier's (``fc.weight`` / ``fc.bias``): freezing, cRT's head reset, discriminative
    learning rates and loading ``--weights`` treat it as the head.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        if num_classes < 2:
            raise ValueError(f"an ordinal head needs at least 2 grades, got {num_classes}")
        super().__init__(in_features, num_classes - 1, bias=bias)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return corn_log_probs(super().forward(x))


def use_corn_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace ``model``'s linear classifier (timm's ``get_classifier()``) by a
    :class:`CornLinear` for ``num_classes`` grades, in place; return the model.

    Raises:
        ValueError: the model's classifier is not one ``nn.Linear`` (name the model to use).
    """
    head = model.get_classifier()  # type: ignore[operator]  # timm's head API
    if type(head) is not nn.Linear:
        raise ValueError(
            f"--ordinal replaces the model's linear classifier by a CORN head, but "
            f"{type(model).__name__}'s classifier is {type(head).__name__}; choose a model "
            "with a linear head (smallcnn, resnet18, efficientnet_b0, convnext_tiny ...)"
        )
    parent, name = _owner(model, head)
    corn = CornLinear(head.in_features, num_classes, bias=head.bias is not None)
    setattr(parent, name, corn.to(device=head.weight.device, dtype=head.weight.dtype))
    return model


def _owner(model: nn.Module, module: nn.Module) -> tuple[nn.Module, str]:
    """The parent of ``module`` inside ``model`` and its attribute name there."""
    for path, child in model.named_modules():
        if child is module and path:
            parent_path, _, name = path.rpartition(".")
            return model.get_submodule(parent_path), name
    raise ValueError(f"the classifier is not a submodule of {type(model).__name__}")
