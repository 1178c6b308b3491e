"""Training data, ready for the loop: catalog, splits and presized images, plus a batch loader.

:func:`prepare_data` (which ``medbalance.training.prepare.prepare_run`` calls with a config)
makes a :class:`Prepared` (the catalog with final splits, the presized images, the class
statistics of the training split and a fingerprint of the data); :class:`BatchLoader` yields
``(uint images, labels)`` batches from it, gathered straight from the memory-mapped presize
cache, with one batch prefetched on a background thread.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medbalance.data.cache import Presized, hash_files, presize
from medbalance.data.catalog import Catalog, load_catalog
from medbalance.data.findings import run_findings
from medbalance.data.splits import assign_splits, resplit_val

__all__ = [
    "BatchLoader",
    "Prepared",
    "default_positive_class",
    "fingerprint",
    "prepare_data",
]

_AUTO_VAL = 0.2  # the val fraction carved from train when the data has no val split
_NEGATIVE_WORDS = ("normal", "benign", "healthy", "negative", "no finding", "no_finding", "nevus")


@dataclass
class Prepared:
    """A data set ready for training and evaluation.

    Attributes:
        catalog: the items with their final splits (without the unreadable ones when skipped).
        images: the presized images, in catalog order.
        fingerprint: :func:`fingerprint` of the catalog.
        unreadable: ``(path, reason)`` of each file left out as unreadable.
        warnings: each data warning that holds for a run trained on this data, one line each
            (no val split, a tiny val split, identical files or patients across the given
            splits, look-alike class names, patient ids in file names); empty unless prepared
            for training.
    """

    catalog: Catalog
    images: Presized
    fingerprint: str
    unreadable: list[tuple[str, str]]
    warnings: tuple[str, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.catalog.class_names

    @property
    def channels(self) -> int:
        return self.images.channels

    def indices(self, split: str) -> np.ndarray:
        return self.catalog.indices(split)

    def train_counts(self) -> list[int]:
        return [int(n) for n in self.catalog.class_counts("train")]


def fingerprint(catalog: Catalog) -> str:
    """A short hash of what the data is: items, labels, splits and the pixels (the arrays
    themselves, or each file's content hash from the presize cache)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update("\n".join(catalog.origins).encode())
    digest.update(catalog.labels.astype(np.int64).tobytes())
    digest.update("\n".join(catalog.splits.tolist()).encode())
    if catalog.images is not None:
        digest.update(np.ascontiguousarray(catalog.images).tobytes())
    if catalog.digests is not None:
        digest.update("\n".join(catalog.digests).encode())
    return digest.hexdigest()


def default_positive_class(class_names: Sequence[str], train_counts: Sequence[int]) -> int:
    """The positive class of a binary task: the class that is not 'normal'/'benign'/...,

    else the minority class of the training split.
    """
    negatives = [
        i for i, n in enumerate(class_names) if any(w in n.lower() for w in _NEGATIVE_WORDS)
    ]
    if len(class_names) == 2 and len(negatives) == 1:
        return 1 - negatives[0]
    return int(np.argmin(train_counts))


def prepare_data(
    source: str,
    *,
    presize_to: int,
    seed: int = 0,
    resplit_val_fraction: float | None = None,
    group_pattern: str | None = None,
    group_column: str | None = None,
    skip_unreadable: bool = False,
    for_training: bool = True,
) -> Prepared:
    """Load, split and presize a data set (decoding only images not cached yet).

    The splits medbalance makes keep each patient's images and each group of identical files
    together; files are hashed once, through the presize cache's index. ``for_training=False``
    (evaluating other data) accepts data without train or val images: an external test set laid
    out as ``ROOT/test/CLASS``.
    """
    catalog = load_catalog(source, group_pattern=group_pattern, group_column=group_column)
    catalog = assign_splits(hash_files(catalog, presize_to), seed=seed)
    warnings: list[str] = []
    no_val = not len(catalog.indices("val")) and len(catalog.indices("train"))
    if for_training and no_val and resplit_val_fraction is None:
        warnings.append(
            f"{catalog.source} has no val split; carving a stratified, patient-grouped "
            f"{_AUTO_VAL:.0%} of train as val (as --resplit-val {_AUTO_VAL} does), identical "
            "files kept together"
        )
        resplit_val_fraction = _AUTO_VAL
    if resplit_val_fraction is not None:
        catalog = resplit_val(catalog, resplit_val_fraction, seed=seed)
    for split in ("train", "val") if for_training else ():
        counts = catalog.class_counts(split)
        if counts.sum() and (counts == 0).any():
            missing = [n for n, c in zip(catalog.class_names, counts, strict=True) if c == 0]
            raise ValueError(
                f"{catalog.source}: the {split} split has no images of {', '.join(missing)}; "
                "every class needs training and validation images (try --resplit-val 0.2)"
            )
    if for_training and not len(catalog.indices("train")):
        raise ValueError(f"{catalog.source}: no train split; give one or let medbalance split")
    images, catalog, unreadable = presize(catalog, presize_to, skip_unreadable=skip_unreadable)
    if for_training:  # said by the run (its header), carried into metrics.json and the report
        warnings += [finding.line() for finding in run_findings(catalog)]
    return Prepared(catalog, images, fingerprint(catalog), unreadable, tuple(warnings))


class BatchLoader:
    """Yield ``(images, labels)`` tensor batches for an order of item indices.

    Images stay uint8 (uint16 data comes as int32, which torch moves and converts everywhere);
    the batch transform on the device turns them into floats. One batch is prefetched on a
    background thread so reading the memory map overlaps the model step.
    """

    def __init__(
        self,
        images: Presized,
        labels: np.ndarray,
        order: Iterable[int],
        batch_size: int,
        *,
        drop_last: bool = False,
        pin_memory: bool = False,
    ) -> None:
        self.images = images
        self.labels = labels
        self.order = np.fromiter(order, dtype=np.int64)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order[k * self.batch_size : (k + 1) * self.batch_size]
        array = self.images.take(idx)
        if array.dtype == np.uint16:
            array = array.astype(np.int32)
        x = torch.from_numpy(array)
        y = torch.from_numpy(self.labels[idx].astype(np.int64))
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        if n <= 1:
            yield from (self._batch(k) for k in range(n))
            return
        ready: queue.Queue[tuple[torch.Tensor, torch.Tensor] | BaseException] = queue.Queue(2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for k in range(n):
                    if stop.is_set():
                        return
                    ready.put(self._batch(k))
            except BaseException as error:  # hand the failure to the consumer
                ready.put(error)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            for _ in range(n):
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.01)
