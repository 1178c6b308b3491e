"""The pictures an evaluation picks for the report: the most confident errors, and Grad-CAM
heat maps for a few true and false positives (binary tasks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbalance.data.prepared import Prepared
from medbalance.evaluation.inference import Trained
from medbalance.evaluation.scoring import Scores

__all__ = ["GalleryItem", "pick_gallery"]


@dataclass(frozen=True)
class GalleryItem:
    """One image of a gallery; ``heatmap`` (``H x W`` in [0, 1]) is overlaid when set.

    ``image`` is ``H x W`` or ``H x W x 3``, in [0, 1] or ``uint8``.
    """

    title: str
    image: np.ndarray
    heatmap: np.ndarray | None = None
    caption: str = ""


def pick_gallery(
    trained: Trained, data: Prepared, scores: Scores, preds: np.ndarray
) -> tuple[list[GalleryItem], list[GalleryItem]]:
    """Most confident errors, and Grad-CAM overlays for a few true and false positives."""
    return _errors(trained, data, scores, preds), _cams(trained, data, scores, preds)


def _errors(
    trained: Trained, data: Prepared, scores: Scores, preds: np.ndarray
) -> list[GalleryItem]:
    names = trained.class_names
    wrong = np.flatnonzero(preds != scores.labels)
    confidence = scores.probs[np.arange(len(preds)), preds]
    worst = wrong[np.argsort(-confidence[wrong])][:8]
    return [
        GalleryItem(
            title=f"{names[scores.labels[row]]} called {names[preds[row]]}",
            image=_display_image(data, scores.indices[row]),
            caption=f"{data.catalog.origins[scores.indices[row]]}: p={confidence[row]:.2f}",
        )
        for row in worst
    ]


def _cams(trained: Trained, data: Prepared, scores: Scores, preds: np.ndarray) -> list[GalleryItem]:
    import torch

    from medbalance.evaluation.gradcam import gradcam_maps
    from medbalance.models.tta import unwrap

    if len(trained.class_names) != 2:
        return []
    pos = trained.positive
    tp = np.flatnonzero((preds == pos) & (scores.labels == pos))[:4]
    fp = np.flatnonzero((preds == pos) & (scores.labels != pos))[:4]
    rows = np.concatenate([tp, fp])
    if not len(rows):
        return []
    batch = data.images.take(scores.indices[rows])
    if batch.dtype == np.uint16:
        batch = batch.astype(np.int32)
    x = trained.transform(torch.from_numpy(batch).to(trained.device), train=False)
    network = unwrap(trained.model)  # Grad-CAM of the network itself, not of its TTA average
    maps = gradcam_maps(network, x, torch.full((len(rows),), pos, device=trained.device))
    cams = []
    for k, row in enumerate(rows):
        kind = "true positive" if scores.labels[row] == pos else "false positive"
        origin = data.catalog.origins[scores.indices[row]]
        image = x[k].detach().cpu().numpy()
        image = (image - image.min()) / (np.ptp(image) + 1e-8)
        cams.append(
            GalleryItem(
                title=kind,
                image=image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                heatmap=maps[k],
                caption=f"{origin}: p={scores.probs[row, pos]:.2f}",
            )
        )
    return cams


def _display_image(data: Prepared, index: int) -> np.ndarray:
    image = data.images.take([index])[0].astype(np.float64)
    image = (image - image.min()) / (np.ptp(image) + 1e-8)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
