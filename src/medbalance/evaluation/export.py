"""Export a trained model to ONNX or TorchScript, with a JSON sidecar describing its input.

The exported graph is the model alone plus a softmax (a cv folder: the members, the mean of their
softmaxes and, for a stacked ensemble, the stacker as a linear layer on the log of that mean
followed by a softmax): it takes a float32 batch
``(B, C, S, S)`` named ``input`` that is **already preprocessed** and returns two float32
``(B, K)`` tensors, ``logits`` and ``probabilities`` (the softmax of the logits over the K
classes, in ``class_names`` order). Logits are kept for calibration and for thresholds applied
outside the graph. The batch dimension is dynamic; C and S are fixed.

The preprocessing is the same as :func:`medbalance.evaluation.inference.load_trained` applies, and
the sidecar records every parameter of it. For one decoded image ``(H, W)`` or ``(H, W, 3)``:

1. Channels: a grayscale image is repeated to 3 channels when ``channels`` is 3; a colour
   image cannot feed a 1-channel model.
2. Presize (``fit`` = ``"pad"``, letterbox): resize keeping the aspect ratio so that the long
   side equals ``presize`` (Lanczos for 8-bit images, bilinear for 16-bit), then pad the short
   side with zeros to a ``presize`` square, the image centred (the extra pixel of an odd
   padding goes to the bottom/right). The result stays integer.
3. Scale to [0, 1] by dtype: uint8 divided by 255, uint16 by 65535.
4. Resize from ``presize`` to ``image_size`` (bilinear, antialiased, ``align_corners=False``,
   as ``torch.nn.functional.interpolate``); skipped when the sizes are equal.
5. Normalise by ``normalization["kind"]``: ``minmax`` maps each image to
   ``(x - min) / max(max - min, 1e-6)`` over all its channels and pixels; ``meanstd`` computes
   ``(x - mean[c]) / std[c]`` with the stored training statistics; ``fixed`` leaves the [0, 1]
   values as they are.

The sidecar ``<model file>.json`` (``best.onnx.json`` for ``best.onnx``) also holds the class
names, the positive class and the operating point chosen on validation data: ``threshold`` is
a probability when the checkpoint has a binary threshold, and then the positive class is
predicted where ``probabilities[:, positive_index] >= threshold``; it is null when the
checkpoint has none, and then the prediction is the argmax (or, for a multi-class rule, the
rule named in ``operating_point``, the checkpoint's record as stored). ``decision`` says which
in words. The same JSON is embedded in the ONNX file (``metadata_props["medbalance"]``) and in
the TorchScript archive (extra file ``medbalance.json``).

ONNX uses the ``torch.export``-based exporter (``dynamo=True``, torch's default and the one
maintained), which emits opset 18 or later; the legacy TorchScript-based exporter is
deprecated. TorchScript uses ``torch.jit.trace``; torch deprecates TorchScript too, so prefer
ONNX for new deployments. Every export is checked before it is kept: the exported model runs on
a random batch of 3 (ONNX through onnxruntime) and must agree with PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medbalance import __version__
from medbalance.core.files import atomic_write, atomic_write_text
from medbalance.evaluation._parsing import parse_choice
from medbalance.evaluation.calibration import METADATA_KEY as CALIBRATION_KEY
from medbalance.evaluation.conformal import METADATA_KEY as CONFORMAL_KEY
from medbalance.evaluation.conformal import read_conformal
from medbalance.evaluation.decision import METADATA_KEY, read_decision
from medbalance.evaluation.stacking import Stacker
from medbalance.models.tta import as_logits, mean_softmax

__all__ = ["SIDECAR_FORMAT", "ExportFormat", "export_model", "sidecar_path"]

SIDECAR_FORMAT = "medbalance-export/1"
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "probabilities")
MIN_OPSET = 18  # the torch.export-based exporter emits nothing older
_VERIFY_BATCH = 3
_VERIFY_TOLERANCE = 1e-4  # max |difference| of probabilities, exported vs PyTorch
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
_ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


class ExportFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


class _WithProbabilities(nn.Module):
    """The classifier followed by a softmax: ``x -> (logits, probabilities)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(x)
        return logits, torch.softmax(logits, dim=1)


class _MeanOfMembers(nn.Module):
    """An ensemble as one graph: ``x -> (log of the mean probabilities, mean probabilities)``,
    so a softmax of the first output gives the second, as for a single model.

    A stacked ensemble adds its stacker as a linear layer on those log-probabilities:
    ``logits = log(mean) @ weights.T + bias`` and ``probabilities = softmax(logits)``.
    """

    def __init__(self, models: list[nn.Module], stacker: Stacker | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.stack: nn.Linear | None = None
        if stacker is not None:
            self.stack = nn.Linear(stacker.n_classes, stacker.n_classes)
            with torch.no_grad():
                self.stack.weight.copy_(torch.from_numpy(stacker.weights))
                self.stack.bias.copy_(torch.from_numpy(stacker.bias))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        probs = mean_softmax([m(x) for m in self.members])
        if self.stack is None:
            return as_logits(probs), probs
        logits = self.stack(as_logits(probs))
        return logits, torch.softmax(logits, dim=1)


def _format(value: str) -> ExportFormat:
    return parse_choice(ExportFormat, value, "export format")


def _require_onnx() -> None:
    missing = [name for name in _ONNX_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {', '.join(_ONNX_MODULES)}; not installed: {', '.join(missing)}; "
            "install them with: pip install 'medbalance[onnx]'"
        )


def _check_opset(fmt: ExportFormat, opset: int | None) -> None:
    if opset is None:
        return
    if fmt is not ExportFormat.ONNX:
        raise ValueError(f"opset applies to ONNX export only, got opset={opset} for {fmt.value}")
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} (the oldest the torch.export-based "
            f"exporter emits) to {newest} (the newest onnx {onnx.__version__} knows), "
            f"got {opset!r}; leave it unset for the exporter's default"
        )


def sidecar_path(model_file: Path) -> Path:
    """The JSON sidecar of an exported model: the file name with ``.json`` appended."""
    return model_file.with_name(model_file.name + ".json")


def _output_path(checkpoint: Path, fmt: ExportFormat, out: Path | None) -> Path:
    default = f"{checkpoint.stem}{_SUFFIXES[fmt.value]}"
    if out is None:
        path = checkpoint.with_name(default)
    else:
        path = Path(out) / default if Path(out).is_dir() else Path(out)
    if path.resolve() == checkpoint.resolve():
        raise ValueError(f"output {path} is the checkpoint itself; choose another --out")
    return path


def _sidecar(
    metadata: Mapping[str, Any], fmt: ExportFormat, model_file: Path, opset: int | None
) -> dict[str, Any]:
    class_names = [str(name) for name in metadata["class_names"]]
    positive = str(metadata["positive_class"])
    channels, size = int(metadata["channels"]), int(metadata["image_size"])
    decision = read_decision(metadata)
    return {
        "format": SIDECAR_FORMAT,
        "medbalance_version": __version__,
        "checkpoint_version": metadata.get("version"),
        "torch_version": torch.__version__,
        "model_format": fmt.value,
        "model_file": model_file.name,
        "opset": opset,
        "model": metadata["model"],
        "class_names": class_names,
        "positive_class": positive,
        "positive_index": class_names.index(positive),
        "threshold": decision.threshold,
        "decision": decision.describe(),
        "operating_point": metadata.get(METADATA_KEY),
        "calibration": metadata.get(CALIBRATION_KEY),  # null: not stored
        "calibration_rule": _CALIBRATION_RULES.get(
            str((metadata.get(CALIBRATION_KEY) or {}).get("method"))
        ),
        "conformal": _conformal_sidecar(metadata),
        "channels": channels,
        "image_size": size,
        "presize": int(metadata["presize"]),
        "fit": metadata.get("fit", "pad"),
        "normalization": dict(metadata["normalization"]),
        "preprocessing": [
            "channels: repeat grayscale to 3 channels when channels is 3",
            "presize: keep aspect ratio, long side to presize (Lanczos for 8-bit, bilinear for "
            "16-bit), zero-pad centred to a presize square",
            "scale: uint8 / 255, uint16 / 65535",
            "resize: presize to image_size, bilinear, antialias, align_corners=False",
            "normalize: minmax (x - min) / max(max - min, 1e-6) per image; meanstd "
            "(x - mean[c]) / std[c]; fixed as is",
        ],
        "inputs": [
            {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", channels, size, size]}
        ],
        "outputs": [
            {"name": name, "dtype": "float32", "shape": ["batch", len(class_names)]}
            for name in OUTPUT_NAMES
        ],
    }


# how a program applies the stored calibration to the probabilities p, per method
_CALIBRATION_RULES = {
    "temperature": "calibrated = softmax((log p + log prior_weights) / temperature)",
    "bcts": "calibrated = softmax((log p + log prior_weights) / temperature + bias)",
    "vector": "calibrated = softmax((log p + log prior_weights) * scale + bias)",
    "isotonic": "q = softmax(log p + log prior_weights); calibrated_k = interp(q_k, *knots[k]) "
    "renormalised over k (two classes: knots[0] maps q_1, calibrated_0 = 1 - calibrated_1)",
}

# the levels whose per-class conformal thresholds the sidecar spells out (any other level
# follows from the stored scores by the rule written beside them)
_SIDECAR_LEVELS = (0.8, 0.9, 0.95)


def _conformal_sidecar(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conformal scores stored with the decision, the rule that makes sets of them, and
    each class's threshold at a few levels (null: the class is in every set at that level, too
    few tuning cases); null for a model stored without them."""
    scores = read_conformal(metadata)
    if scores is None:
        return None
    return {
        **scores.to_record(),
        "rule": "class k is in an image's set at level L when 1 - p_k <= q_k(L), the "
        "ceil((n_k + 1) * L)-th smallest of scores[k] (n_k scores); none: k is in every set",
        "thresholds": {
            f"{level:g}": {
                name: (float(q) if math.isfinite(q) else None)
                for name, q in zip(scores.class_names, scores.thresholds(level), strict=True)
            }
            for level in _SIDECAR_LEVELS
        },
    }


def _check_agreement(expected: Tensor, got: Tensor, what: str) -> None:
    diff = float((expected - got).abs().max())
    if not math.isfinite(diff) or diff > _VERIFY_TOLERANCE:
        raise RuntimeError(
            f"the exported {what} model disagrees with PyTorch: probabilities differ by up to "
            f"{diff:.3g} (tolerance {_VERIFY_TOLERANCE:g}) on a random batch; the model may use "
            "an operator the exporter translates wrongly; try the other format or another opset"
        )


def _write_onnx(
    wrapped: nn.Module, example: Tensor, probe: Tensor, tmp: Path, sidecar: dict[str, Any]
) -> None:
    import onnx
    import onnxruntime

    opset = sidecar["opset"]
    with warnings.catch_warnings():  # torch-internal, nothing a caller can act on
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.onnx.export(
            wrapped,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=opset,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program; cannot write the ONNX file")
    actual = int(program.model.opset_imports.get("", -1))
    if opset is not None and actual != opset:  # the exporter falls back rather than fail
        raise RuntimeError(
            f"asked for ONNX opset {opset} but the exporter produced opset {actual}; "
            f"choose an opset between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}"
        )
    sidecar["opset"] = actual
    program.model.metadata_props["medbalance"] = json.dumps(sidecar)
    program.save(str(tmp), external_data=False)
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = wrapped(probe)[1]
    got = session.run([OUTPUT_NAMES[1]], {INPUT_NAME: probe.numpy()})[0]
    _check_agreement(expected, torch.from_numpy(got), "ONNX")


def _write_torchscript(
    wrapped: nn.Module, example: Tensor, probe: Tensor, tmp: Path, meta: str
) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, (example,))
        torch.jit.save(traced, str(tmp), _extra_files={"medbalance.json": meta})
        expected = wrapped(probe)[1]
        got = torch.jit.load(str(tmp), map_location="cpu")(probe)[1]
    _check_agreement(expected, got, "TorchScript")


def export_model(
    checkpoint: Path,
    fmt: ExportFormat | Literal["onnx", "torchscript"],
    out: Path | None = None,
    *,
    opset: int | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Export the model of a checkpoint to ONNX or TorchScript, with a JSON sidecar.

    The exported model maps a preprocessed float32 batch ``(B, C, image_size, image_size)`` to
    ``(logits, probabilities)``, each ``(B, K)``; see the module docstring for the
    preprocessing, which the sidecar records. Before the files are kept, the exported model is
    run on a random batch of 3 and must match PyTorch's probabilities within 1e-4.

    Args:
        checkpoint: A run's ``best.safetensors``, a run folder, or a cv folder (one graph that
            averages the fold models; the sidecar holds the out-of-fold decision).
        fmt: ``"onnx"`` (dynamic batch; needs ``pip install 'medbalance[onnx]'``) or
            ``"torchscript"``.
        out: The model file to write, or an existing folder to write into. Default: beside the
            checkpoint, ``<stem>.onnx`` or ``<stem>.torchscript.pt``.
        opset: ONNX opset, 18 or later; default: the exporter's. ONNX only.
        overwrite: replace an existing model file or sidecar (never a file of a run folder).

    Returns:
        The model file and its JSON sidecar (the model file's name plus ``.json``), both
        written atomically.

    Raises:
        ValueError: an unknown format, an opset out of range or given for TorchScript, an
            output path equal to the checkpoint, or an invalid stored threshold.
        FileNotFoundError: the checkpoint does not exist.
        ImportError: ONNX export without onnx, onnxscript or onnxruntime installed.
        RuntimeError: the exported model disagrees with PyTorch.
    """
    from medbalance.core.run_folder import check_output_file
    from medbalance.evaluation.ensemble import ENSEMBLE_FILE, Ensemble, load_model

    kind = _format(fmt)
    checkpoint = Path(checkpoint)
    if kind is ExportFormat.ONNX:
        _require_onnx()
    _check_opset(kind, opset)
    ensemble_dir = checkpoint.is_dir() and (checkpoint / ENSEMBLE_FILE).is_file()
    if checkpoint.is_dir() and not ensemble_dir:
        checkpoint = checkpoint / "best.safetensors"
    target = checkpoint / "ensemble.safetensors" if ensemble_dir else checkpoint
    model_file = _output_path(target, kind, out)  # refused before anything is loaded
    for path in (model_file, sidecar_path(model_file)):
        check_output_file(path, overwrite=overwrite)
    loaded = load_model(checkpoint, device="cpu")
    wrapped: nn.Module
    if isinstance(loaded, Ensemble):  # a cv folder: one graph that averages the members
        metadata = {  # the ensemble's own decision, calibration and conformal scores
            **loaded.members[0].metadata,
            "threshold": loaded.record["decision"],
            CALIBRATION_KEY: loaded.record.get(CALIBRATION_KEY),
            CONFORMAL_KEY: loaded.record.get(CONFORMAL_KEY),
        }
        wrapped = _MeanOfMembers([m.model for m in loaded.members], loaded.stacker).eval()
        first = loaded.members[0]
    else:
        metadata, first = loaded.metadata, loaded
        wrapped = _WithProbabilities(loaded.model).eval()
    channels, size = first.channels, int(first.metadata["image_size"])
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, channels, size, size, generator=generator)
    probe = torch.randn(_VERIFY_BATCH, channels, size, size, generator=generator)
    sidecar = _sidecar(metadata, kind, model_file, opset)
    if isinstance(loaded, Ensemble):
        sidecar["ensemble"] = loaded.summary()
        sidecar["decision"] += "; probabilities are the mean of the members'"
        if loaded.stacker is not None:
            sidecar["ensemble"]["stacker"] = loaded.stacker.to_record()
            sidecar["decision"] += (
                " through the stacker: softmax(log(mean) @ weights.T + bias), in the graph"
            )
    if kind is ExportFormat.ONNX:
        atomic_write(model_file, lambda tmp: _write_onnx(wrapped, example, probe, tmp, sidecar))
    else:
        meta = json.dumps(sidecar)
        atomic_write(model_file, lambda tmp: _write_torchscript(wrapped, example, probe, tmp, meta))
    text = json.dumps(sidecar, indent=2) + "\n"
    json_file = sidecar_path(model_file)
    atomic_write_text(json_file, text)
    return model_file, json_file
