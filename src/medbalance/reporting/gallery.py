"""Image galleries of the HTML report: pictures given by the caller, not read from the run.

The evaluation passes the most confident errors and Grad-CAM maps as :class:`GalleryItem`
objects; :func:`gallery_html` draws them as a grid of captioned inline PNGs, with the heat map
overlaid beside the image when one is set. A wrong image shape fails with the item's title, so
the caller knows which picture to fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medbalance.core.figures import array_img
from medbalance.evaluation.gallery import GalleryItem
from medbalance.reporting.format import esc

__all__ = ["GalleryItem", "gallery_html"]


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
