"""Decode one image file into a numpy array, the way medbalance sees every image.

Pillow decodes PNG, JPEG, BMP and TIFF; pydicom (the ``dicom`` extra) decodes DICOM. An image
comes back single-channel ``(H, W)`` when it is grayscale, including RGB files whose three
channels are equal (the Kermany chest X-rays mix ``L`` and such ``RGB`` JPEGs), and ``(H, W, 3)``
otherwise. 8-bit images are ``uint8``; 16-bit PNG/TIFF and 12/16-bit DICOM stay ``uint16`` so
that no precision is lost before normalisation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "NOT_AN_IMAGE",
    "ImageProbe",
    "NotAnImageError",
    "UnreadableImageError",
    "is_image_file",
    "pil_to_array",
    "probe_image",
    "read_image",
    "to_channels",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
_GRAY_MODES = {"1", "L", "I;16", "I;16B", "I;16L", "I", "F"}


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


NOT_AN_IMAGE = "not an image"  # how the reason of a NotAnImageError starts


class NotAnImageError(UnreadableImageError):
    """A file with an image extension that holds no image (a DICOM structured report or RT
    plan): listed and left out everywhere, like other files that are not images."""


@dataclass(frozen=True)
class ImageProbe:
    """What an image file says about itself (read from its header, cheap)."""

    width: int
    height: int
    mode: str
    bit_depth: int
    n_bytes: int


def is_image_file(path: Path) -> bool:
    """Whether a path has one of the supported image extensions (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _bit_depth(mode: str) -> int:
    if mode.startswith("I;16") or mode == "I":
        return 16
    return 1 if mode == "1" else 8


def probe_image(path: Path) -> ImageProbe:
    """Read an image's size, mode and bit depth without decoding its pixels."""
    n_bytes = path.stat().st_size
    if path.suffix.lower() == ".dcm":
        ds = _dcmread(path, stop_before_pixels=True)
        if "Rows" not in ds or "Columns" not in ds:
            raise _no_pixels(path, ds)
        bits = _int_field(path, ds, "BitsStored", 8)
        mode = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        width, height = _int_field(path, ds, "Columns", 0), _int_field(path, ds, "Rows", 0)
        return ImageProbe(width, height, mode, bits, n_bytes)
    try:
        with Image.open(path) as img:
            _within_pixel_limit(path, img)
            return ImageProbe(img.width, img.height, img.mode, _bit_depth(img.mode), n_bytes)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise _bomb_error(path, error) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(f"{path}: cannot be read as an image ({error})") from error


def _bomb_error(path: Path, error: object) -> UnreadableImageError:
    return UnreadableImageError(
        f"{path}: refused as a possible decompression bomb ({error}). Images above "
        f"{Image.MAX_IMAGE_PIXELS:,} pixels are not decoded; downsample the file first."
    )


def _within_pixel_limit(path: Path, img: Image.Image) -> None:
    """The pixel limit, from the header before any decoding: the same answer on every call and
    in every thread (a ``warnings`` filter is process-wide state, not safe in a thread pool).
    The limit is Pillow's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels unless changed)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise _bomb_error(path, f"{img.width} x {img.height} = {img.width * img.height:,} pixels")


def read_image(path: Path, *, draft: int | None = None) -> np.ndarray:
    """Decode an image to ``(H, W)`` (grayscale) or ``(H, W, 3)`` uint8/uint16.

    The one decoding rule of every path (inspect, presize, train, predict): images above PIL's
    pixel limit are refused as possible decompression bombs, whatever their format.

    Args:
        path: the file.
        draft: a JPEG may decode at reduced scale, down to about this side (presizing).

    Raises:
        UnreadableImageError: the file is corrupt, truncated, too large or of an unknown format.
    """
    if path.suffix.lower() == ".dcm":
        return _read_dicom(path)
    try:
        with Image.open(path) as img:
            _within_pixel_limit(path, img)
            if draft is not None and img.format == "JPEG":
                img.draft(img.mode, (draft, draft))
            img.load()
            return pil_to_array(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise _bomb_error(path, error) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(f"{path}: cannot be decoded ({error})") from error


def pil_to_array(img: Image.Image) -> np.ndarray:
    """The pixels of a loaded PIL image as the array :func:`read_image` returns.

    Grayscale modes give ``H x W`` (``uint8``, or ``uint16`` for 16-bit data; mode ``1`` as
    0/255); ``LA`` keeps the luminance; other modes are converted to RGB and collapsed to one
    channel when R, G and B are equal everywhere.

    Raises:
        ValueError: pixel values that do not fit 16 bits.
    """
    mode = img.mode
    if mode in _GRAY_MODES:
        arr = np.asarray(img)
        if mode == "1":
            return arr.astype(np.uint8) * 255
        if arr.dtype == np.uint8:
            return arr
        if arr.dtype.kind == "f" or arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"pixel range {arr.min()}..{arr.max()} does not fit 16 bits")
        return arr.astype(np.uint16)
    if mode == "LA":
        return np.asarray(img.getchannel("L"))
    rgb = np.asarray(img.convert("RGB"))
    return _collapse_gray(rgb)


def _collapse_gray(rgb: np.ndarray) -> np.ndarray:
    """Return one channel when R, G and B are equal everywhere, else the RGB array."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def _dcmread(path: Path, *, stop_before_pixels: bool = False):  # type: ignore[no-untyped-def]
    try:
        import pydicom
    except ImportError as error:
        raise UnreadableImageError(
            f"{path}: reading DICOM needs pydicom; install it with pip install 'medbalance[dicom]'"
        ) from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about oddities it reads past
            try:
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except pydicom.errors.InvalidDicomError:
                # no 128-byte preamble and 'DICM' prefix: older exports; read the data set
                # itself, and refuse below if it holds no image
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as error:  # pydicom raises many types for a bad file
        first = " ".join(str(error).split())[:200]
        raise UnreadableImageError(f"{path}: cannot be read as DICOM ({first})") from None


def _read_dicom(path: Path) -> np.ndarray:
    """Decode DICOM: modality rescale applied, MONOCHROME1 inverted, 12/16-bit kept.

    Rescaled values (CT Hounsfield units can be negative) are shifted so the minimum is 0 and
    stored as uint16; absolute units are lost, which per-image min-max normalisation ignores.
    """
    ds = _dcmread(path)
    if "PixelData" not in ds or "Rows" not in ds:
        raise _no_pixels(path, ds)
    frames = _int_field(path, ds, "NumberOfFrames", 1)
    if frames > 1:
        raise UnreadableImageError(
            f"{path}: multi-frame DICOM ({frames} frames) is not supported; export the frame to "
            "classify as a single-frame file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. excess padding, which pydicom removes
            pixels = ds.pixel_array
    except Exception as error:  # the decoders raise many types (missing plugin, bad stream)
        first = " ".join(str(error).split())[:200]
        hint = (
            "the file's pixel data is damaged or in a form no installed decoder reads"
            if _dicom_decoders_installed()
            else "pip install 'medbalance[dicom]' brings the JPEG, JPEG-LS, JPEG 2000 and RLE "
            "decoders"
        )
        raise UnreadableImageError(
            f"{path}: DICOM pixel data cannot be decoded ({type(error).__name__}: {first}); {hint}"
        ) from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    _check_pixels(path, pixels)
    if not photometric.startswith("MONOCHROME"):
        if pixels.ndim != 3 or pixels.dtype != np.uint8:
            raise UnreadableImageError(
                f"{path}: colour DICOM ({photometric}) with {pixels.dtype} samples of shape "
                f"{pixels.shape} is not supported; export it as 8-bit RGB"
            )
        return _collapse_gray(np.asarray(pixels, dtype=np.uint8))
    values = pixels.astype(np.float64) * _float_field(path, ds, "RescaleSlope", 1.0)
    values += _float_field(path, ds, "RescaleIntercept", 0.0)
    if photometric == "MONOCHROME1":
        values = values.max() - values
    values -= values.min()
    if values.max() > 65535:
        values *= 65535.0 / values.max()
    return np.rint(values).astype(np.uint16)


def _int_field(path: Path, ds: Any, name: str, default: int) -> int:
    return int(_float_field(path, ds, name, float(default)))


def _float_field(path: Path, ds: Any, name: str, default: float) -> float:
    """A numeric DICOM header field; an invalid value makes the file unreadable, named."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about invalid values, then we refuse
        raw = getattr(ds, name, None)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise UnreadableImageError(
            f"{path}: DICOM header field {name} has the invalid value {str(raw)!r}"
        ) from None


def _no_pixels(path: Path, ds: Any) -> NotAnImageError:
    kind = str(getattr(ds, "Modality", "") or "object")
    return NotAnImageError(
        f"{path}: {NOT_AN_IMAGE} (a DICOM {kind} without pixel data, such as a structured "
        "report or an RT plan); it is left out"
    )


def _dicom_decoders_installed() -> bool:
    """Whether the decoders of the ``dicom`` extra are importable (then installing them again
    is no advice)."""
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None
        for name in ("pylibjpeg", "libjpeg", "openjpeg", "rle")
    )


def _check_pixels(path: Path, pixels: np.ndarray) -> None:
    """A decoded array we can train on: 2-D grayscale or (H, W, 3), integer, at least 2 x 2."""
    shape_ok = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 3)
    if not shape_ok or min(pixels.shape[:2]) < 2 or pixels.dtype.kind not in "ui":
        raise UnreadableImageError(
            f"{path}: decoded to an array of shape {pixels.shape} and type {pixels.dtype}; "
            "expected one 2-D image (H, W) or (H, W, 3) of integers"
        )


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return ``(C, H, W)``: grayscale repeated to 3 channels when ``channels`` is 3."""
    if image.ndim == 2:
        image = image[None]
        return np.repeat(image, 3, axis=0) if channels == 3 else image
    if channels == 1:
        raise ValueError("a colour image cannot be made single-channel without losing colour")
    return np.ascontiguousarray(image.transpose(2, 0, 1))
