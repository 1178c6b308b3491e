"""Image galleries of the HTML report: pictures given by the caller, not read from the run.

The evaluation passes the most confident errors and Grad-CAM maps as :class:`GalleryItem`
objects; :func:`gallery_html` draws them as a grid of captioned inline PNGs, with the heat map
overlaid beside the image when one is set. A wrong image shape fails with the item's title, so
the caller knows which picture to fix.

Grad-CAM maps that all light the same region, whatever the image shows, are a sign of a shortcut
(a marker, a border, a device in the same place) or of a weak model. :func:`cam_spread` measures
how alike the maps of a gallery are (the spread of their peaks and their mean pairwise
correlation) and :func:`cam_caveat` turns that into the page's caveat, or a line saying they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from medbalance.core.figures import array_img
from medbalance.evaluation.gallery import GalleryItem
from medbalance.reporting.format import esc

__all__ = ["CamSpread", "GalleryItem", "cam_caveat", "cam_spread", "gallery_html"]

SAME_PEAK_SPREAD = 0.1  # peaks this close to their mean (in image sides) light one region
SAME_CORRELATION = 0.9  # maps this correlated on average are one map
_GRID = 32  # maps are compared on a common grid of this side


@dataclass(frozen=True)
class CamSpread:
    """How alike the Grad-CAM maps of a gallery are.

    Attributes:
        maps: the maps compared (those that are not flat).
        peak_spread: mean distance of the maps' peaks from their mean peak, in image sides
            (0: every map peaks at the same place; about 0.38 for peaks spread evenly).
        correlation: mean Pearson correlation over all pairs of maps (1: the same map).
        centre: the mean peak as ``(x, y)``, each in [0, 1] from the top left.
    """

    maps: int
    peak_spread: float
    correlation: float
    centre: tuple[float, float]

    @property
    def same_region(self) -> bool:
        """Every map lights about the same region: peaks together, or maps nearly equal."""
        return self.peak_spread <= SAME_PEAK_SPREAD or self.correlation >= SAME_CORRELATION

    @property
    def where(self) -> str:
        """The mean peak in words: ``the top left``, ``the centre``, ``the bottom middle``..."""
        x, y = self.centre
        row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
        column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
        if row == "middle":
            return "the centre" if column == "centre" else f"the middle {column}"
        return f"the {row} {'middle' if column == 'centre' else column}"


def cam_spread(heatmaps: Sequence[np.ndarray]) -> CamSpread | None:
    """How alike ``heatmaps`` are; None when fewer than three of them are not flat.

    Each map (``H x W``, any size) is resized to a common grid; flat maps (all one value, such
    as an all-zero map) have no peak and are left out.
    """
    from PIL import Image

    grids = []
    for heat in heatmaps:
        heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
        if heat.ndim != 2 or not np.ptp(heat) > 0:
            continue
        image = Image.fromarray(heat).resize((_GRID, _GRID), Image.Resampling.BILINEAR)
        grids.append(np.asarray(image, dtype=np.float64))
    if len(grids) < 3:
        return None
    stack = np.stack(grids)
    flat = stack.reshape(len(grids), -1)
    rows, cols = np.unravel_index(flat.argmax(axis=1), (_GRID, _GRID))
    peaks = np.stack([(cols + 0.5) / _GRID, (rows + 0.5) / _GRID], axis=1)
    centre = peaks.mean(axis=0)
    spread = float(np.linalg.norm(peaks - centre, axis=1).mean())
    centred = flat - flat.mean(axis=1, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    correlation = float(
        np.mean([centred[i] @ centred[j] for i, j in combinations(range(len(grids)), 2)])
    )
    return CamSpread(len(grids), spread, correlation, (float(centre[0]), float(centre[1])))


def cam_caveat(items: Sequence[GalleryItem]) -> str:
    """The Grad-CAM gallery's caveat (a warning callout) when its maps all light the same region,
    a plain line saying how much they differ otherwise, and nothing for fewer than three maps."""
    spread = cam_spread([item.heatmap for item in items if item.heatmap is not None])
    if spread is None:
        return ""
    measured = (
        f"peaks on average {spread.peak_spread:.0%} of the image side from their mean, mean "
        f"pairwise correlation of the maps {spread.correlation:.2f}"
    )
    if not spread.same_region:
        return f"<p>{esc(f'The {spread.maps} maps differ from image to image ({measured}).')}</p>"
    text = (
        f"Caution: these {spread.maps} Grad-CAM maps all light about the same region, "
        f"{spread.where} of the image ({measured}). Maps that do not follow what each image shows "
        "are a sign of a shortcut (a marker, text, a border or a device in the same place on many "
        "images) or of a weak model that has not learnt where to look. Check the images in that "
        "region before trusting the model, and do not read these maps as where the disease is."
    )
    return f'<div class="callout warn">{esc(text)}</div>'


def gallery_html(items: Sequence[GalleryItem]) -> str:
    """The items as a grid of ``<figure>``s, wider when any has a heat map.

    Raises:
        ValueError: An image or heat map has a wrong shape; the message names the item.
    """
    figures = [_figure(item) for item in items]
    kind = "gallery cam" if any(item.heatmap is not None for item in items) else "gallery"
    return f'<div class="{kind}">{"".join(figures)}</div>'


def _figure(item: GalleryItem) -> str:
    from medbalance.evaluation.gradcam import as_rgb, overlay

    try:
        rgb = np.round(as_rgb(item.image) * 255).astype(np.uint8)
        image = array_img(rgb, item.title)
        if item.heatmap is not None:
            cam = array_img(overlay(rgb, item.heatmap), f"Grad-CAM: {item.title}")
            image = f"<div>{image}{cam}</div>"
    except ValueError as error:
        raise ValueError(f"gallery image {item.title!r}: {error}") from error
    caption = f"<b>{esc(item.title)}</b>{esc(item.caption)}"
    if item.heatmap is not None and not np.nanmax(item.heatmap) > 0:
        caption += "<br>No region raised the score (an all-zero map)."
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"
