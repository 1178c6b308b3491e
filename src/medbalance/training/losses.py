"""Imbalance-aware classification losses as ``nn.Module``s, built by name with :func:`create_loss`.

Each module validates its options at construction, keeps its class weights, margins and priors as
buffers, and in ``forward(logits [N, C], target [N])`` calls a pure function of
:mod:`medbalance.training.loss_functions`, which describes how the losses compute (``log_softmax``,
float32 for half-precision logits, and a ``"mean"`` that does not divide by the sum of the class
weights).

Names, modules, pure functions (of :mod:`medbalance.training.loss_functions`) and the helper of
:mod:`medbalance.training.class_weights` that turns the training counts into weights, margins or
priors:

- ``ce``: :class:`CrossEntropyLoss`, :func:`cross_entropy`
- ``weighted-ce``: :class:`WeightedCrossEntropyLoss`, ``cross_entropy`` with
  :func:`inverse_frequency_weights`
- ``cb-ce``: :class:`ClassBalancedCrossEntropyLoss`, ``cross_entropy`` with
  :func:`class_balanced_weights`
- ``cb-focal``: :class:`ClassBalancedFocalLoss`, ``focal_loss`` with ``class_balanced_weights``
- ``cost-ce``: :class:`CostSensitiveCrossEntropyLoss`, ``cross_entropy`` with :func:`cost_weights`
- ``focal``: :class:`FocalLoss`, :func:`focal_loss`
- ``ldam``: :class:`LDAMLoss`, :func:`ldam_loss` with :func:`ldam_margins`
- ``balanced-softmax``: :class:`BalancedSoftmaxLoss`, :func:`balanced_softmax_loss` with
  :func:`log_prior`
- ``logit-adjusted``: :class:`LogitAdjustedLoss`, :func:`logit_adjusted_loss` with ``log_prior``
- ``soft-f1``: :class:`SoftF1Loss`, :func:`soft_f1_loss`
- ``aucm``: :class:`AUCMarginLoss`, MONAI's ``AUCMLoss`` (no pure function here: MONAI computes
  it); trained with :class:`PESG`, which moves its min-max variables

Build a loss by name from the training split's class counts with :func:`create_loss`. Explicit
per-class weights are always passed as ``class_weight`` (accepted by ``ce``, ``focal``, ``ldam``,
``balanced-softmax`` and ``logit-adjusted``; the losses that derive their weights from the counts
refuse it). Deferred re-weighting (DRW, Cao et al. 2019) is two losses, not a flag: train with the
plain loss, and from the DRW epoch on use a second one built with class-balanced weights::

    loss_fn = create_loss("ldam", train_counts).to(device)
    ...
    if epoch == drw_epoch:
        weights = drw_weights(train_counts)  # from medbalance.training.class_weights; beta = 0.9999
        loss_fn = create_loss("ldam", train_counts, class_weight=weights).to(device)

The same works for ``focal``, ``balanced-softmax`` and ``logit-adjusted``; the CE family switches
to ``create_loss("ce", train_counts, class_weight=weights)``.

``cost-ce`` is cost-proportionate rescaling (Elkan 2001; Zhou & Liu 2006): each sample of true
class ``i`` is weighted by ``w_i`` proportional to ``sum_j cost[i][j]``, the total cost of
misclassifying class ``i``, normalised to sum to ``C``. The cost matrix must be square, finite,
nonnegative, zero on the diagonal (subtract each row's diagonal entry first if correct predictions
cost something) and positive off it in every row. For two classes this is exact: the model that
minimises the weighted CE, followed by argmax, makes the minimum-expected-cost decision. For more
classes it is exact only for "consistent" cost matrices, otherwise a principled heuristic.
Whenever all rows have the same sum, notably for ``k * (1 - I)`` with any ``k > 0``, every weight
is 1 and ``cost-ce`` equals ``ce`` exactly. The alternative, expected cost under the softmax, was
rejected: it is bounded and non-convex, its gradient vanishes on confidently wrong samples, and it
never reduces to CE.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from medbalance.training._validation import (
    Counts,
    check,
    check_inputs,
    check_reduction,
    check_smoothing,
    counts_tensor,
    is_real,
)
from medbalance.training.class_weights import (
    class_balanced_weights,
    cost_weights,
    inverse_frequency_weights,
    ldam_margins,
    log_prior,
)
from medbalance.training.loss_functions import (
    Reduction,
    cross_entropy,
    focal_loss,
    ldam_loss,
    logit_adjusted_loss,
    soft_f1_loss,
)
from medbalance.training.names import LossName

__all__ = [
    "LOSSES",
    "PESG",
    "AUCMarginLoss",
    "BalancedSoftmaxLoss",
    "ClassBalancedCrossEntropyLoss",
    "ClassBalancedFocalLoss",
    "ClassificationLoss",
    "CostSensitiveCrossEntropyLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossName",
    "SoftF1Loss",
    "WeightedCrossEntropyLoss",
    "check_loss_options",
    "create_loss",
]

WeightLike = Sequence[float] | Tensor


# --- validation ----------------------------------------------------------------------------------
def _weight(weight: WeightLike, num_classes: int | None, name: str = "class_weight") -> Tensor:
    """Validate a per-class weight vector; return a float32 copy."""
    w = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
    if w.ndim != 1 or w.numel() < 2 or (num_classes is not None and w.numel() != num_classes):
        raise ValueError(
            f"{name} must be a vector of one weight per class ({num_classes or 'C >= 2'} classes); "
            f"got shape {tuple(w.shape)}"
        )
    if not (torch.isfinite(w).all() and (w >= 0).all() and (w > 0).any()):
        raise ValueError(f"{name} must be finite, nonnegative and not all zero; got {w.tolist()}")
    return w


# --- modules -------------------------------------------------------------------------------------
class ClassificationLoss(nn.Module):
    """Base of the losses: ``forward(logits [N, C], target [N] int64)`` changes nothing on self."""

    class_weight: Tensor | None

    def __init__(
        self,
        num_classes: int | None,
        reduction: Reduction = "mean",
        class_weight: WeightLike | None = None,
    ) -> None:
        super().__init__()
        ok = num_classes is None or (type(num_classes) is int and num_classes >= 2)
        check(ok, "num_classes", num_classes, "it must be an int >= 2", "pass len(class_names)")
        check_reduction(reduction)
        weight = None if class_weight is None else _weight(class_weight, num_classes)
        self.num_classes = num_classes if weight is None else weight.numel()
        self.reduction: Reduction = reduction
        self.register_buffer("class_weight", weight)

    def _inputs(self, logits: Tensor, target: Tensor) -> None:
        check_inputs(logits, target, self.num_classes)

    def extra_repr(self) -> str:
        settings = {
            k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"
        }
        return ", ".join(f"{k}={v!r}" for k, v in settings.items())


class CrossEntropyLoss(ClassificationLoss):
    """Cross-entropy, optionally class-weighted and label-smoothed."""

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        class_weight: WeightLike | None = None,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, reduction, class_weight)
        check_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        return cross_entropy(
            logits,
            target,
            class_weight=self.class_weight,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


class WeightedCrossEntropyLoss(CrossEntropyLoss):
    """CE weighted by inverse class frequency (see :func:`inverse_frequency_weights`)."""

    def __init__(
        self, class_counts: Counts, *, label_smoothing: float = 0.0, reduction: Reduction = "mean"
    ) -> None:
        weight = inverse_frequency_weights(class_counts)
        super().__init__(class_weight=weight, label_smoothing=label_smoothing, reduction=reduction)


class ClassBalancedCrossEntropyLoss(CrossEntropyLoss):
    """CE with the class-balanced weights of Cui et al. (see :func:`class_balanced_weights`)."""

    def __init__(
        self,
        class_counts: Counts,
        *,
        beta: float = 0.999,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        weight = class_balanced_weights(class_counts, beta)
        super().__init__(class_weight=weight, label_smoothing=label_smoothing, reduction=reduction)
        self.beta = beta


class CostSensitiveCrossEntropyLoss(CrossEntropyLoss):
    """CE weighted by misclassification cost (see :func:`cost_weights` and the module docstring)."""

    cost_matrix: Tensor

    def __init__(
        self,
        cost_matrix: Sequence[Sequence[float]] | Tensor,
        *,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        weight = cost_weights(cost_matrix)
        if num_classes is not None and weight.numel() != num_classes:
            raise ValueError(
                f"cost_matrix is {weight.numel()} x {weight.numel()} but there are {num_classes} "
                f"classes; give one row and one column per class"
            )
        super().__init__(class_weight=weight, label_smoothing=label_smoothing, reduction=reduction)
        self.register_buffer(
            "cost_matrix", torch.as_tensor(cost_matrix, dtype=torch.float32).clone()
        )


class FocalLoss(ClassificationLoss):
    """Softmax focal loss (see :func:`focal_loss`)."""

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        gamma: float = 2.0,
        class_weight: WeightLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, reduction, class_weight)
        check(is_real(gamma) and gamma >= 0, "gamma", gamma, "it must be >= 0", "Lin et al. use 2")
        self.gamma = gamma

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            class_weight=self.class_weight,
            reduction=self.reduction,
        )


class ClassBalancedFocalLoss(FocalLoss):
    """Softmax focal loss with the class-balanced weights of Cui et al. (2019).

    Cui et al. paired the weights with a sigmoid focal loss; this is the softmax form.
    """

    def __init__(
        self,
        class_counts: Counts,
        *,
        beta: float = 0.999,
        gamma: float = 2.0,
        reduction: Reduction = "mean",
    ) -> None:
        weight = class_balanced_weights(class_counts, beta)
        super().__init__(gamma=gamma, class_weight=weight, reduction=reduction)
        self.beta = beta


class LDAMLoss(ClassificationLoss):
    """LDAM with margins from the class counts (see :func:`ldam_loss`, :func:`ldam_margins`)."""

    margins: Tensor

    def __init__(
        self,
        class_counts: Counts,
        *,
        max_m: float = 0.5,
        scale: float = 30.0,
        class_weight: WeightLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        margins = ldam_margins(class_counts, max_m)
        super().__init__(len(margins), reduction, class_weight)
        check(is_real(scale) and scale > 0, "scale", scale, "it must be > 0", "Cao et al. use 30")
        self.max_m, self.scale = max_m, scale
        self.register_buffer("margins", margins)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        return ldam_loss(
            logits,
            target,
            self.margins,
            scale=self.scale,
            class_weight=self.class_weight,
            reduction=self.reduction,
        )


class LogitAdjustedLoss(ClassificationLoss):
    """Logit-adjusted CE with the training prior (see :func:`logit_adjusted_loss`)."""

    log_prior: Tensor

    def __init__(
        self,
        class_counts: Counts,
        *,
        tau: float = 1.0,
        class_weight: WeightLike | None = None,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        prior = log_prior(class_counts)
        super().__init__(len(prior), reduction, class_weight)
        check(is_real(tau) and tau >= 0, "tau", tau, "it must be >= 0", "Menon et al. use 1")
        check_smoothing(label_smoothing)
        self.tau, self.label_smoothing = tau, label_smoothing
        self.register_buffer("log_prior", prior)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        return logit_adjusted_loss(
            logits,
            target,
            self.log_prior,
            tau=self.tau,
            class_weight=self.class_weight,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al. 2020): logit adjustment with ``tau=1``."""

    def __init__(
        self,
        class_counts: Counts,
        *,
        class_weight: WeightLike | None = None,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            class_counts,
            tau=1.0,
            class_weight=class_weight,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )


class SoftF1Loss(ClassificationLoss):
    """``1 - soft F1`` of class 1 over the batch (see :func:`soft_f1_loss`); binary only."""

    def __init__(self, num_classes: int = 2, *, eps: float = 1e-7) -> None:
        if num_classes != 2:
            raise ValueError(
                f"soft-f1 is defined for binary problems only (2 classes); got {num_classes} "
                "classes; use 'ce', 'focal' or 'ldam' for more classes"
            )
        super().__init__(num_classes)
        check(is_real(eps) and eps > 0, "eps", eps, "it must be > 0", "the default is 1e-7")
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        return soft_f1_loss(logits, target, eps=self.eps)


MONAI_HINT = "pip install 'medbalance[monai]'"


class AUCMarginLoss(ClassificationLoss):
    """AUC-margin loss (Yuan et al. 2021, "Large-scale robust deep AUC maximization") of the
    positive class against the other, through MONAI's ``AUCMLoss``; binary only.

    The score is the softmax probability of class ``positive`` (the sigmoid output LibAUC
    feeds the loss). MONAI's module holds the min-max variables ``a``, ``b`` (minimised) and
    ``alpha`` (maximised) as parameters, so this loss has parameters: train them together with
    the model with :class:`PESG`, which ascends on ``alpha``. MONAI is imported here, when the
    loss is built, and nowhere else.

    ``a`` starts at 1 and ``b`` at 0, the mean scores of positives and negatives under a perfect
    ranking (MONAI and LibAUC start both at 0, for a model pre-trained with CE). From 0, the
    squared terms first pull every score down, the rarer class of a batch harder, and a model
    trained from scratch learned an inverted ranking before ``a``, ``b`` and ``alpha`` caught up:
    test AUROC 0.47 on the suite's ``chest_xray_mini`` (20 steps), 0.81 when ``a`` starts at 1.

    Args:
        class_counts: Training counts of the two classes.
        positive: Class index of the positives; default the minority class (1 on a tie).
        margin: Margin of the squared-hinge surrogate; LibAUC and MONAI use 1.0.
        version: ``"v1"`` (with the class prior) or ``"v2"`` (without), as MONAI.
        imratio: Positive share for ``v1``; default None, the share in each batch (MONAI's
            default; a :class:`~medbalance.training.samplers.DualSampler` batch has a fixed one).
    """

    def __init__(
        self,
        class_counts: Counts,
        *,
        positive: int | None = None,
        margin: float = 1.0,
        version: str = "v1",
        imratio: float | None = None,
    ) -> None:
        counts = counts_tensor(class_counts).long().tolist()
        if len(counts) != 2:
            raise ValueError(
                f"aucm (AUC-margin) is defined for binary problems only (2 classes); got "
                f"{len(counts)} classes; use 'ce', 'focal' or 'ldam' for more classes"
            )
        super().__init__(2)
        pos = (1 if counts[1] <= counts[0] else 0) if positive is None else positive
        check(pos in (0, 1), "positive", positive, "it must be 0 or 1", "give the class index")
        check(is_real(margin) and margin > 0, "margin", margin, "it must be > 0", "MONAI uses 1")
        check(version in ("v1", "v2"), "version", version, "it must be 'v1' or 'v2'", "use 'v1'")
        ok = imratio is None or (is_real(imratio) and 0 < imratio < 1)
        check(ok, "imratio", imratio, "it must be in (0, 1) or None", "leave it None")
        try:
            from monai.losses import AUCMLoss
        except ImportError:
            raise ModuleNotFoundError(
                f"--loss aucm needs MONAI, which is not installed: {MONAI_HINT}"
            ) from None
        self.positive, self.margin, self.version, self.imratio = pos, margin, version, imratio
        self.aucm = AUCMLoss(margin=margin, imratio=imratio, version=version)
        with torch.no_grad():  # a, b start at the class means of a perfect ranker (see above)
            self.aucm.a.fill_(1.0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._inputs(logits, target)
        score = torch.softmax(logits.float(), dim=1)[:, self.positive : self.positive + 1]
        return self.aucm(score, (target == self.positive).float()[:, None])

    def extra_repr(self) -> str:
        return f"positive={self.positive}, margin={self.margin}, version={self.version!r}"


class PESG(torch.optim.Optimizer):
    """Proximal epoch stochastic gradient (Yuan et al. 2021; LibAUC's ``PESG``), the optimizer
    the AUC-margin loss's authors recommend.

    Written here by hand because MONAI 1.6 ships ``AUCMLoss`` but no PESG (its optimizers are
    Novograd and LR helpers), and LibAUC would pull torch-geometric, transformers and OpenCV.
    The step follows LibAUC 1.4 ``PESG`` (``mode='sgd'``):

    - every gradient ``g`` is first clipped to ``[-clip_value, clip_value]``;
    - a parameter group with ``ascent=True`` (the loss's ``alpha``) takes a projected ascent
      step, ``alpha <- max(0, alpha + lr * g)``;
    - every other parameter ``p`` (the model, ``a``, ``b``) descends on
      ``d = g + epoch_decay * (p - p_ref) + weight_decay * p``, with LibAUC's averaged momentum
      ``buf <- (1 - momentum) * buf + momentum * d`` and ``p <- p - lr * buf``; ``p_ref`` is
      ``p`` when the optimizer was built or :meth:`update_regularizer` last ran (the "epoch"
      of PESG).

    The averaged momentum keeps the step at ``lr`` times a mean gradient, as LibAUC's learning
    rate of 0.1 assumes. Heavy-ball momentum (``buf <- momentum * buf + d``) takes steps
    ``1 / (1 - momentum)`` times larger (ten times at 0.9): at lr 0.1 that drove every softmax
    score to 0 within 20 steps, where its gradient vanishes, and the run never recovered.

    Args:
        params: Parameters or parameter groups (a group may set ``ascent``, ``lr``,
            ``momentum``, ``weight_decay``, ``epoch_decay``, ``clip_value``).
        lr: Step size; LibAUC uses 0.1.
        momentum: Weight of the new gradient in the averaged momentum, in [0, 1); 0 is plain SGD.
        weight_decay: L2 penalty.
        epoch_decay: Strength of the pull towards the reference point; LibAUC uses 2e-3.
        clip_value: Bound on every gradient element (LibAUC: 1.0); None for no clipping.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        epoch_decay: float = 2e-3,
        clip_value: float | None = 1.0,
    ) -> None:
        check(is_real(lr) and lr > 0, "lr", lr, "it must be > 0", "LibAUC uses 0.1")
        check(0 <= momentum < 1, "momentum", momentum, "it must be in [0, 1)", "use 0.9")
        check(weight_decay >= 0, "weight_decay", weight_decay, "it must be >= 0", "use 1e-4")
        check(epoch_decay >= 0, "epoch_decay", epoch_decay, "it must be >= 0", "use 2e-3")
        ok = clip_value is None or (is_real(clip_value) and clip_value > 0)
        check(ok, "clip_value", clip_value, "it must be > 0 or None", "LibAUC uses 1.0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            epoch_decay=epoch_decay,
            clip_value=clip_value,
            ascent=False,
        )
        super().__init__(params, defaults)
        self.update_regularizer()

    @torch.no_grad()
    def update_regularizer(self) -> None:
        """Move the reference point ``p_ref`` of every descending parameter to its value now."""
        for group in self.param_groups:
            for p in group["params"]:
                if not group["ascent"]:
                    self.state[p]["ref"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, clip = group["lr"], group["momentum"], group["clip_value"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if clip is None else p.grad.clamp(-clip, clip)
                if group["ascent"]:
                    p.add_(g, alpha=lr).clamp_(min=0)
                    continue
                state = self.state[p]
                d = g.add(p - state["ref"], alpha=group["epoch_decay"])
                if group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                if momentum:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(1 - momentum).add_(d, alpha=momentum)
                    d = buf
                p.add_(d, alpha=-lr)
        return loss


# --- registry and factory ------------------------------------------------------------------------
LOSSES: dict[str, type[ClassificationLoss]] = {
    "ce": CrossEntropyLoss,
    "weighted-ce": WeightedCrossEntropyLoss,
    "cb-ce": ClassBalancedCrossEntropyLoss,
    "cb-focal": ClassBalancedFocalLoss,
    "cost-ce": CostSensitiveCrossEntropyLoss,
    "focal": FocalLoss,
    "ldam": LDAMLoss,
    "balanced-softmax": BalancedSoftmaxLoss,
    "logit-adjusted": LogitAdjustedLoss,
    "soft-f1": SoftF1Loss,
    "aucm": AUCMarginLoss,
}


def check_loss_options(name: str, options: Mapping[str, Any]) -> type[ClassificationLoss]:
    """The loss class called ``name``, after checking that it takes every key of ``options``.

    Raises:
        ValueError: Unknown name (with the nearest one).
        TypeError: Unknown options (with the ones it accepts).
    """
    if name not in LOSSES:
        close = difflib.get_close_matches(str(name), list(LOSSES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}{hint}")
    cls = LOSSES[name]
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p not in ("class_counts", "num_classes")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, accepted, n=1)]
        advice = f"; did you mean {', '.join(hints)}?" if hints else ""
        if "class_weight" in unknown:
            advice += " (this loss takes no class_weight; pass class_weight to "
            advice += "'ce', 'focal', 'ldam', 'balanced-softmax' or 'logit-adjusted' instead)"
        raise TypeError(
            f"loss {name!r} got unknown option(s) {', '.join(unknown)}; it accepts "
            f"{', '.join(accepted) or 'no options'}{advice}"
        )
    missing = [p for p in accepted if params[p].default is params[p].empty and p not in options]
    if missing:
        raise TypeError(
            f"loss {name!r} needs option(s) {', '.join(missing)}: "
            f"--loss-option {missing[0]}=... (create_loss({name!r}, class_counts, "
            f"{missing[0]}=...))"
        )
    return cls


def create_loss(name: str, class_counts: Counts, **options: Any) -> ClassificationLoss:
    """Build the loss called ``name`` for a training split with ``class_counts`` per class.

    Args:
        name: A key of :data:`LOSSES` (a :class:`LossName`).
        class_counts: Training-split sample count of each class, in class-index order.
        **options: Keyword arguments of the loss class, e.g. ``gamma=2`` for ``focal``,
            ``cost_matrix=[[0, 1], [5, 0]]`` for ``cost-ce``, ``class_weight=`` for DRW.

    Raises:
        ValueError: Unknown name, or invalid counts or option values.
        TypeError: Unknown or missing options.
    """
    cls = check_loss_options(name, options)
    counts = counts_tensor(class_counts).long().tolist()
    params = inspect.signature(cls).parameters
    fixed: dict[str, Any] = (
        {"class_counts": counts} if "class_counts" in params else {"num_classes": len(counts)}
    )
    return cls(**fixed, **options)
