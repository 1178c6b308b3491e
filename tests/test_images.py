from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medbalance.data.images import UnreadableImageError, probe_image, read_image, to_channels


def test_gray_rgb_collapses_and_colour_stays(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "g.png")
    colour = np.stack([gray, gray[::-1], gray.T], axis=-1)
    Image.fromarray(colour).save(tmp_path / "c.png")
    assert read_image(tmp_path / "g.png").shape == (8, 8)
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), colour)


def test_16_bit_png_keeps_range(tmp_path: Path) -> None:
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint16 and out.max() == 63000
    assert probe_image(tmp_path / "d.png").bit_depth == 16


def test_corrupt_truncated_and_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "text.png").write_text("hello")
    Image.new("L", (64, 64), 7).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="text.png: cannot be decoded"):
        read_image(tmp_path / "text.png")
    with pytest.raises(UnreadableImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UnreadableImageError, match="decompression bomb.*downsample"):
        read_image(tmp_path / "ok.png")


def _dicom(syntax: object, *, side: int, bits: tuple[int, int, int], photometric: str) -> Any:
    """A single-frame grayscale DICOM dataset without pixel data yet."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = photometric
    return ds


def test_dicom_monochrome1_and_rescale(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _dicom(ExplicitVRLittleEndian, side=4, bits=(16, 12, 11), photometric="MONOCHROME1")
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    raw = np.arange(16, dtype=np.uint16).reshape(4, 4) * 200
    ds.PixelData = raw.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    out = read_image(tmp_path / "x.dcm")
    assert out.dtype == np.uint16
    expected = (raw.max() - raw.astype(np.int64)) * 2  # inverted, rescaled, shifted to 0
    np.testing.assert_array_equal(out, expected)


def test_to_channels() -> None:
    gray = np.zeros((5, 6), np.uint8)
    assert to_channels(gray, 1).shape == (1, 5, 6)
    assert to_channels(gray, 3).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="cannot be made single-channel"):
        to_channels(np.zeros((5, 6, 3), np.uint8), 1)


def test_a_broken_compressed_dicom_names_the_file_and_keeps_pydicom_quiet(tmp_path: Path) -> None:
    import logging

    pytest.importorskip("pydicom")
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    from medbalance.cli.app import _quiet_pydicom

    ds = _dicom(JPEG2000Lossless, side=8, bits=(8, 8, 7), photometric="MONOCHROME2")
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])  # a broken J2K stream
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    with pytest.raises(UnreadableImageError, match="broken.dcm: DICOM pixel data cannot be") as e:
        read_image(tmp_path / "broken.dcm")
    assert "pip install" not in str(e.value)  # the decoders are installed: no such advice
    _quiet_pydicom(verbose=False)
    assert logging.getLogger("pydicom").propagate is False
