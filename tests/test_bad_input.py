"""Bad input through every command: exit code 1 or 2 as documented, one line naming the file,
no traceback, nothing half-written; and the one boundary for bugs (exit 3, a log file)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from medbalance.cli import app


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_bug_is_reported_with_a_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(run_dir: Path) -> Path:
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr("medbalance.reporting.report.report_from_run", broken)
    message = one_line(invoke("report", tmp_path), 3)
    assert "internal error (KeyError" in message and "please report it" in message
    log = Path(re.search(r"the traceback is in (\S+);", message).group(1))  # type: ignore[union-attr]
    assert "Traceback" in log.read_text() and "internal bookkeeping" in log.read_text()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not a readable .npz"),
        (b"PK\x03\x04garbage", "not a readable .npz"),
        (b"not a zip at all", "not a readable .npz"),
    ],
)
def test_broken_npz(tmp_path: Path, content: bytes, why: str) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    for command in ("inspect", "train"):
        message = one_line(invoke(command, bad, "--out", tmp_path / command), 2)
        assert str(bad) in message and why in message
    assert not (tmp_path / "train").exists()


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _images(n: int, side: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, side, side), dtype=np.uint8)


@pytest.mark.parametrize(
    ("arrays", "why"),
    [
        (
            {"train_images": _images(6), "train_labels": np.array([0, 1, 0, 1, 0.5, 1])},
            "labels must be whole numbers",
        ),
        (
            {"train_images": _images(4), "train_labels": np.array([0, 1, 0])},
            "4 images but train_labels 3 labels",
        ),
        (
            {"train_images": np.zeros((4, 8, 6), np.uint8), "train_labels": np.array([0, 1, 0, 1])},
            "square",
        ),
        (
            {"train_images": _images(0), "train_labels": np.array([], dtype=np.int64)},
            "no images",
        ),
    ],
)
def test_malformed_npz_is_refused_with_the_rule(
    tmp_path: Path, arrays: dict[str, np.ndarray], why: str
) -> None:
    bad = _npz(tmp_path / "odd.npz", **arrays)
    message = one_line(invoke("inspect", bad, "--out", tmp_path / "i"), 2)
    assert str(bad) in message and why in message


def test_a_train_only_npz_gets_a_val_split_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medbalance.data.prepared import prepare_data

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    data = _npz(tmp_path / "train_only.npz", train_images=_images(60), train_labels=labels)
    prepared = prepare_data(str(data), presize_to=8)
    val = prepared.indices("val")
    assert len(val) == 12 and set(prepared.catalog.labels[val]) == {0, 1}
    assert any("has no val split; carving" in w for w in prepared.warnings)  # the run says it
    del rng


def test_out_conflicts_are_refused_before_work(tmp_path: Path) -> None:
    data = _npz(
        tmp_path / "d.npz",
        train_images=_images(20),
        train_labels=np.r_[np.zeros(10, int), np.ones(10, int)],
    )
    file = tmp_path / "taken.txt"
    file.write_text("keep")
    message = one_line(invoke("inspect", data, "--out", file), 2)
    assert str(file) in message and file.read_text() == "keep"
    folder = tmp_path / "folder"
    folder.mkdir()
    message = one_line(invoke("predict", tmp_path / "none.safetensors", data, "--out", folder), 2)
    assert f"--out {folder} is a folder" in message


def _bomb_jpeg(path: Path, side: int = 30000) -> Path:
    """A small JPEG whose header claims ``side`` x ``side`` pixels (a decompression bomb)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    path.write_bytes(bytes(data))
    return path


def test_a_jpeg_bomb_is_unreadable_on_every_path(tmp_path: Path) -> None:
    from conftest import write_tree

    data = write_tree(tmp_path / "data", {"normal": 12, "pneumonia": 12}, ext=".jpg")
    bomb = _bomb_jpeg(data / "pneumonia" / "bomb.jpg")
    inspected = invoke("inspect", data, "--out", tmp_path / "i")
    assert inspected.exit_code == 1 and "Traceback" not in inspected.output
    assert "decompression bomb" in (tmp_path / "i" / "summary.json").read_text()
    for command in (("presize", data, "--size", 16), ("train", data, "--out", tmp_path / "r")):
        message = one_line(invoke(*command), 2)
        assert str(bomb) in message and "decompression bomb" in message
    assert not (tmp_path / "r").exists()
    skipped = invoke("presize", data, "--size", 16, "--skip-unreadable")
    assert skipped.exit_code == 0 and "bomb.jpg" in skipped.output


def _manifest_data(tmp_path: Path) -> tuple[Path, list[str]]:
    from conftest import write_tree

    write_tree(tmp_path / "img", {"a": 8, "b": 8})
    rows = ["path,label"] + [f"img/{c}/img_{i}.png,{c}" for c in "ab" for i in range(8)]
    return tmp_path, rows


def test_manifest_not_utf8_names_the_line(tmp_path: Path) -> None:
    root, rows = _manifest_data(tmp_path)
    manifest = root / "latin1.csv"
    manifest.write_bytes(("\n".join([*rows, "img/caf\xe9.png,a"]) + "\n").encode("latin-1"))
    message = one_line(invoke("inspect", manifest, "--out", tmp_path / "o"), 2)
    assert f"{manifest}: line 18 is not UTF-8" in message


def test_manifest_row_without_file_is_unreadable_and_skippable(tmp_path: Path) -> None:
    root, rows = _manifest_data(tmp_path)
    manifest = root / "m.csv"
    manifest.write_text("\n".join([*rows, "img/missing.png,a"]) + "\n")
    message = one_line(invoke("presize", manifest, "--size", 16), 2)
    assert "missing.png: no such file" in message and "--skip-unreadable" in message
    skipped = invoke("presize", manifest, "--size", 16, "--skip-unreadable")
    assert skipped.exit_code == 0 and "missing.png: no such file" in skipped.output


def test_predict_does_not_read_manifest_paths_outside_its_folder(tmp_path: Path) -> None:
    import csv

    from conftest import write_npz
    from medbalance.workflows.api import train

    data = write_npz(tmp_path / "d.npz", {"train": (30, 10), "val": (10, 10), "test": (5, 5)})
    run = train(data, out=tmp_path / "run", epochs=1, model="smallcnn", bootstrap=10)
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(secret)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "list.csv").write_text("path\n../secret.png\n")
    out = tmp_path / "p.csv"
    result = invoke("predict", run.checkpoint, inner / "list.csv", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    with out.open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["prob_0"] == "" and "outside the manifest's folder" in row["error"]


def test_a_link_to_a_class_folder_is_skipped_as_documented(tmp_path: Path) -> None:
    from conftest import write_tree
    from medbalance.data.catalog import load_catalog

    data = write_tree(tmp_path / "data", {"a": 4, "b": 4})
    write_tree(tmp_path / "elsewhere", {"c": 4, "d": 4})
    (data / "c").symlink_to(tmp_path / "elsewhere" / "c", target_is_directory=True)
    catalog = load_catalog(str(data))
    assert catalog.class_names == ("a", "b") and "c" in catalog.ignored


@pytest.mark.parametrize(("name", "content"), [("w.safetensors", b"junk"), ("w.pth", b"")])
def test_unreadable_weights_file(tmp_path: Path, name: str, content: bytes) -> None:
    data = _npz(
        tmp_path / "d.npz",
        train_images=_images(20, 28),
        train_labels=np.r_[np.zeros(10, int), np.ones(10, int)],
    )
    weights = tmp_path / name
    weights.write_bytes(content)
    args = ("train", data, "--out", tmp_path / "r", "--model", "resnet18", "--weights", weights)
    message = one_line(invoke(*args), 2)
    assert str(weights) in message and "not a readable" in message
    assert not (tmp_path / "r").exists()


def test_inspect_completes_on_pydicom_corpus_of_real_dicom(tmp_path: Path) -> None:
    """pydicom's own test files (CT, MR, RT, SR, secondary capture; every transfer syntax;
    files without meta headers; multi-frame and truncated files) in two class folders."""
    import json
    import shutil

    pydicom = pytest.importorskip("pydicom")
    corpus = sorted(Path(pydicom.__file__).parent.glob("data/test_files/**/*.dcm"))
    assert len(corpus) > 40
    for k, file in enumerate(corpus):
        target = tmp_path / "data" / ("a" if k % 2 else "b") / f"{k:03d}_{file.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
    result = invoke("inspect", tmp_path / "data", "--out", tmp_path / "o")
    assert result.exit_code == 1, result.output  # unreadable files are data errors
    assert "Traceback" not in result.output and "internal error" not in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    refused = summary["unreadable"] + summary["not_images"]
    # unreadable files are counted (an error) unless --skip-unreadable; not-images never are
    assert summary["n_items"] + len(summary["not_images"]) == len(corpus)
    assert len(corpus) - len(refused) >= 45  # decoded, with the dicom extra's decoders
    assert all(entry["reason"] for entry in refused)
    reasons = " ".join(e["reason"] for e in refused)
    assert "multi-frame DICOM" in reasons and "without pixel data" in reasons
    assert (tmp_path / "o" / "samples.png").is_file()
    skipped = invoke("presize", tmp_path / "data", "--size", 32, "--skip-unreadable")
    assert skipped.exit_code == 0, skipped.output


def test_a_foreign_value_error_is_a_bug_not_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands catch ValueError for the input errors medbalance raises; the same type
    raised inside another library is reported as an internal error."""

    def numpy_fails(*args: object, **kwargs: object) -> None:
        np.asarray([1, 2]).reshape(3)  # ValueError from NumPy itself

    monkeypatch.setattr("medbalance.reporting.report.report_from_run", numpy_fails)
    message = one_line(invoke("report", tmp_path), 3)
    assert "internal error (ValueError: cannot reshape" in message


def test_the_pixel_limit_is_the_same_in_every_thread_and_call(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from medbalance.data.images import UnreadableImageError, probe_image

    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    over = _bomb_jpeg(tmp_path / "over.jpg", side=int(limit**0.5) + 2)  # ~89.5 MP: refused
    under = _bomb_jpeg(tmp_path / "under.jpg", side=int(limit**0.5) - 2)  # header only: read

    def outcome(path: Path) -> str:
        try:
            probe_image(path)
        except UnreadableImageError as error:
            return "refused" if "decompression bomb" in str(error) else str(error)
        return "read"

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(outcome, [over, under] * 16))
    assert got == ["refused", "read"] * 16
