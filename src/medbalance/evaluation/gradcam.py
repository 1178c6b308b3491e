"""Grad-CAM heat maps: where in the image the model looked for a class.

The maps come from captum's :class:`~captum.attr.LayerGradCam` on the last convolution of the
backbone (:func:`find_target_layer`): the layer's activations weighted by the spatially averaged
gradient of the class score, ReLU'd, upsampled bilinearly to the input size and scaled to
[0, 1] per image. :func:`overlay` blends a map onto the image for a report.

Grad-CAM shows what the network used, not what is clinically right: a map on a text marker,
a tube or the image border is a warning sign of a shortcut, not an explanation of the disease.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["as_rgb", "find_target_layer", "gradcam_maps", "overlay"]

log = logging.getLogger(__name__)


def find_target_layer(model: nn.Module) -> nn.Module:
    """The last ``nn.Conv2d`` of the backbone, i.e. outside ``model.get_classifier()``.

    Works for medbalance's ``smallcnn`` and timm CNNs (``resnet18``, ``efficientnet_b0``, ...).

    Raises:
        ValueError: The model has no convolution outside its classifier (e.g. a ViT); pass
            ``layer=`` to :func:`gradcam_maps` explicitly.
    """
    head: set[int] = set()
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        classifier = get_classifier()
        parts = classifier if isinstance(classifier, tuple | list) else [classifier]
        head = {id(m) for part in parts if isinstance(part, nn.Module) for m in part.modules()}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in head]
    if not convs:
        raise ValueError(
            f"{type(model).__name__} has no nn.Conv2d outside its classifier, so Grad-CAM has "
            "no layer to look at; pass layer=<a module with a spatial output> to gradcam_maps"
        )
    return convs[-1]


def gradcam_maps(
    model: nn.Module, x: Tensor, target: Tensor, *, layer: nn.Module | None = None
) -> np.ndarray:
    """Grad-CAM maps of ``target`` classes for a batch of images.

    The model runs in eval mode (batch-norm statistics fixed, no dropout); afterwards every
    module's training flag is restored and no ``.grad`` is written to any parameter (captum
    takes gradients with ``torch.autograd.grad``), so the model's state is unchanged.

    Args:
        model: A classifier returning logits ``[B, n_classes]``.
        x: Images ``[B, C, H, W]``, already normalised as for the model.
        target: Class index per image, ``[B]``.
        layer: The layer to explain (default: :func:`find_target_layer`).

    Returns:
        ``float32`` array ``[B, H, W]`` in [0, 1]; an all-zero map where the class score has
        no positive evidence in the layer, or where the layer's map is constant (e.g. 1x1,
        which is logged as a warning).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    if x.ndim != 4:
        raise ValueError(f"x must be a batch [B, C, H, W], got shape {tuple(x.shape)}")
    target = torch.as_tensor(target).reshape(-1)
    if target.shape[0] != x.shape[0]:
        raise ValueError(
            f"target needs one class per image: x has {x.shape[0]} images, target has shape "
            f"{tuple(target.shape)}"
        )
    layer = layer if layer is not None else find_target_layer(model)
    device = next((p.device for p in model.parameters()), x.device)
    inputs = x.detach().to(device).clone().requires_grad_(True)  # gradients flow to the layer
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            cam = LayerGradCam(model, layer).attribute(
                inputs, target=target.to(device).long(), relu_attributions=True
            )
    finally:
        for module, training in modes.items():
            module.training = training
    size = (int(x.shape[2]), int(x.shape[3]))
    if cam.shape[2] * cam.shape[3] == 1:
        name = next((n for n, m in model.named_modules() if m is layer), type(layer).__name__)
        log.warning(
            "Grad-CAM layer %s gives a 1x1 map for %dx%d inputs, so the maps show no location; "
            "use larger images or pass an earlier layer",
            name,
            *size,
        )
    maps = LayerAttribution.interpolate(cam.detach(), size, interpolate_mode="bilinear")
    maps = maps.sum(dim=1).clamp_min(0).cpu().numpy().astype(np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = (maps - low) / np.where(span > 0, span, np.inf)  # a constant map becomes 0
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)


def overlay(
    image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4, cmap: str = "jet"
) -> np.ndarray:
    """Blend a heat map onto an image.

    Args:
        image: ``H x W`` (grayscale) or ``H x W x 3`` in [0, 1], or ``uint8``.
        heatmap: ``h x w`` in [0, 1]; resized bilinearly to ``H x W`` when it differs.
        alpha: Weight of the coloured heat map, in [0, 1].
        cmap: A matplotlib colormap name.

    Returns:
        ``H x W x 3`` ``uint8`` RGB image.
    """
    from matplotlib import colormaps
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = as_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be H x W, got shape {heat.shape}")
    if heat.shape != base.shape[:2]:
        resized = Image.fromarray(heat).resize(
            (base.shape[1], base.shape[0]), Image.Resampling.BILINEAR
        )
        heat = np.asarray(resized, dtype=np.float32)
    colour = colormaps[cmap](np.clip(np.nan_to_num(heat), 0, 1))[..., :3]
    blended = (1 - alpha) * base + alpha * colour
    return np.clip(np.round(blended * 255), 0, 255).astype(np.uint8)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as float ``H x W x 3`` in [0, 1].

    Args:
        image: ``H x W``, ``H x W x 1`` or ``H x W x 3``; ``uint8`` is scaled by 1/255, any
            other dtype is taken as [0, 1] (clipped, NaN as 0).
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must be H x W or H x W x 3, got shape {array.shape}")
    if array.dtype == np.uint8:
        rgb = array.astype(np.float32) / 255
    else:
        rgb = np.clip(np.nan_to_num(array.astype(np.float32)), 0, 1)
    return np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb
