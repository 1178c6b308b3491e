"""The bad-input matrix: broken images, archives, manifests and checkpoints through every
command that takes them. Each ends with exit code 1 (the data has errors) or 2 (bad input), one
line naming the offending file, no traceback, and no partial or orphaned file."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from conftest import write_npz, write_tree
from medbalance.cli import app


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (32, 32), 100).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    return bytes(data)


BAD_IMAGES: dict[str, Callable[[], bytes]] = {
    "corrupt.png": lambda: b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 40,
    "truncated.png": lambda: _png_bytes()[: len(_png_bytes()) // 2],
    "zero.png": lambda: b"",
    "bomb.jpg": _bomb,
    "text.jpg": lambda: b"this is not a jpeg",
}


def _folder_with(tmp_path: Path, name: str) -> tuple[Path, Path]:
    data = write_tree(tmp_path / "data", {"normal": 14, "pneumonia": 14})
    bad = data / "pneumonia" / name
    bad.write_bytes(BAD_IMAGES[name]())
    return data, bad


def _no_orphans(root: Path) -> None:
    leftovers = [p for p in root.rglob("*.part") if "cache" not in p.parts]
    assert not leftovers, leftovers


def _check(result: Result, codes: tuple[int, ...], named: Path | str) -> None:
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert "Aborted" not in result.output
    assert str(named) in result.output, result.output


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_through_every_command(tmp_path: Path, name: str) -> None:
    data, bad = _folder_with(tmp_path, name)
    _check(invoke("inspect", data, "--out", tmp_path / "i"), (1,), name)
    _check(invoke("presize", data, "--size", 16), (2,), bad)
    _check(invoke("train", data, "--out", tmp_path / "r", "--epochs", "1"), (2,), bad)
    assert not (tmp_path / "r").exists()
    compare = invoke(
        "compare", data, "--remedies", "baseline", "--seeds", "1", "--out", tmp_path / "c"
    )
    _check(compare, (2,), bad)
    _no_orphans(tmp_path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    data = write_npz(root / "d.npz", {"train": (30, 10), "val": (10, 10), "test": (5, 5)})
    result = invoke(
        "train", data, "--out", root / "run", "--epochs", "1", "--model", "smallcnn",
        "--bootstrap", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "run" / "best.safetensors"


def test_predict_lists_bad_images_and_exits_1(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    Image.new("L", (28, 28), 90).save(folder / "good.png")
    for name, make in BAD_IMAGES.items():
        (folder / name).write_bytes(make())
    out = tmp_path / "p.csv"
    result = invoke("predict", checkpoint, folder, "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 1 + len(BAD_IMAGES)  # header, the good one, one row per bad one
    for name in BAD_IMAGES:
        assert name in result.output
    _no_orphans(tmp_path)


BAD_CHECKPOINTS: dict[str, Callable[[bytes], bytes]] = {
    "zero": lambda good: b"",
    "garbage": lambda good: b"\x00\x01garbage" * 50,
    "truncated": lambda good: good[: len(good) // 3],
    "pickle": lambda good: __import__("pickle").dumps({"weights": [1, 2, 3]}),
}


@pytest.mark.parametrize("damage", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_through_every_command(
    checkpoint: Path, tmp_path: Path, damage: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run)
    bad = run / "best.safetensors"
    bad.write_bytes(BAD_CHECKPOINTS[damage](checkpoint.read_bytes()))
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("L", (28, 28)).save(images / "x.png")
    _check(invoke("evaluate", run, "--no-report"), (2,), bad)
    _check(invoke("predict", bad, images, "--out", tmp_path / "p.csv"), (2,), bad)
    assert not (tmp_path / "p.csv").exists()
    _check(invoke("export", bad, "--format", "torchscript"), (2,), bad)
    assert not list(run.glob("best.torchscript*"))
    _no_orphans(tmp_path)


BAD_ARCHIVES: dict[str, Callable[[Path], None]] = {
    "zero": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 64),
    "float-labels": lambda p: np.savez(
        p, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([0, 1, 0.5, 1])
    ),
    "not-square": lambda p: np.savez(
        p, train_images=np.zeros((4, 8, 6), np.uint8), train_labels=np.array([0, 1, 0, 1])
    ),
    "no-keys": lambda p: np.savez(p, x=np.zeros(3)),
}


@pytest.mark.parametrize("kind", sorted(BAD_ARCHIVES))
def test_bad_npz_through_every_command(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "bad.npz"
    BAD_ARCHIVES[kind](bad)
    _check(invoke("inspect", bad, "--out", tmp_path / "i"), (2,), bad)
    _check(invoke("presize", bad, "--size", 16), (2,), bad)
    _check(invoke("train", bad, "--out", tmp_path / "r"), (2,), bad)
    compare = invoke(
        "compare", bad, "--remedies", "baseline", "--seeds", "1", "--out", tmp_path / "c"
    )
    _check(compare, (2,), bad)
    assert not (tmp_path / "r").exists()


BAD_MANIFESTS: dict[str, str] = {
    "no-label-column": "path\nimg/a/img_0.png\n",
    "outside": "path,label\n../elsewhere.png,a\nimg/b/img_0.png,b\n",
    "empty-label": "path,label\nimg/a/img_0.png,\nimg/b/img_0.png,b\n",
    "one-class": "path,label\nimg/a/img_0.png,a\nimg/a/img_1.png,a\n",
    "duplicate": "path,label\nimg/a/img_0.png,a\nimg/a/img_0.png,b\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_MANIFESTS))
def test_bad_manifest_through_every_command(tmp_path: Path, kind: str) -> None:
    write_tree(tmp_path / "img", {"a": 4, "b": 4})
    manifest = tmp_path / "m.csv"
    manifest.write_text(BAD_MANIFESTS[kind])
    _check(invoke("inspect", manifest, "--out", tmp_path / "i"), (2,), manifest)
    _check(invoke("presize", manifest, "--size", 16), (2,), manifest)
    _check(invoke("train", manifest, "--out", tmp_path / "r"), (2,), manifest)
    assert not (tmp_path / "r").exists()
