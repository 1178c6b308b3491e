"""Matplotlib figures without pyplot's global state, turned into PNG files or inline images.

Every plot in medbalance (``inspect``, ``report``, ``compare``, ``lr-find``) is drawn on a
:class:`~matplotlib.figure.Figure` with its own Agg canvas, so plotting is thread-safe, needs no
display and never leaks figures. Matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medbalance.core.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["array_img", "figure_img", "new_figure", "png_bytes", "png_img", "save_png"]


def new_figure(
    width: float, height: float, ncols: int = 1, nrows: int = 1
) -> tuple[Figure, list[Any]]:
    """A ``width`` × ``height`` inch figure, constrained layout, and its axes as a flat list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(figure)  # the Agg backend, without pyplot's global state
    return figure, list(np.atleast_1d(figure.subplots(nrows, ncols)).ravel())


def png_bytes(figure: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (reproducible: no software stamp); the figure is cleared."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    figure.clear()
    return buffer.getvalue()


def save_png(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Write the figure to ``path`` as a PNG, atomically."""
    data = png_bytes(figure, dpi)
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def png_img(data: bytes, alt: str, attributes: str = "") -> str:
    """An ``<img>`` tag holding PNG ``data`` inline, so an HTML page is one self-contained file."""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    space = " " if attributes else ""
    return f'<img {attributes}{space}src="{uri}" alt="{html.escape(alt)}">'


def figure_img(figure: Figure, alt: str, dpi: int = 150) -> str:
    """The figure as an inline PNG ``<img class="plot">``, no wider than its size at 96 dpi."""
    width = round(figure.get_figwidth() * 96)
    return png_img(png_bytes(figure, dpi), alt, f'class="plot" style="max-width:{width}px"')


def array_img(rgb: np.ndarray, alt: str) -> str:
    """An ``H × W × 3`` uint8 image as an inline PNG: small ones enlarged with sharp pixels,
    large ones reduced to 448 px so that the page stays light."""
    from PIL import Image

    picture = Image.fromarray(rgb)
    scale = max(1, 224 // max(picture.size))
    picture = picture.resize(
        (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
    )
    picture.thumbnail((448, 448), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return png_img(buffer.getvalue(), alt)
