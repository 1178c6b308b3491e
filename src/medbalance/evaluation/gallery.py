"""The pictures an evaluation picks for the report, for one trained model or an ensemble.

:func:`pick_galleries` gives three galleries (:class:`Galleries`):

- the most confident errors;
- Grad-CAM overlays: for binary tasks a few true and false positives (the positive class's map),
  for more classes the most confident right calls of each class (the called class's map);
- for more than two classes, the top confusions: the most frequent (true, called) pairs, with
  their most confident wrong images, titled ``"virus called bacteria"``.

Every caption names the class of each probability it gives (``p(lesion)=0.83``): the called
class first, then for an error the true class.

For an :class:`~medbalance.evaluation.ensemble.Ensemble` every member's Grad-CAM map of an image
is computed on that member's own input transform and the maps are averaged
(:func:`model_gradcam`); the errors and confusions are the ensemble's, from the ``preds`` given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from medbalance.data.prepared import Prepared
from medbalance.evaluation.inference import Trained
from medbalance.evaluation.scoring import Scores

if TYPE_CHECKING:
    from medbalance.evaluation.ensemble import Ensemble

__all__ = ["Galleries", "GalleryItem", "model_gradcam", "pick_galleries"]


@dataclass(frozen=True)
class GalleryItem:
    """One image of a gallery; ``heatmap`` (``H x W`` in [0, 1]) is overlaid when set.

    ``image`` is ``H x W`` or ``H x W x 3``, in [0, 1] or ``uint8``.
    """

    title: str
    image: np.ndarray
    heatmap: np.ndarray | None = None
    caption: str = ""


@dataclass(frozen=True)
class Galleries:
    """What :func:`~medbalance.reporting.report.write_report` draws besides the run's files."""

    errors: list[GalleryItem] = field(default_factory=list)
    cams: list[GalleryItem] = field(default_factory=list)
    confusions: list[GalleryItem] = field(default_factory=list)


def pick_galleries(
    model: Trained | Ensemble,
    data: Prepared,
    scores: Scores,
    preds: np.ndarray,
    *,
    pairs: int = 3,
    per_pair: int = 4,
) -> Galleries:
    """The errors, Grad-CAM and (multi-class) top-confusion galleries of one evaluated split.

    Args:
        model: the model that gave ``scores``: one trained model or an ensemble.
        data: the data ``scores.indices`` index.
        scores: the split's probabilities.
        preds: the decision's class per row of ``scores``.
        pairs: how many of the most frequent confusions get images.
        per_pair: images per confusion (the most confident wrong ones).
    """
    names = list(model.class_names)
    return Galleries(
        errors=_errors(names, data, scores, preds),
        cams=_cams(model, data, scores, preds),
        confusions=_confusions(names, data, scores, preds, pairs, per_pair),
    )


def model_gradcam(
    model: Trained | Ensemble, batch_uint: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of ``target`` classes for a presized batch, averaged over an ensemble's members.

    Each member explains its own network (not its test-time-augmentation average) on its own
    input transform; the members' maps (each in [0, 1]) are averaged, not rescaled, so an
    ensemble of identical members gives the single member's map.

    Args:
        model: one trained model or an ensemble.
        batch_uint: ``(B, C, P, P)`` presized images (``uint8`` or ``uint16``).
        target: the class to explain per image, ``(B,)``.

    Returns:
        The maps ``float32 [B, H, W]`` in [0, 1], and the images as the first member sees them
        (``[B, C, H, W]``, normalised), for display.
    """
    import torch

    from medbalance.evaluation.ensemble import Ensemble
    from medbalance.evaluation.gradcam import gradcam_maps
    from medbalance.models.tta import unwrap

    members = model.members if isinstance(model, Ensemble) else [model]
    batch = batch_uint.astype(np.int32) if batch_uint.dtype == np.uint16 else batch_uint
    maps, shown = [], None
    for member in members:
        x = member.transform(torch.from_numpy(batch).to(member.device), train=False)
        classes = torch.as_tensor(np.asarray(target), device=member.device).long()
        maps.append(gradcam_maps(unwrap(member.model), x, classes))
        shown = x.detach().cpu().numpy() if shown is None else shown
    assert shown is not None  # an ensemble has at least one member
    return np.mean(maps, axis=0).astype(np.float32), shown


def _errors(
    names: list[str], data: Prepared, scores: Scores, preds: np.ndarray
) -> list[GalleryItem]:
    wrong = np.flatnonzero(preds != scores.labels)
    confidence = scores.probs[np.arange(len(preds)), preds]
    worst = wrong[np.argsort(-confidence[wrong])][:8]
    return [
        GalleryItem(
            title=f"{names[scores.labels[row]]} called {names[preds[row]]}",
            image=_display_image(data, scores.indices[row]),
            caption=f"{data.catalog.origins[scores.indices[row]]}: "
            + _probabilities(names, scores.probs[row], [preds[row], scores.labels[row]]),
        )
        for row in worst
    ]


def _probabilities(names: list[str], probs: np.ndarray, classes: list[int]) -> str:
    """``p(lesion)=0.83, p(normal)=0.17``: the probabilities of ``classes``, each named."""
    return ", ".join(
        f"p({names[c]})={probs[c]:.2f}" for c in dict.fromkeys(int(c) for c in classes)
    )


def _confusions(
    names: list[str], data: Prepared, scores: Scores, preds: np.ndarray, pairs: int, per_pair: int
) -> list[GalleryItem]:
    k = len(names)
    if k <= 2:
        return []
    labels = scores.labels
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (labels, preds), 1)
    cells = sorted(
        ((int(matrix[t, p]), t, p) for t in range(k) for p in range(k) if t != p and matrix[t, p]),
        key=lambda cell: (-cell[0], cell[1], cell[2]),
    )
    items = []
    for count, t, p in cells[:pairs]:
        rows = np.flatnonzero((labels == t) & (preds == p))
        rows = rows[np.argsort(-scores.probs[rows, p], kind="stable")][:per_pair]
        share = f"{count} of {int(matrix[t].sum())} {names[t]} images called {names[p]}"
        items += [
            GalleryItem(
                title=f"{names[t]} called {names[p]}",
                image=_display_image(data, scores.indices[row]),
                caption=f"{data.catalog.origins[scores.indices[row]]}: "
                f"{_probabilities(names, scores.probs[row], [p, t])} ({share})",
            )
            for row in rows
        ]
    return items


def _cams(
    model: Trained | Ensemble, data: Prepared, scores: Scores, preds: np.ndarray
) -> list[GalleryItem]:
    names = list(model.class_names)
    if len(names) == 2:
        pos = model.positive
        tp = np.flatnonzero((preds == pos) & (scores.labels == pos))[:4]
        fp = np.flatnonzero((preds == pos) & (scores.labels != pos))[:4]
        rows = np.concatenate([tp, fp])
        target = np.full(len(rows), pos)
        kinds = ["true positive" if scores.labels[r] == pos else "false positive" for r in rows]
    else:  # the two most confident right calls of each class (up to 6 classes)
        right = preds == scores.labels
        picked = [
            np.flatnonzero(right & (preds == c))[
                np.argsort(-scores.probs[right & (preds == c), c], kind="stable")
            ][:2]
            for c in range(min(len(names), 6))
        ]
        rows = np.concatenate(picked).astype(np.int64)
        target = preds[rows]
        kinds = [f"{names[preds[r]]}, called right" for r in rows]
    if not len(rows):
        return []
    maps, x = model_gradcam(model, data.images.take(scores.indices[rows]), target)
    cams = []
    for k, row in enumerate(rows):
        image = x[k]
        image = (image - image.min()) / (np.ptp(image) + 1e-8)
        cams.append(
            GalleryItem(
                title=kinds[k],
                image=image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                heatmap=maps[k],
                caption=f"{data.catalog.origins[scores.indices[row]]}: "
                + _probabilities(names, scores.probs[row], [target[k]]),
            )
        )
    return cams


def _display_image(data: Prepared, index: int) -> np.ndarray:
    image = data.images.take([index])[0].astype(np.float64)
    image = (image - image.min()) / (np.ptp(image) + 1e-8)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
