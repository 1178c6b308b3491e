"""The figures of :func:`medbalance.data.inspection.write_inspection`.

:func:`plot_counts` draws ``class_counts.png`` (images per class and split) and
:func:`plot_samples` draws ``samples.png`` (a few images of each class), each on a
:func:`~medbalance.core.figures.new_figure`; :mod:`medbalance.data.inspection` saves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medbalance.core.figures import new_figure
from medbalance.data.catalog import Catalog
from medbalance.data.images import read_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from medbalance.data.inspection import Inspection

__all__ = ["plot_counts", "plot_samples"]


def plot_counts(inspection: Inspection) -> Figure:
    """Bars of the images per class, grouped by split, with each split's imbalance ratio."""
    splits = list(inspection.splits.values())
    n_classes = len(inspection.class_names)
    figure, (ax,) = new_figure(max(4.5, 1.5 + 0.45 * n_classes * len(splits)), 3.6)
    x, width = np.arange(len(splits)), 0.8 / n_classes
    for c, name in enumerate(inspection.class_names):
        counts = [s.classes[name].count for s in splits]
        bars = ax.bar(x + (c - (n_classes - 1) / 2) * width, counts, width, label=name)
        ax.bar_label(bars, fontsize=7, padding=1)
    ratios = ["n/a" if s.imbalance_ratio is None else f"{s.imbalance_ratio:.2f}" for s in splits]
    ax.set_xticks(x, [f"{s.name}\nratio {r}" for s, r in zip(splits, ratios, strict=True)])
    ax.set_ylabel("images")
    ax.set_xlabel("ratio: largest / smallest class count", fontsize=8)
    ax.set_title("images per class and split", fontsize=10)
    ax.margins(y=0.12)
    ax.legend(fontsize=8)
    return figure


def plot_samples(inspection: Inspection, catalog: Catalog, per_class: int = 8) -> Figure:
    """Up to ``per_class`` random readable images of each class, one row per class.

    The images come from the train split when it has any of the class, else from any split;
    the draw is seeded, so the figure is the same every time.
    """
    ok = np.ones(len(catalog), dtype=bool)
    if catalog.paths is not None:
        bad = {path for path, _ in [*inspection.unreadable, *inspection.not_images]}
        ok = np.array([str(p) not in bad for p in catalog.paths], dtype=bool)
    train = catalog.splits == "train"
    rng = np.random.default_rng(0)
    rows = []
    for c in range(catalog.n_classes):
        pool = np.flatnonzero(ok & (catalog.labels == c) & train)
        if len(pool) == 0:  # no train images of this class: take them from any split
            pool = np.flatnonzero(ok & (catalog.labels == c))
        rows.append(np.sort(rng.choice(pool, min(per_class, len(pool)), replace=False)))
    cols = max(1, *(len(row) for row in rows))
    figure, flat = new_figure(1.4 * cols + 0.6, 1.5 * len(rows) + 0.5, ncols=cols, nrows=len(rows))
    axes = np.array(flat, dtype=object).reshape(len(rows), cols)
    for r, row in enumerate(rows):
        axes[r][0].set_ylabel(catalog.class_names[r], fontsize=9, fontweight="bold")
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(row):
                ax.set_frame_on(False)
                continue
            pixels = _thumbnail(catalog, int(row[k]))
            if pixels.ndim == 2:
                ax.imshow(pixels, cmap="gray")
            else:
                ax.imshow(pixels / np.iinfo(pixels.dtype).max)
            ax.set_title(Path(catalog.origins[row[k]]).name[:24], fontsize=6)
    where = "train split" if train.any() else "all images"
    figure.suptitle(f"{where}: up to {per_class} random images per class", fontsize=10)
    return figure


def _thumbnail(catalog: Catalog, index: int, side: int = 256) -> np.ndarray:
    """An image of the catalog, strided down to at most about ``side`` pixels."""
    if catalog.images is not None:
        pixels = catalog.images[index]
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    elif catalog.paths is not None:
        pixels = read_image(catalog.paths[index])
    else:
        raise ValueError(f"{catalog.source}: the catalog has neither image paths nor images")
    step = max(1, -(-max(pixels.shape[:2]) // side))
    return np.asarray(pixels[::step, ::step])
