"""Batch transforms on the training device: scale, augment, resize and normalise in one module.

:class:`BatchTransform` takes the integer batches the presize cache yields (``(B, C, P, P)``,
letterboxed squares, uint8 or uint16) and returns float32 ``(B, C, size, size)`` ready for the
model. Everything runs on the input's device with per-sample random parameters drawn in one call;
no Python loop over images.

Evaluation (``train=False``, or augmentation disabled) is an antialiased resize from ``P`` to
``size`` followed by normalisation: no crop, so the whole image, corners included, is seen.
Training draws one random warp per sample that composes a rotation, isotropic scale and
translation (padding with zeros) with a random-resized crop (area in ``crop_scale``, aspect ratio
in (0.9, 1.1)) and an optional horizontal flip, and samples it with ``grid_sample`` straight to
``size``, so the image is interpolated once rather than once per operation (a presize more than
1.5 × ``size``, or smaller than ``size``, is resized first). Brightness (additive) and contrast
(around each image's mean) follow min-max scaling, because min-max scaling would undo any affine
change of intensity made before it. Scaling by dtype, min-max, contrast and brightness are folded
into one per-image ``x * a + b`` (and, without a clamp to apply, the mean/std standardisation
too), so a batch is read and written a few times, not once per operation.

There is deliberately no vertical flip: radiographs have an up and a down (apex above the
diaphragm, skull above the spine), and an upside-down image is not a plausible sample. The
horizontal flip is off by default because left and right differ too (the heart lies on the
left; a flipped chest film looks like situs inversus) and markers such as "L"/"R" would lie.

The geometry is built with plain ``torch`` (``affine_grid`` + ``grid_sample``) rather than
``kornia.augmentation`` modules, which keep the last draw in ``self._params`` on every call;
here ``forward`` changes nothing on the module. Random parameters are drawn on the CPU from
``generator`` or torch's global generator, so ``torch.manual_seed(s)`` before two calls gives
identical outputs, and the same seed draws the same parameters on every device.

Integer inputs are scaled to [0, 1] by dtype: uint8 by 255; uint16 and int32 by 65535. Torch's
uint16 supports little beyond copying and conversion, which is all this module needs; a loader
may also convert uint16 to int32 before the device copy.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AugmentConfig", "BatchTransform", "NormStats", "Normalization", "fit_normalization"]

_FULL_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0, torch.int32: 65535.0}
_NP_FULL_SCALE = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.int32): 65535.0,
}
_RATIO = (0.9, 1.1)  # aspect-ratio range of the random-resized crop
_EPS = 1e-6
# Training batches from ``size`` up to this factor above it are resized and augmented by one
# warp. Larger factors would alias (an antialiased resize comes first), and smaller inputs would
# get a dark fringe from the zero padding at the border when upsampled by ``grid_sample``.
_DIRECT_WARP = 1.5


class Normalization(StrEnum):
    MINMAX = "minmax"  # per image: (x - min) / (max - min), the X-ray default
    MEANSTD = "meanstd"  # [0, 1] by dtype, then (x - mean) / std with train-split statistics
    FIXED = "fixed"  # [0, 1] by dtype only


def _normalization(value: Normalization | str) -> Normalization:
    try:
        return Normalization(value)
    except ValueError:
        choices = [n.value for n in Normalization]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown normalization {value!r}; choose one of {', '.join(choices)}{hint}"
        ) from None


@dataclass(frozen=True)
class NormStats:
    """A fitted normalisation: the kind, and for ``meanstd`` the per-channel mean and std.

    Stored in checkpoints through :meth:`to_dict` and :meth:`from_dict` (JSON-safe).
    """

    kind: Normalization
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _normalization(self.kind))
        if self.kind is not Normalization.MEANSTD:
            if self.mean is not None or self.std is not None:
                raise ValueError(f"normalization {self.kind.value!r} takes no mean or std")
            return
        if self.mean is None or self.std is None:
            raise ValueError("normalization 'meanstd' needs mean and std; use fit_normalization")
        mean, std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        if len(mean) not in (1, 3) or len(std) != len(mean):
            raise ValueError(f"mean and std need 1 or 3 values each, got {mean} and {std}")
        if not all(math.isfinite(m) for m in mean) or not all(
            math.isfinite(s) and s > 0 for s in std
        ):
            raise ValueError(f"mean must be finite and std positive, got {mean} and {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form: ``{"kind": str, "mean": list | None, "std": list | None}``."""
        return {
            "kind": self.kind.value,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormStats:
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        unknown = sorted(set(data) - {"kind", "mean", "std"})
        if unknown or "kind" not in data:
            raise ValueError(
                f"normalization record needs 'kind' (and for meanstd 'mean', 'std'); got keys "
                f"{sorted(data)}"
            )
        mean, std = data.get("mean"), data.get("std")
        return cls(
            data["kind"],
            None if mean is None else tuple(mean),
            None if std is None else tuple(std),
        )


def fit_normalization(
    kind: Normalization | str,
    sample_batches_uint: np.ndarray | Tensor | Iterable[np.ndarray | Tensor],
) -> NormStats:
    """Fit a normalisation on training images (never on validation or test images).

    Args:
        kind: Which normalisation; only ``meanstd`` looks at the images.
        sample_batches_uint: Integer images ``(N, C, H, W)``, or an iterable of such batches
            (to stream a large split). Scaled to [0, 1] by dtype before the statistics.

    Returns:
        The stats; for ``meanstd`` the per-channel mean and population std over N, H and W.

    Raises:
        ValueError: unknown kind, an unsupported dtype or shape, no pixels, or a constant image
            set (std 0).
    """
    kind = _normalization(kind)
    if kind is not Normalization.MEANSTD:
        return NormStats(kind)
    batches = (
        [sample_batches_uint]
        if isinstance(sample_batches_uint, np.ndarray | Tensor)
        else sample_batches_uint
    )
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    count = 0
    for batch in batches:
        array = batch.cpu().numpy() if isinstance(batch, Tensor) else np.asarray(batch)
        if array.dtype not in _NP_FULL_SCALE or array.ndim != 4:
            raise ValueError(
                "fit_normalization needs integer images (N, C, H, W) of dtype uint8, uint16 or "
                f"int32, got {array.dtype} with shape {array.shape}"
            )
        for start in range(0, len(array), 256):  # bound the float64 copy
            chunk = array[start : start + 256].astype(np.float64) / _NP_FULL_SCALE[array.dtype]
            s, q = chunk.sum(axis=(0, 2, 3)), np.square(chunk).sum(axis=(0, 2, 3))
            if total is not None and squares is not None and len(s) != len(total):
                raise ValueError(f"batches disagree on channels: {len(total)} and {len(s)}")
            total = s if total is None else total + s
            squares = q if squares is None else squares + q
            count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    if total is None or squares is None or count == 0:
        raise ValueError("fit_normalization got no pixels; pass the training images")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    if np.any(std < _EPS):
        raise ValueError(f"training images have (near) zero std {tuple(std)}; use 'minmax'")
    return NormStats(kind, tuple(mean.tolist()), tuple(std.tolist()))


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    pair = [float(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(items) != 2 or len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(
            f"{name} must be (min, max) with {low:g} <= min <= max <= {high:g}, got {value!r}"
        )
    return pair[0], pair[1]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; every field is validated on construction.

    Attributes:
        enabled: Augment in training at all (evaluation never augments).
        degrees: Maximum rotation either way, at most 45.
        scale: Range of the isotropic zoom factor, within [0.5, 2].
        translate: Maximum shift as a fraction of the image side, at most 0.25.
        brightness: Maximum additive brightness shift on [0, 1] images, at most 0.5.
        contrast: Contrast factor drawn from [1 - contrast, 1 + contrast], at most 0.9.
        hflip: Flip half the samples left-right. Off by default: left and right differ in
            anatomy. There is no vertical flip at all (anatomy has an up and a down).
        crop_scale: Area range of the random-resized crop, min at least 0.5 so that a crop keeps
            most of the image and a finding near the border is rarely cut away.
        p: Probability that a sample is augmented at all.
    """

    enabled: bool = True
    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False
    crop_scale: tuple[float, float] = (0.85, 1.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("enabled", "hflip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        numbers = {"degrees": 45, "translate": 0.25, "brightness": 0.5, "contrast": 0.9, "p": 1}
        for name, high in numbers.items():
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, high))
        object.__setattr__(self, "scale", _range("scale", self.scale, 0.5, 2.0))
        object.__setattr__(self, "crop_scale", _range("crop_scale", self.crop_scale, 0.5, 1.0))


class BatchTransform(nn.Module):
    """Integer batch ``(B, C, P, P)`` to a float32 model input ``(B, C, size, size)``.

    Args:
        config: The training augmentation.
        size: Output side in pixels (8 to 4096).
        norm: The fitted normalisation (see :func:`fit_normalization`).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, config: AugmentConfig, size: int, norm: NormStats) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
            raise ValueError(f"size must be an integer between 8 and 4096 pixels, got {size!r}")
        self.config, self.size, self.norm = config, size, norm
        channels = len(norm.mean) if norm.mean is not None else 1
        mean, std = norm.mean or (0.0,), norm.std or (1.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"size={self.size}, norm={self.norm}, config={self.config}"

    def forward(
        self, x_uint: Tensor, *, train: bool, generator: torch.Generator | None = None
    ) -> Tensor:
        """Transform one batch.

        Args:
            x_uint: Images ``(B, C, P, P)`` with C 1 or 3, dtype uint8, uint16 or int32.
            train: Augment (when the config is enabled); otherwise only resize and normalise.
            generator: A CPU generator for the random parameters; torch's global one if None.

        Returns:
            float32 ``(B, C, size, size)`` on the input's device.
        """
        if x_uint.ndim != 4 or x_uint.shape[1] not in (1, 3) or x_uint.shape[0] < 1:
            raise ValueError(f"expected images (B, C, H, W) with C 1 or 3, got {x_uint.shape}")
        if x_uint.dtype not in _FULL_SCALE:
            raise ValueError(
                f"expected uint8, uint16 or int32 images, got {x_uint.dtype}; pass the presize "
                "cache's integer batches, not already-scaled floats"
            )
        augment = train and self.config.enabled and self.config.p > 0
        params = self._draw(x_uint.shape[0], generator).to(x_uint.device) if augment else None
        x = x_uint.to(torch.float32)
        side = x.shape[-1]
        if params is not None and self.size <= side <= _DIRECT_WARP * self.size:
            x = self._warp(x, params, self.size)  # resize and augment in one resampling
        else:
            if x.shape[-2:] != (self.size, self.size):
                x = F.interpolate(
                    x, (self.size, self.size), mode="bilinear", antialias=True, align_corners=False
                )
            if params is not None:
                x = self._warp(x, params, self.size)
        scale, shift = self._intensity(x, x_uint.dtype, params)
        standardise = self.norm.kind is Normalization.MEANSTD
        if params is None and standardise:  # nothing to clamp: fold mean/std into the affine
            mean, std = self._stats(x)
            return torch.addcmul((shift - mean) / std, x, scale / std)
        x = torch.addcmul(shift, x, scale).clamp_(0.0, 1.0)  # the clamp also absorbs rounding
        if standardise:
            mean, std = self._stats(x)
            x = x.sub_(mean).div_(std)
        return x

    def _intensity(
        self, x: Tensor, dtype: torch.dtype, params: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Per-image ``(scale, shift)``, each ``(B, 1, 1, 1)``, such that ``x * scale + shift`` is
        the image scaled to [0, 1] (by dtype, or min-max per image), then with the sample's
        contrast (around the image's mean) and brightness applied."""
        batch = x.shape[0]
        scale = torch.full((batch, 1, 1, 1), 1.0 / _FULL_SCALE[dtype], device=x.device)
        shift = torch.zeros_like(scale)
        if self.norm.kind is Normalization.MINMAX:
            # amin + amax: on CPU 20x faster than torch.aminmax over a flattened image
            low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
            scale = 1.0 / (high - low).clamp_min(_EPS * _FULL_SCALE[dtype])
            shift = -low * scale
        if params is not None:
            mean = x.mean(dim=(1, 2, 3), keepdim=True) * scale + shift  # of the [0, 1] image
            contrast, add = params[:, 8].view(-1, 1, 1, 1), params[:, 9].view(-1, 1, 1, 1)
            scale, shift = scale * contrast, (shift - mean) * contrast + mean + add
        return scale, shift

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.mean.shape[1] != x.shape[1]:
            raise ValueError(
                f"normalization stats have {self.mean.shape[1]} channel(s) but the batch has "
                f"{x.shape[1]}; fit them on images with the same channels"
            )
        return self.mean.to(x.device), self.std.to(x.device)

    def _draw(self, batch: int, generator: torch.Generator | None) -> Tensor:
        """Per-sample parameters ``(B, 10)``: angle, zoom, shift x/y, crop w/h/x/y, contrast, add.

        Always one draw of ``(B, 12)`` uniforms, whatever the config, so the random stream
        advances the same way for every setting.
        """
        cfg = self.config
        u = torch.rand(batch, 12, generator=generator)
        applied = u[:, 10] < cfg.p

        def between(col: int, low: float, high: float, identity: float) -> Tensor:
            value = low + (high - low) * u[:, col]
            return torch.where(applied, value, torch.full_like(value, identity))

        angle = between(0, -math.radians(cfg.degrees), math.radians(cfg.degrees), 0.0)
        zoom = between(1, cfg.scale[0], cfg.scale[1], 1.0)
        shift_x = between(2, -2 * cfg.translate, 2 * cfg.translate, 0.0)  # [-1, 1] coordinates
        shift_y = between(3, -2 * cfg.translate, 2 * cfg.translate, 0.0)
        area = between(4, cfg.crop_scale[0], cfg.crop_scale[1], 1.0)
        ratio = between(5, math.log(_RATIO[0]), math.log(_RATIO[1]), 0.0).exp()
        width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        crop_x = (1 - width) * (2 * u[:, 6] - 1)  # box centre, keeping the box inside the image
        crop_y = (1 - height) * (2 * u[:, 7] - 1)
        if cfg.hflip:
            width = torch.where(applied & (u[:, 11] < 0.5), -width, width)
        contrast = between(8, 1 - cfg.contrast, 1 + cfg.contrast, 1.0)
        add = between(9, -cfg.brightness, cfg.brightness, 0.0)
        columns = [angle, zoom, shift_x, shift_y, width, height, crop_x, crop_y, contrast, add]
        return torch.stack(columns, dim=1)

    @staticmethod
    def _warp(x: Tensor, params: Tensor, size: int) -> Tensor:
        """Sample each image through its crop, flip and inverse affine transform at once.

        An output point ``u`` (in [-1, 1] coordinates) lies at ``v = c + D u`` in the augmented
        image (crop box centre ``c``, half-sides ``D``, negative width for a flip); the augmented
        image shows the source point ``q = R(-angle) (v - t) / zoom``.
        """
        angle, zoom, shift, box, centre = (
            params[:, 0],
            params[:, 1],
            params[:, 2:4],
            params[:, 4:6],
            params[:, 6:8],
        )
        cos, sin = angle.cos() / zoom, angle.sin() / zoom
        inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
        theta = torch.cat(
            [inverse * box[:, None, :], (inverse @ (centre - shift)[:, :, None])], dim=2
        )
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
