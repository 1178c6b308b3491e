"""Classifier backbones by name: any timm model, plus ``smallcnn`` for small images on CPU.

Every model from :func:`create_model` has timm's head API (``get_classifier``,
``reset_classifier``, ``forward_features``, ``forward_head``). Weights come from:

- the Hugging Face hub (``pretrained=True``): timm's ImageNet weights, first layer adapted to
  ``in_chans`` and head replaced by timm. Without a network this fails within seconds with
  :class:`PretrainedUnavailableError`, naming ``--weights PATH`` as the offline route; with
  ``HF_HUB_OFFLINE=1`` only the local Hugging Face cache is consulted;
- a local file (``weights=PATH``): a ``.safetensors`` file or a ``.pth``/``.pt``/``.bin`` state
  dict (read with ``weights_only=True``, never unpickling arbitrary objects), optionally wrapped
  as ``{"state_dict": ...}`` or ``{"model": ...}``. The first convolution is adapted to
  ``in_chans`` (RGB weights summed for one channel), head weights of another shape are dropped
  (the head stays newly initialised), and every other key must match the model exactly.

:func:`param_groups` gives discriminative learning rates; :func:`head_parameters`,
:func:`backbone_parameters` and :func:`set_backbone_trainable` split a model at its classifier.
"""

from __future__ import annotations

import difflib
import os
import pickle
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medbalance.models._compat import ensure_torchvision

ensure_torchvision()

import timm  # noqa: E402  (needs ensure_torchvision first)
from timm.models import adapt_input_conv, get_pretrained_cfg  # noqa: E402

__all__ = [
    "CUSTOM_MODELS",
    "PretrainedUnavailableError",
    "SmallCNN",
    "backbone_parameters",
    "create_model",
    "default_model_for",
    "head_parameters",
    "param_groups",
    "set_backbone_trainable",
]

_PROBE_TIMEOUT_S = 3.0
_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")
_WEIGHTS_HINT = (
    "to use weights offline, pass a local file with --weights PATH "
    "(a .safetensors file or a .pth state dict)"
)


class PretrainedUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be fetched (offline, or none exist)."""


def _conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (in_chans, out_chans):
        layers += [
            nn.Conv2d(c_in, out_chans, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """A small VGG-style CNN for 8–64 px images on CPU, with timm's head API.

    Four blocks of (3x3 conv, batch norm, ReLU) x 2 with ``widths`` channels, 2x2 max pooling
    between blocks, global average pooling, dropout and a linear head. With the default widths it
    has 1.17 M parameters; 28 px inputs reach the last block at 3x3.

    Args:
        num_classes: Outputs of the head; 0 makes the head an identity (features out).
        in_chans: Input channels (1 for grayscale, 3 for RGB).
        widths: Channels of each block.
        drop_rate: Dropout probability before the head.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        *,
        widths: Sequence[int] = (32, 64, 128, 256),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = widths[-1]
        self.pretrained_cfg: dict[str, Any] = {"first_conv": "features.0.0", "classifier": "head"}
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers.append(_conv_block(widths[i - 1] if i else in_chans, width))
        self.features = nn.Sequential(*layers)
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        """Return the head (an ``nn.Linear``, or ``nn.Identity`` when ``num_classes`` is 0)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a newly initialised one for ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the last block's feature map, ``[N, num_features, H/8, W/8]``."""
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool a feature map and apply the head (only pool and dropout with ``pre_logits``)."""
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


CUSTOM_MODELS: dict[str, type[SmallCNN]] = {"smallcnn": SmallCNN}


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float = 0.0,
    ordinal: bool = False,
) -> nn.Module:
    """Build a classifier by name, optionally with pretrained or local weights.

    Args:
        name: ``smallcnn`` or any timm model name (``resnet18``, ``efficientnet_b0``, ...,
            optionally with a pretrained tag such as ``resnet18.tv_in1k``).
        num_classes: Outputs of the head.
        in_chans: Input channels; pretrained first-layer weights are adapted to it.
        pretrained: Load timm's ImageNet weights from the Hugging Face hub.
        weights: A local ``.safetensors`` or ``.pth``/``.pt``/``.bin`` state dict; takes
            precedence over ``pretrained``.
        drop_rate: Dropout before the head.
        ordinal: The classes are ordered grades: the linear head becomes a CORN head
            (:class:`~medbalance.models.ordinal.CornLinear`), which still returns
            ``num_classes`` outputs (log class probabilities).

    Returns:
        The model on the CPU, in training mode.

    Raises:
        ValueError: Unknown name (with close matches), invalid sizes, or a weights file that does
            not fit the model.
        FileNotFoundError: ``weights`` does not exist.
        PretrainedUnavailableError: ``pretrained`` without a reachable source of weights.
    """
    if num_classes < 1 or in_chans < 1:
        raise ValueError(
            f"num_classes and in_chans must be >= 1, got num_classes={num_classes}, "
            f"in_chans={in_chans}"
        )
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    _check_name(name)
    path = Path(weights) if weights is not None else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    if pretrained and path is None and name in CUSTOM_MODELS:
        raise PretrainedUnavailableError(
            f"{name!r} has no published pretrained weights; train it from scratch, or "
            + _WEIGHTS_HINT
        )
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    model: nn.Module
    if name in CUSTOM_MODELS:
        model = CUSTOM_MODELS[name](**kwargs, drop_rate=drop_rate)
    elif pretrained and path is None:
        model = _create_pretrained_timm(name, **kwargs, drop_rate=drop_rate)
    else:
        model = timm.create_model(name, **kwargs, drop_rate=drop_rate)
    if ordinal:
        from medbalance.models.ordinal import use_corn_head

        use_corn_head(model, num_classes)
    if path is not None:
        _load_weights(model, path, name=name, in_chans=in_chans)
    return model


def _check_name(name: str) -> None:
    if name in CUSTOM_MODELS or timm.is_model(name):
        return
    choices = [*CUSTOM_MODELS, *timm.list_models()]
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise ValueError(
        f"unknown model {name!r}; {hint}choose 'smallcnn' or one of the "
        f"{len(choices) - len(CUSTOM_MODELS)} names in timm.list_models()"
    )


def _create_pretrained_timm(name: str, **kwargs: Any) -> nn.Module:
    import huggingface_hub.constants as hub

    cfg = get_pretrained_cfg(name)
    url = hub.ENDPOINT if cfg is None or cfg.hf_hub_id else cfg.url  # None: timm has none
    url = url if isinstance(url, str) else None
    env_offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if url == hub.ENDPOINT and hub.HF_HUB_OFFLINE:
        pass  # the hub client looks only in its local cache, and fails fast when not there
    elif env_offline:
        raise PretrainedUnavailableError(
            f"cannot download pretrained weights for {name!r}: HF_HUB_OFFLINE is set; "
            + _WEIGHTS_HINT
        )
    elif url and (reason := _unreachable(url)):
        raise PretrainedUnavailableError(
            f"cannot download pretrained weights for {name!r}: {reason}; {_WEIGHTS_HINT}, "
            "or set HF_HUB_OFFLINE=1 to use weights already in the Hugging Face cache"
        )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:  # hub, HTTP and file errors come in many types
        raise PretrainedUnavailableError(
            f"could not load pretrained weights for {name!r} "
            f"({type(error).__name__}: {error}); {_WEIGHTS_HINT}"
        ) from error


def _unreachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Return why ``url`` gave no HTTP answer within ``timeout`` seconds, or ``None``."""
    result: list[str | None] = []

    def probe() -> None:  # in a thread: DNS lookups ignore socket timeouts
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            result.append(None)
        except urllib.error.HTTPError:  # an HTTP status, even 4xx, means the server answered
            result.append(None)
        except (OSError, ValueError) as error:
            result.append(f"{url} is unreachable ({error})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{url} did not answer within {timeout:g} s"


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise ValueError(
                f"weights file {str(path)!r} is not a readable safetensors file ({error}); give "
                "the file safetensors.torch.save_file wrote"
            ) from None
    elif suffix in _STATE_DICT_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"weights file {str(path)!r} holds pickled Python objects, which are not loaded "
                "for safety (torch.load(weights_only=True) refused it); re-save only the tensors, "
                "e.g. torch.save(model.state_dict(), path) or safetensors.torch.save_file"
            ) from error
        except (RuntimeError, EOFError, OSError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise ValueError(
                f"weights file {str(path)!r} is not a readable PyTorch state dict ({first}); "
                "re-save it with torch.save(model.state_dict(), path)"
            ) from None
    else:
        raise ValueError(
            f"weights file {str(path)!r} has suffix {suffix!r}; expected .safetensors or one of "
            f"{', '.join(_STATE_DICT_SUFFIXES)}"
        )
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, Tensor)} if isinstance(obj, dict) else {}
    )
    if not tensors:
        raise ValueError(f"weights file {str(path)!r} holds no state dict of tensors")
    for prefix in ("module.", "_orig_mod."):  # DistributedDataParallel, torch.compile
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k.removeprefix(prefix): v for k, v in tensors.items()}
    return tensors


def _classifier_modules(model: nn.Module) -> list[nn.Module]:
    head = model.get_classifier()  # type: ignore[operator]
    return list(head) if isinstance(head, tuple | list) else [head]


def _says_little(key: str) -> bool:  # sorts such keys last among examples
    return key.endswith("num_batches_tracked")


def _load_weights(model: nn.Module, path: Path, *, name: str, in_chans: int) -> None:
    state = _read_state_dict(path)
    own = model.state_dict()
    head_ids = {id(m) for m in _classifier_modules(model)}
    head_prefixes = tuple(f"{n}." for n, m in model.named_modules() if id(m) in head_ids)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first_convs = cfg.get("first_conv") or ()
    for conv in (first_convs,) if isinstance(first_convs, str) else first_convs:
        key = f"{conv}.weight"
        if key in state and key in own and state[key].ndim == 4:
            file_chans = state[key].shape[1]
            if file_chans != in_chans and own[key].shape[1] == in_chans:
                state[key] = adapt_input_conv(in_chans, state[key], base_chans=file_chans)
    for key in [k for k in state if k.startswith(head_prefixes)]:
        if key in own and state[key].shape != own[key].shape:
            del state[key]  # a head for other classes: keep the new one
    missing = [k for k in own if k not in state and not k.startswith(head_prefixes)]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} (file {list(v.shape)}, model {list(own[k].shape)})"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{len(keys)} {what} (e.g. {', '.join(sorted(keys, key=_says_little)[:3])})"
            for what, keys in (
                ("model keys missing from the file", missing),
                ("file keys the model lacks", unexpected),
                ("keys of another shape", mismatched),
            )
            if keys
        ]
        raise ValueError(
            f"weights file {str(path)!r} does not fit model {name!r}: {'; '.join(problems)}; "
            "was it saved from another architecture?"
        )
    model.load_state_dict(state, strict=False)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the parameters of ``model.get_classifier()``, in module order."""
    seen: dict[int, nn.Parameter] = {}
    for module in _classifier_modules(model):
        seen.update((id(p), p) for p in module.parameters())
    return list(seen.values())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return every parameter not in the classifier, in module order."""
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` on every backbone parameter; the head is left as it is.

    Only gradients are switched: batch-norm layers of a frozen backbone still update their
    running statistics in training mode. Put those modules in eval mode too for a fully fixed
    feature extractor.
    """
    for param in backbone_parameters(model):
        param.requires_grad_(trainable)


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    backbone_lr_mult: float = 0.1,
    n_groups: int = 3,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with discriminative learning rates.

    The trainable backbone parameters, in module order, are split into ``n_groups`` chunks of
    near-equal tensor count. Chunk ``k`` (0 = nearest the input) gets
    ``lr * m ** (2 - k / (n_groups - 1))`` with ``m = backbone_lr_mult``: geometric from
    ``lr * m**2`` for the first chunk to ``lr * m`` for the last (just ``lr * m`` when
    ``n_groups`` is 1). The head gets ``lr``; ``m = 1`` gives one learning rate throughout.
    Biases, normalisation weights (every parameter with at most one dimension) and the names in
    a timm model's ``no_weight_decay()`` get no weight decay. Empty groups are left out; each
    group carries a ``name`` such as ``"backbone.0"`` or ``"head.no_decay"``.

    Args:
        model: A model from :func:`create_model`.
        lr: Learning rate of the head.
        backbone_lr_mult: Ratio of the last backbone chunk's learning rate to ``lr``, in (0, 1].
        n_groups: Number of backbone chunks.
        weight_decay: Weight decay of the decayed parameters.

    Returns:
        Dicts for ``torch.optim`` with ``params``, ``lr``, ``weight_decay`` and ``name``.
    """
    if lr <= 0 or not 0 < backbone_lr_mult <= 1 or n_groups < 1 or weight_decay < 0:
        raise ValueError(
            "param_groups needs lr > 0, 0 < backbone_lr_mult <= 1, n_groups >= 1 and "
            f"weight_decay >= 0; got lr={lr}, backbone_lr_mult={backbone_lr_mult}, "
            f"n_groups={n_groups}, weight_decay={weight_decay}"
        )
    skip: set[str] = set(getattr(model, "no_weight_decay", set)())
    no_decay = {id(p) for n, p in model.named_parameters() if p.ndim <= 1 or n in skip}
    backbone = [p for p in backbone_parameters(model) if p.requires_grad]
    bounds = [round(k * len(backbone) / n_groups) for k in range(n_groups + 1)]
    chunks: list[tuple[str, float, list[nn.Parameter]]] = [
        (
            f"backbone.{k}",
            lr * backbone_lr_mult ** (2 - k / (n_groups - 1) if n_groups > 1 else 1),
            backbone[bounds[k] : bounds[k + 1]],
        )
        for k in range(n_groups)
    ]
    chunks.append(("head", lr, [p for p in head_parameters(model) if p.requires_grad]))
    groups: list[dict[str, Any]] = []
    for name, group_lr, params in chunks:
        parts = [(name, weight_decay, params)]
        if weight_decay:
            decayed = [p for p in params if id(p) not in no_decay]
            parts = [(f"{name}.decay", weight_decay, decayed)]
            parts.append((f"{name}.no_decay", 0.0, [p for p in params if id(p) in no_decay]))
        groups += [
            {"params": ps, "lr": group_lr, "weight_decay": wd, "name": n}
            for n, wd, ps in parts
            if ps
        ]
    return groups


def default_model_for(image_size: int, device: str) -> str:
    """Return ``"smallcnn"`` for images of at most 64 px on the CPU, else ``"resnet18"``."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    on_cpu = torch.device(device).type == "cpu"
    return "smallcnn" if image_size <= 64 and on_cpu else "resnet18"
