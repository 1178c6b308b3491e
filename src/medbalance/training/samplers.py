"""Class-imbalance samplers: seeded functions of the labels that stay balanced under DDP.

Each epoch a sampler draws one global index list from ``(seed, epoch)`` alone, pads it to a
multiple of ``num_replicas`` by repeating it from the start, and rank ``r`` takes the disjoint,
equal-length shard ``indices[r::num_replicas]``. Unlike fastai's ``WeightedDL``, which switches
itself off under multi-GPU (fastai#2637), the balance survives DDP.

Specs understood by :func:`create_sampler`:

* ``none``: no sampler; the caller shuffles as usual.
* ``oversample``: every class equally likely, drawn with replacement (Buda et al. 2018).
* ``oversample:ALPHA``: partial balance. Class ``c`` with ``n_c`` items is drawn with probability
  ``p_c = n_c ** (1 - ALPHA) / sum_k n_k ** (1 - ALPHA)``, and each of its items with
  ``p_c / n_c``. ALPHA = 0 gives the natural frequencies ``n_c / N``, ALPHA = 1 a uniform ``1 / C``.
* ``undersample``: every class drawn down to the minority count, a fresh subset every epoch.
* ``balanced-batches``: every per-rank batch of ``batch_size`` holds ``batch_size / C`` items of
  each class.
* ``dual:RATE`` (binary labels): every per-rank batch of ``batch_size`` holds
  ``ceil(RATE * batch_size)`` positives and the rest negatives, as LibAUC's ``DualSampler`` (Yuan
  et al. 2021) does for the AUC-margin loss; ``dual`` alone is ``dual:0.5``.

Use::

    sampler = create_sampler("oversample", train_labels, seed=seed)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler, shuffle=sampler is None)
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
"""

from __future__ import annotations

import abc
import difflib
import math
from collections.abc import Iterator
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from medbalance.training.names import SamplerName

__all__ = [
    "SAMPLERS",
    "BalancedBatchSampler",
    "BalancedSampler",
    "DualSampler",
    "OversampleSampler",
    "SamplerName",
    "UndersampleSampler",
    "create_sampler",
    "parse_sampler_spec",
]

LabelsLike: TypeAlias = npt.ArrayLike | torch.Tensor
IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float64]


def _as_labels(labels: LabelsLike) -> IntArray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"labels must be 1-D, one class id per training item; got shape {array.shape}; "
            "pass the flat list of targets (e.g. dataset.targets)"
        )
    if array.size == 0:
        raise ValueError(
            "labels is empty: a sampler needs at least one training item; "
            "check that the training split found its images"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be integer class ids; got dtype {array.dtype}; "
            "map class names to ids 0..C-1 first"
        )
    if array.min() < 0:
        where = np.flatnonzero(array < 0)[:5].tolist()
        raise ValueError(
            f"labels must be class ids >= 0; got {int(array.min())} at position(s) {where}; "
            "map classes to ids 0..C-1 first"
        )
    return array.astype(np.int64)


def _resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ValueError(
            f"num_replicas must be >= 1; got {num_replicas}; pass the world size, "
            "or leave it None to read it from torch.distributed"
        )
    if not 0 <= rank < num_replicas:
        raise ValueError(
            f"rank must be in [0, num_replicas) = [0, {num_replicas}); got {rank}; pass this "
            "process's rank, or leave it None to read it from torch.distributed"
        )
    return num_replicas, rank


class BalancedSampler(Sampler[int], abc.ABC):
    """Base class: a seeded, DDP-aware draw of training indices.

    Subclasses implement :meth:`_draw`, the unpadded global draw of one epoch. This class pads it,
    shards it across replicas and exposes the fitted state.

    Args:
        labels: Class id (>= 0) of every training item, in dataset order.
        seed: Non-negative seed; with the epoch it fixes the draw.
        num_replicas: Number of processes; default the torch.distributed world size, else 1.
        rank: This process's rank; default the torch.distributed rank, else 0.
        num_samples: Global epoch length before padding; default the number of training items.

    Attributes:
        class_counts_: Training items per class id ``0..max(labels)``.
        classes_: Class ids with at least one item; only these are balanced (an id with no
            items cannot be drawn, and its ``class_probs_`` entry is 0).
        class_probs_: Expected share of each class id in an epoch's draw.
        num_samples: Global epoch length before padding.
        epoch: Current epoch, set with :meth:`set_epoch`.
    """

    def __init__(
        self,
        *,
        labels: LabelsLike,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        if seed < 0:
            raise ValueError(f"seed must be >= 0; got {seed}; use a non-negative integer")
        if num_samples is not None and num_samples < 1:
            raise ValueError(
                f"num_samples (the global epoch length) must be >= 1; got {num_samples}; "
                "leave it None to use the number of training items"
            )
        self.labels = _as_labels(labels)
        self.seed = seed
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        self.epoch = 0
        self.class_counts_: IntArray = np.bincount(self.labels).astype(np.int64)
        self.classes_: IntArray = np.flatnonzero(self.class_counts_).astype(np.int64)
        self._class_indices = [np.flatnonzero(self.labels == c) for c in self.classes_]
        self.class_probs_: FloatArray = np.zeros(len(self.class_counts_), dtype=np.float64)
        self.class_probs_[self.classes_] = 1.0 / len(self.classes_)
        self.num_samples = len(self.labels) if num_samples is None else num_samples

    @property
    def total_size(self) -> int:
        """Global epoch length after padding to a multiple of ``num_replicas``."""
        return math.ceil(self.num_samples / self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose draw the next iteration yields (call it on every rank).

        Args:
            epoch: Non-negative epoch number.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch}; count epochs from 0")
        self.epoch = epoch

    @abc.abstractmethod
    def _draw(self, rng: np.random.Generator) -> IntArray:
        """Return the unpadded global draw of ``num_samples`` indices for one epoch."""

    def _arrange(self, draw: IntArray) -> IntArray:
        """Pad ``draw`` to ``total_size`` by repeating it from the start."""
        return np.resize(draw, self.total_size)

    def global_indices(self) -> IntArray:
        """The padded global draw of the current epoch; rank ``r`` yields ``[r::num_replicas]``."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return self._arrange(self._draw(rng).astype(np.int64))

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def __repr__(self) -> str:
        counts = {int(c): int(self.class_counts_[c]) for c in self.classes_}
        return (
            f"{type(self).__name__}(class_counts={counts}, num_samples={self.num_samples}, "
            f"num_replicas={self.num_replicas}, rank={self.rank}, seed={self.seed}, "
            f"epoch={self.epoch})"
        )


class OversampleSampler(BalancedSampler):
    """Draw with replacement, class ``c`` with probability ``p_c ∝ n_c ** (1 - alpha)``.

    ``alpha = 1`` (default) is full balance, every class equally likely (Buda et al. 2018);
    ``alpha = 0`` is the natural distribution, every item equally likely; values in between
    interpolate. Within a class every item is equally likely, ``p_c / n_c``.

    Args:
        labels: Class id (>= 0) of every training item.
        alpha: Degree of balance in [0, 1].
        seed: As for :class:`BalancedSampler`.
        num_replicas: As for :class:`BalancedSampler`.
        rank: As for :class:`BalancedSampler`.
        num_samples: Global epoch length; default the number of training items.

    Attributes:
        class_probs_: ``p_c`` per class id.
        class_weights_: Probability of drawing one given item of class ``c``, ``p_c / n_c``.
        sample_probs_: Probability of drawing each training item (sums to 1).
    """

    def __init__(
        self,
        *,
        labels: LabelsLike,
        alpha: float = 1.0,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"alpha must be in [0, 1] (0 = natural class frequencies, 1 = every class "
                f"equally likely); got {alpha}; e.g. alpha=0.5 for partial balance"
            )
        super().__init__(
            labels=labels, seed=seed, num_replicas=num_replicas, rank=rank, num_samples=num_samples
        )
        self.alpha = float(alpha)
        counts = self.class_counts_.astype(np.float64)
        present = counts > 0
        powered = np.where(present, counts ** (1.0 - self.alpha), 0.0)
        self.class_probs_ = powered / powered.sum()
        self.class_weights_: FloatArray = np.zeros_like(counts)
        self.class_weights_[present] = self.class_probs_[present] / counts[present]
        sample_probs = self.class_weights_[self.labels]
        self.sample_probs_: FloatArray = sample_probs / sample_probs.sum()

    def _draw(self, rng: np.random.Generator) -> IntArray:
        return rng.choice(len(self.labels), size=self.num_samples, p=self.sample_probs_)


class UndersampleSampler(BalancedSampler):
    """Each epoch, draw every class down to the minority count, without replacement.

    Each epoch holds exactly ``m = min_c n_c`` items of each class (a fresh random subset of the
    larger classes every epoch), shuffled, so its length is ``C * m``. Under DDP the padding to a
    multiple of ``num_replicas`` repeats at most ``num_replicas - 1`` items.

    Args:
        labels: Class id (>= 0) of every training item.
        seed: As for :class:`BalancedSampler`.
        num_replicas: As for :class:`BalancedSampler`.
        rank: As for :class:`BalancedSampler`.

    Attributes:
        minority_count_: ``m``, the number of items drawn from every class per epoch.
    """

    def __init__(
        self,
        *,
        labels: LabelsLike,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(labels=labels, seed=seed, num_replicas=num_replicas, rank=rank)
        self.minority_count_ = int(self.class_counts_[self.classes_].min())
        self.num_samples = len(self.classes_) * self.minority_count_

    def _draw(self, rng: np.random.Generator) -> IntArray:
        m = self.minority_count_
        picked = [rng.choice(idx, size=m, replace=False) for idx in self._class_indices]
        return rng.permutation(np.concatenate(picked))


class BalancedBatchSampler(BalancedSampler):
    """Every batch of ``batch_size`` holds ``batch_size / C`` items of each class.

    ``batch_size`` is the per-rank batch size given to the ``DataLoader`` (which must not shuffle).
    The epoch is ``ceil(num_samples / batch_size)`` balanced batches, padded with whole batches from
    the start to a multiple of ``num_replicas``; batch ``j`` goes to rank ``j % num_replicas``, so
    every rank's shard is a sequence of whole balanced batches. Within a class, items are taken
    from fresh shuffles of the class in turn, so each is used ``floor`` or ``ceil`` of its fair
    share of times.

    Args:
        labels: Class id (>= 0) of every training item.
        batch_size: Per-rank batch size; a multiple of the number of classes.
        seed: As for :class:`BalancedSampler`.
        num_replicas: As for :class:`BalancedSampler`.
        rank: As for :class:`BalancedSampler`.
        num_samples: Global epoch length, rounded up to whole batches; default the number of
            training items.

    Attributes:
        num_batches_: Balanced batches per epoch, before padding.
    """

    def __init__(
        self,
        *,
        labels: LabelsLike,
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__(
            labels=labels, seed=seed, num_replicas=num_replicas, rank=rank, num_samples=num_samples
        )
        n_classes = len(self.classes_)
        if batch_size < 1 or batch_size % n_classes != 0:
            lower = max(n_classes, batch_size // n_classes * n_classes)
            raise ValueError(
                f"balanced-batches needs batch_size to be a positive multiple of the "
                f"{n_classes} classes in labels; got batch_size={batch_size}; use e.g. "
                f"{lower} or {lower + n_classes}"
            )
        self.batch_size = batch_size
        self.num_batches_ = math.ceil(self.num_samples / batch_size)
        self.num_samples = self.num_batches_ * batch_size

    @property
    def total_size(self) -> int:
        """Global epoch length after padding to whole batches on every replica."""
        batches = math.ceil(self.num_batches_ / self.num_replicas) * self.num_replicas
        return batches * self.batch_size

    def _draw(self, rng: np.random.Generator) -> IntArray:
        per_class = self.batch_size // len(self.classes_)
        need = self.num_batches_ * per_class
        columns = []
        for idx in self._class_indices:
            passes = rng.permuted(np.tile(idx, (math.ceil(need / len(idx)), 1)), axis=1)
            columns.append(passes.reshape(-1)[:need].reshape(self.num_batches_, per_class))
        batches = np.concatenate(columns, axis=1)
        return rng.permuted(batches, axis=1).reshape(-1)

    def _arrange(self, draw: IntArray) -> IntArray:
        batches = draw.reshape(self.num_batches_, self.batch_size)
        n_padded = self.total_size // self.batch_size
        batches = batches[np.arange(n_padded) % self.num_batches_]
        # [i, r, j]: item j of batch i * R + r, which goes to rank r; global position is
        # (i * batch_size + j) * R + r, so that indices[r::R] is rank r's batches in order.
        grid = batches.reshape(n_padded // self.num_replicas, self.num_replicas, self.batch_size)
        return np.ascontiguousarray(grid.transpose(0, 2, 1)).reshape(-1)


class DualSampler(BalancedSampler):
    """Every batch of ``batch_size`` holds ``ceil(positive_rate * batch_size)`` positives.

    LibAUC's ``DualSampler`` (Yuan et al. 2021), which its authors pair with the AUC-margin loss:
    a pairwise loss needs positives and negatives in every batch, so the positives are drawn up
    to a fixed share of each batch and the negatives fill the rest. ``batch_size`` is the per-rank
    batch size given to the ``DataLoader`` (which must not shuffle). The epoch is
    ``ceil(num_samples / batch_size)`` batches, padded with whole batches from the start to a
    multiple of ``num_replicas``, batch ``j`` to rank ``j % num_replicas`` (as
    :class:`BalancedBatchSampler`). Within a class, items come from fresh shuffles of the class in
    turn. The share is exact per batch, so a rate below the natural positive share draws fewer
    positives than the data holds.

    Args:
        labels: Class id of every training item; exactly two classes.
        positive_rate: Share of positives in every batch, in (0, 1).
        batch_size: Per-rank batch size, >= 2 (a batch needs a positive and a negative).
        positive: Class id of the positives; default the minority class (class 1 on a tie).
        seed: As for :class:`BalancedSampler`.
        num_replicas: As for :class:`BalancedSampler`.
        rank: As for :class:`BalancedSampler`.
        num_samples: Global epoch length, rounded up to whole batches; default the number of
            training items.

    Attributes:
        positive_: Class id of the positives.
        positives_per_batch_: Positives in every batch.
        num_batches_: Batches per epoch, before padding.
    """

    def __init__(
        self,
        *,
        labels: LabelsLike,
        positive_rate: float,
        batch_size: int,
        positive: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__(
            labels=labels, seed=seed, num_replicas=num_replicas, rank=rank, num_samples=num_samples
        )
        if len(self.classes_) != 2:
            raise ValueError(
                f"dual needs labels of exactly two classes (positives and negatives); got "
                f"{len(self.classes_)} ({self.classes_.tolist()}); use 'balanced-batches' or "
                "'oversample' for more classes"
            )
        if not 0.0 < positive_rate < 1.0:
            raise ValueError(
                f"positive_rate must be in (0, 1) (the share of positives in a batch); got "
                f"{positive_rate}; e.g. dual:0.2"
            )
        if batch_size < 2:
            raise ValueError(
                f"dual needs batch_size >= 2 (a positive and a negative per batch); got "
                f"{batch_size}"
            )
        counts = self.class_counts_[self.classes_]
        default = int(self.classes_[1] if counts[0] >= counts[1] else self.classes_[0])
        self.positive_ = default if positive is None else positive
        if self.positive_ not in self.classes_:
            raise ValueError(
                f"positive class id {self.positive_} has no items in labels (classes "
                f"{self.classes_.tolist()}); pass one of them, or None for the minority class"
            )
        self.positive_rate = float(positive_rate)
        self.batch_size = batch_size
        k = min(batch_size - 1, math.ceil(self.positive_rate * batch_size))
        self.positives_per_batch_ = k
        self.num_batches_ = math.ceil(self.num_samples / batch_size)
        self.num_samples = self.num_batches_ * batch_size
        self.class_probs_ = np.zeros(len(self.class_counts_), dtype=np.float64)
        self.class_probs_[self.classes_] = (batch_size - k) / batch_size
        self.class_probs_[self.positive_] = k / batch_size

    # whole batches per rank, exactly as BalancedBatchSampler arranges them
    total_size = BalancedBatchSampler.total_size
    _arrange = BalancedBatchSampler._arrange

    def _draw(self, rng: np.random.Generator) -> IntArray:
        k = self.positives_per_batch_
        columns = []
        for idx, take in (
            (np.flatnonzero(self.labels == self.positive_), k),
            (np.flatnonzero(self.labels != self.positive_), self.batch_size - k),
        ):
            need = self.num_batches_ * take
            passes = rng.permuted(np.tile(idx, (math.ceil(need / len(idx)), 1)), axis=1)
            columns.append(passes.reshape(-1)[:need].reshape(self.num_batches_, take))
        batches = np.concatenate(columns, axis=1)
        return rng.permuted(batches, axis=1).reshape(-1)


SAMPLERS: dict[str, type[BalancedSampler]] = {
    SamplerName.OVERSAMPLE.value: OversampleSampler,
    SamplerName.UNDERSAMPLE.value: UndersampleSampler,
    SamplerName.BALANCED_BATCHES.value: BalancedBatchSampler,
    SamplerName.DUAL.value: DualSampler,
}


def parse_sampler_spec(spec: str, also: str = "") -> tuple[SamplerName, float | None]:
    """Split a spec such as ``oversample:0.5`` into its name and parameter.

    Args:
        spec: ``none``, ``oversample``, ``oversample:ALPHA``, ``undersample``,
            ``balanced-batches``, ``dual`` or ``dual:RATE``.
        also: more valid forms for the error's list (the config's ``auto``).

    Returns:
        The sampler name and its parameter, ``alpha`` or ``dual``'s rate (None when the spec
        gives none).
    """
    name, sep, arg = spec.partition(":")
    choices = [member.value for member in SamplerName]
    if name not in choices:
        close = difflib.get_close_matches(name.lower(), choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"unknown sampler '{spec}'; choose one of: {', '.join(choices)}, "
            f"oversample:ALPHA (ALPHA in [0, 1]), dual:RATE (RATE in (0, 1)){also}{hint}"
        )
    kind = SamplerName(name)
    if not sep:
        return kind, None
    if kind is SamplerName.DUAL:
        try:
            rate = float(arg)
        except ValueError:
            rate = math.nan
        if not 0.0 < rate < 1.0:
            raise ValueError(
                f"the rate in sampler spec '{spec}' must be a number in (0, 1), the share of "
                f"positives in every batch; got '{arg}'; e.g. dual:0.2"
            )
        return kind, rate
    if kind is not SamplerName.OVERSAMPLE:
        raise ValueError(
            f"sampler '{name}' takes no parameter; got '{spec}'; write '{name}' "
            "(only oversample:ALPHA and dual:RATE take one)"
        )
    try:
        alpha = float(arg)
    except ValueError:
        raise ValueError(
            f"malformed alpha in sampler spec '{spec}': '{arg}' is not a number; "
            "write oversample:ALPHA with ALPHA in [0, 1], e.g. oversample:0.5"
        ) from None
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"alpha in sampler spec '{spec}' must be in [0, 1] (0 = natural class frequencies, "
            f"1 = every class equally likely); got {alpha}; e.g. oversample:0.5"
        )
    return kind, alpha


def create_sampler(
    spec: str,
    labels: LabelsLike,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    num_samples: int | None = None,
    positive: int | None = None,
) -> BalancedSampler | None:
    """Build the sampler named by ``spec``, or None for ``none`` (the caller then shuffles).

    Args:
        spec: Sampler spec; see :func:`parse_sampler_spec`.
        labels: Class id (>= 0) of every training item.
        seed: Non-negative seed.
        batch_size: Per-rank batch size; required by ``balanced-batches`` and ``dual`` and
            ignored otherwise.
        num_replicas: Number of processes; default from torch.distributed, else 1.
        rank: This process's rank; default from torch.distributed, else 0.
        num_samples: Global epoch length; not accepted by ``undersample``.
        positive: Class id of ``dual``'s positives: pass the run's positive class, which the
            loss ranks first (default the minority class, which is not always it: a named
            positive such as ``PNEUMONIA`` may be the majority); ignored by the others.

    Returns:
        The sampler, or None for ``none``.
    """
    kind, alpha = parse_sampler_spec(spec)
    if kind is SamplerName.NONE:
        return None
    common: dict[str, Any] = dict(labels=labels, seed=seed, num_replicas=num_replicas, rank=rank)
    if kind is SamplerName.OVERSAMPLE:
        alpha = 1.0 if alpha is None else alpha
        return OversampleSampler(alpha=alpha, num_samples=num_samples, **common)
    if kind is SamplerName.UNDERSAMPLE:
        if num_samples is not None:
            raise ValueError(
                f"undersample draws exactly C * (minority count) items per epoch, so "
                f"num_samples={num_samples} cannot apply; drop num_samples or use 'oversample'"
            )
        return UndersampleSampler(**common)
    if kind is SamplerName.DUAL:
        if batch_size is None:
            raise ValueError(
                "dual needs batch_size (the per-rank DataLoader batch size); pass batch_size=..."
            )
        rate = 0.5 if alpha is None else alpha  # LibAUC's default sampling_rate
        return DualSampler(
            positive_rate=rate,
            batch_size=batch_size,
            positive=positive,
            num_samples=num_samples,
            **common,
        )
    if batch_size is None:
        raise ValueError(
            "balanced-batches needs batch_size (the per-rank DataLoader batch size, a multiple "
            "of the number of classes); pass batch_size=..."
        )
    return BalancedBatchSampler(batch_size=batch_size, num_samples=num_samples, **common)
