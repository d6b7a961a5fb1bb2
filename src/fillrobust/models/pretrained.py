"""Import external ImageNet ResNet-18 checkpoints once, as safetensors.

Two layouts are read, never by executing pickled code
(``torch.load(weights_only=True)`` only rebuilds tensors and containers):

- ``torchvision``: a plain state dict of ``torchvision.models.resnet18``;
- ``robustness``: the MadryLab robustness-library files of Salman et al.
  (NeurIPS 2020), a dict whose ``model`` (or ``state_dict``) holds keys
  prefixed ``module.model.`` (the network), ``module.attacker.model.`` (a copy
  used by the attacker) and ``module.normalizer.`` (mean/std buffers).

The result is our ``NormalizedModel`` (normalisation inside, images in
[0, 1]) saved with a sidecar that records the source file and its sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fillrobust.io.checkpoint import save_checkpoint
from fillrobust.io.integrity import check_pin
from fillrobust.models.resnet import IMAGENET_MEAN, IMAGENET_STD, NormalizedModel, resnet18

FORMATS = ("torchvision", "robustness")
NET_PREFIX = "module.model."
NORMALIZER_PREFIX = "module.normalizer."


class PretrainedError(ValueError):
    """An external checkpoint cannot be imported (checksum, layout, keys)."""


def _load_untrusted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-tensor pickles
        raise PretrainedError(f"{path}: cannot be read with weights_only=True (refusing to unpickle "
                           f"arbitrary objects): {err}") from err


def _robustness_state(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], tuple, tuple]:
    if not isinstance(obj, dict):
        raise PretrainedError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    state = obj.get("model", obj.get("state_dict"))
    if not isinstance(state, dict):
        raise PretrainedError(f"{path}: no 'model' or 'state_dict' entry (keys: {sorted(obj)[:8]})")
    net = {k[len(NET_PREFIX):]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    if not net:
        raise PretrainedError(f"{path}: no keys prefixed '{NET_PREFIX}' (first keys: {list(state)[:5]})")
    mean = state.get(NORMALIZER_PREFIX + "new_mean")
    std = state.get(NORMALIZER_PREFIX + "new_std")
    mean = tuple(mean.flatten().tolist()) if mean is not None else IMAGENET_MEAN
    std = tuple(std.flatten().tolist()) if std is not None else IMAGENET_STD
    return net, mean, std


def convert(path: str | Path, fmt: str) -> NormalizedModel:
    """Read ``path`` in layout ``fmt`` into a NormalizedModel (1000 ImageNet classes)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise PretrainedError(f"format must be one of {FORMATS}, got {fmt!r}")
    obj = _load_untrusted(path)
    if fmt == "torchvision":
        state, mean, std = obj, IMAGENET_MEAN, IMAGENET_STD
    else:
        state, mean, std = _robustness_state(obj, path)
    model = resnet18(1000)
    model.normalize = type(model.normalize)(mean, std)
    try:
        missing, unexpected = model.net.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise PretrainedError(f"{path}: weights do not fit ResNet-18 ({err})") from err
    if missing or unexpected:
        raise PretrainedError(f"{path}: not a ResNet-18 state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def import_checkpoint(path: str, sha256: str | None, fmt: str, eps: float, out: str) -> dict[str, Any]:
    """Verify the file's sha256, convert it and save it as our checkpoint."""
    try:
        check_pin(path, sha256, "source checkpoint", "source.imports")
    except ValueError as err:
        raise PretrainedError(str(err)) from err
    model = convert(path, fmt)
    info = {"architecture": "resnet18", "classes": [f"imagenet_{i}" for i in range(1000)],
            "strategy": "SOURCE", "eps": float(eps), "source_file": str(path), "source_sha256": sha256,
            "format": fmt, "normalize": {"mean": model.normalize.mean.flatten().tolist(),
                                         "std": model.normalize.std.flatten().tolist()}}
    info["weights_sha256"] = save_checkpoint(model, out, info)
    return info
