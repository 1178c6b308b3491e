"""Tests for medbalance.evaluation.export: ONNX and TorchScript parity with PyTorch, sidecar,
errors."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_npz
from medbalance.core.checkpoint import read_metadata, save_checkpoint
from medbalance.evaluation.export import export_model
from medbalance.evaluation.inference import Trained, load_trained
from medbalance.training.config import TrainConfig
from medbalance.workflows.training import train_and_evaluate as fit

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs pip install 'medbalance[onnx]'")
_ABSENT = object()  # no threshold key at all


def _with_threshold(checkpoint: Path, out: Path, threshold: object) -> Path:
    """A copy of ``checkpoint`` whose metadata holds ``threshold`` (none when it is absent)."""
    metadata = {k: v for k, v in read_metadata(checkpoint).items() if k != "threshold"}
    if threshold is not _ABSENT:
        metadata["threshold"] = threshold
    save_checkpoint(out, load_trained(checkpoint).model, metadata)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny_npz data set and a smallcnn checkpoint trained on it, without a threshold.

    Trained once for the module (so built here rather than from the function-scoped
    ``tiny_npz`` fixture), with its own presize cache.
    """
    root = tmp_path_factory.mktemp("export")
    data = write_npz(root / "tiny.npz", {"train": (80, 20), "val": (20, 20), "test": (20, 20)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBALANCE_CACHE", str(root / "cache"))
        config = TrainConfig(
            data=str(data),
            out=str(root / "run"),
            epochs=1,
            batch_size=16,
            device="cpu",
            model="smallcnn",
            bootstrap=20,  # the run's own evaluation is not under test here
        )
        trained = fit(config).run_dir / "best.safetensors"
    return data, _with_threshold(trained, root / "plain.safetensors", _ABSENT)


@pytest.fixture
def checkpoint(run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the module's checkpoint, so exports land in this test's folder."""
    copy = tmp_path / "best.safetensors"
    shutil.copyfile(run[1], copy)
    return copy


@pytest.fixture
def data(run: tuple[Path, Path]) -> Path:
    return run[0]


def _reference(trained: Trained, data: Path, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """A normalised batch of real test images and PyTorch's probabilities for it."""
    images = np.load(data)["test_images"][:n]  # (n, 28, 28) uint8, presize == image size here
    x = trained.transform(torch.from_numpy(images[:, None]), train=False)
    with torch.no_grad():
        probabilities = torch.softmax(trained.model(x), dim=1)
    return x, probabilities.numpy()


def _onnx_parity(model_file: Path, trained: Trained, data: Path) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    for batch in (1, 5):
        x, expected = _reference(trained, data, batch)
        logits, probabilities = session.run(None, {"input": x.numpy()})
        assert probabilities.shape == (batch, 2)
        np.testing.assert_allclose(probabilities, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1), expected, atol=1e-4)


@needs_onnx
def test_onnx_matches_pytorch_and_sidecar_describes_input(checkpoint: Path, data: Path) -> None:
    model_file, sidecar_file = export_model(checkpoint, "onnx")
    assert model_file == checkpoint.with_name("best.onnx")
    assert sidecar_file == checkpoint.with_name("best.onnx.json")
    assert not list(checkpoint.parent.glob("*.part"))
    trained = load_trained(checkpoint)
    _onnx_parity(model_file, trained, data)

    sidecar = json.loads(sidecar_file.read_text())
    assert sidecar["format"] == "medbalance-export/1"
    assert sidecar["class_names"] == trained.class_names == ["0", "1"]
    assert sidecar["positive_class"] == trained.metadata["positive_class"]
    assert sidecar["normalization"] == {"kind": "minmax", "mean": None, "std": None}
    assert sidecar["image_size"] == trained.metadata["image_size"] == 28
    assert sidecar["presize"] == trained.presize and sidecar["fit"] == "pad"
    assert sidecar["channels"] == 1 and sidecar["model"] == "smallcnn"
    assert sidecar["threshold"] is None and sidecar["decision"].startswith("argmax")
    assert sidecar["opset"] >= 18
    assert sidecar["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": ["batch", 1, 28, 28]}
    ]
    assert [o["shape"] for o in sidecar["outputs"]] == [["batch", 2], ["batch", 2]]

    import onnx

    embedded = {p.key: p.value for p in onnx.load(str(model_file)).metadata_props}
    assert json.loads(embedded["medbalance"]) == sidecar


def test_torchscript_matches_pytorch(checkpoint: Path, data: Path, tmp_path: Path) -> None:
    model_file, sidecar_file = export_model(checkpoint, "torchscript", tmp_path / "out")
    assert model_file == tmp_path / "out"  # a path that is not a folder is the file itself
    assert sidecar_file == tmp_path / "out.json"
    trained = load_trained(checkpoint)
    extra = {"medbalance.json": ""}
    loaded = torch.jit.load(str(model_file), map_location="cpu", _extra_files=extra)
    for batch in (1, 5):
        x, expected = _reference(trained, data, batch)
        with torch.no_grad():
            logits, probabilities = loaded(x)
        np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), expected, atol=1e-5)
    sidecar = json.loads(sidecar_file.read_text())
    assert sidecar["opset"] is None and sidecar["model_format"] == "torchscript"
    assert json.loads(extra["medbalance.json"]) == sidecar


@pytest.mark.parametrize(
    ("stored", "threshold", "decision"),
    [
        (0.3, 0.3, "'1' where probabilities[:, 1] >= threshold"),
        ({"policy": "youden", "value": 0.25, "chosen_on": "val"}, 0.25, "probabilities[:, 1] >="),
        ({"policy": "argmax", "value": None, "chosen_on": "val"}, None, "argmax"),
        ({"policy": "specificity>=1", "value": math.inf}, math.inf, "never '1'"),
    ],
)
def test_sidecar_records_the_operating_point(
    checkpoint: Path, tmp_path: Path, stored: object, threshold: float | None, decision: str
) -> None:
    tuned = _with_threshold(checkpoint, tmp_path / "tuned.safetensors", stored)
    _, sidecar_file = export_model(tuned, "torchscript")
    sidecar = json.loads(sidecar_file.read_text())
    assert sidecar["threshold"] == threshold
    assert decision in sidecar["decision"]
    assert sidecar["operating_point"] == stored


@pytest.mark.parametrize("stored", [{"value": 1.5}, -0.1, "0.3", math.nan])
def test_invalid_threshold_is_refused(checkpoint: Path, tmp_path: Path, stored: object) -> None:
    bad = _with_threshold(checkpoint, tmp_path / "bad.safetensors", stored)
    with pytest.raises(ValueError, match=r"probability in \[0, 1\], inf or absent, got"):
        export_model(bad, "torchscript")
    assert not list(tmp_path.glob("bad.torchscript.pt*"))


@needs_onnx
def test_timm_model_exports_to_onnx(run: tuple[Path, Path], tmp_path: Path) -> None:
    """A timm backbone (resnet18 at 32 px, upsampled from the 28 px presize) keeps parity.

    Parity needs the architecture, not trained weights, so the checkpoint is written directly
    (batch-norm statistics from a few random batches) instead of spending a training run on it.
    """
    from medbalance.models.backbones import create_model

    data, plain = run
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2, in_chans=1).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 1, 32, 32))
    checkpoint = tmp_path / "best.safetensors"
    metadata = {**read_metadata(plain), "model": "resnet18", "image_size": 32}
    save_checkpoint(checkpoint, model, metadata)
    folder = tmp_path / "exported"
    folder.mkdir()
    model_file, _ = export_model(checkpoint, "onnx", folder, opset=18)
    assert model_file == folder / "best.onnx"
    trained = load_trained(checkpoint)
    images = np.load(data)["test_images"][:5, None]
    expected = trained.probabilities(images)
    import onnx
    import onnxruntime

    assert onnx.load(str(model_file)).opset_import[0].version == 18
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = trained.transform(torch.from_numpy(images[:batch]), train=False)
        assert x.shape == (batch, 1, 32, 32)
        (probabilities,) = session.run(["probabilities"], {"input": x.numpy()})
        np.testing.assert_allclose(probabilities, expected[:batch], atol=1e-4, rtol=0)


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "best.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere/best.safetensors"):
        export_model(missing, "torchscript")


def test_unknown_format_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'tflite'; valid forms: onnx, torchscript"):
        export_model(tmp_path / "best.safetensors", "tflite")  # type: ignore[arg-type]


@needs_onnx
@pytest.mark.parametrize(
    ("fmt", "opset", "message"),
    [("onnx", 17, "from 18"), ("onnx", 99, "from 18"), ("torchscript", 18, "ONNX export only")],
)
def test_bad_opset_is_refused(tmp_path: Path, fmt: str, opset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export_model(tmp_path / "best.safetensors", fmt, opset=opset)  # type: ignore[arg-type]


def test_output_over_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    with pytest.raises(ValueError, match="is the checkpoint itself"):
        export_model(path, "torchscript", path)


def test_missing_onnx_packages_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    with pytest.raises(
        ImportError, match=r"not installed: onnxscript; .*pip install 'medbalance\[onnx\]'"
    ):
        export_model(tmp_path / "best.safetensors", "onnx")


def test_the_stacked_ensemble_graph_is_the_stacker_on_the_mean() -> None:
    from medbalance.evaluation.export import _MeanOfMembers
    from medbalance.evaluation.stacking import Stacker

    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(2)]
    weights = np.array([[1.5, -0.2, 0.0], [0.1, 0.8, -0.4], [0.0, 0.3, 2.0]])
    stacker = Stacker(weights, np.array([0.5, -1.0, 0.2]), n_fit=10)
    x = torch.randn(6, 4)
    with torch.no_grad():
        mean = np.mean([torch.softmax(m(x), dim=1).numpy() for m in members], axis=0)
        logits, probabilities = _MeanOfMembers(members, stacker).eval()(x)
        plain_logits, plain = _MeanOfMembers(members).eval()(x)
    np.testing.assert_allclose(probabilities.numpy(), stacker.apply(mean), atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), stacker.logits(mean), atol=1e-5)
    np.testing.assert_allclose(plain.numpy(), mean, atol=1e-6)  # no stacker: the mean itself
    np.testing.assert_allclose(torch.softmax(plain_logits, 1).numpy(), mean, atol=1e-6)
