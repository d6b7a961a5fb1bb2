"""Top-GAP (papers/topgap-size-priors-cnn.txt): a CAM head with top-k pooling.

The backbone's last ``levels`` feature maps each go through a 3x3 convolution
with ``width`` (256) filters, are upsampled to the largest of them and summed
(the paper's simplified FPN); optional dropout; a 1x1 convolution to the
classes gives the class activation map X (the CAM). Top-GAP(X, k) pools each
class map to the mean of its k largest values (k = 1: global max pooling,
k = H*W: global average pooling). Training adds lambda * ||X||_1 to the
cross-entropy (``topgap_loss``).

Modes (paper Sec. 3.1): training (``model.train()``, dropout and pooling on),
prediction (``model.eval()``: dropout off, BatchNorm frozen; ``forward``
returns the pooled logits, so attacks and evaluations treat it as any
classifier) and CAM (:meth:`TopGapModel.cam_mode`: eval, no pooling, each map
min-max scaled to [0, 1]).

Ablation switches: ``fpn`` off puts the 1x1 convolution on the last feature
map only; ``topgap`` off pools with GAP; the l1 term is the strategy's
(``train.strategies.TOPGAP.topgap.l1``).

The whole head configuration is the checkpoint's architecture name
(``topgap(backbone=resnet18,levels=4,...)``), so every loader that builds
``info['architecture']`` (``models.resnet.build_model``) rebuilds it.

Backbones: ``resnet18`` (and ``resnet18_half`` / ``resnet18_quarter``, ResNet-18 at
half / quarter width) is the project's own ResNet-18 (torchvision's
modules; same module names and computation as timm's ``features_only``
ResNet-18, so their state dicts load into each other, tested) because
importing timm costs 3-6 s per job (it imports torchvision); any other name
(``efficientnet_b0``, ``convnext_tiny``, or ``timm:resnet18``) is built by
``timm.create_model(name, features_only=True, pretrained=False)``, never
downloaded. Local weights (a safetensors file) load into the backbone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fillrobust.models.resnet import NormalizedModel, ResNet

PREFIX = "topgap"
#: our own ResNets, by name -> width (models.resnet)
BACKBONES_NATIVE = {"resnet18": 1.0, "resnet18_half": 0.5, "resnet18_quarter": 0.25}


@dataclass(frozen=True)
class TopGapConfig:
    """Architecture of a Top-GAP model (everything the weights' shapes and the pooling need).

    ``k`` is a fraction of the CAM's locations (paper: 64-2048 of 56x56, 2-65 %);
    the pooled count is ``k_pixels(k, H*W)``.
    """

    backbone: str = "resnet18"
    levels: int = 4
    fpn: bool = True
    width: int = 256
    topgap: bool = True
    k: float = 0.1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.k <= 1.0:
            raise ValueError(f"topgap.k: expected a fraction of the CAM in (0, 1], got {self.k}")
        if self.levels < 1:
            raise ValueError(f"topgap.levels: expected >= 1 feature maps, got {self.levels}")
        if self.width < 1:
            raise ValueError(f"topgap.width: expected >= 1 filters, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"topgap.dropout: expected a probability in [0, 1), got {self.dropout}")

    def name(self) -> str:
        """The architecture name stored in the sidecar: ``topgap(backbone=resnet18,levels=4,...)``."""
        parts = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self)]
        return f"{PREFIX}({','.join(parts)})"

    @classmethod
    def parse(cls, arch: str) -> TopGapConfig:
        """Inverse of :meth:`name`; ValueError naming the architecture when malformed."""
        match = re.fullmatch(rf"{PREFIX}\((.*)\)", arch)
        if not match:
            raise ValueError(f"architecture {arch!r}: expected {PREFIX}(key=value,...)")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in filter(None, match.group(1).split(",")):
            key, _, text = item.partition("=")
            if key not in types:
                raise ValueError(f"architecture {arch!r}: unknown key {key!r}; expected {sorted(types)}")
            values[key] = _value(types[key], text)
        return cls(**values)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TopGapConfig:
        """The architecture part of a strategy's ``topgap`` params (loss keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _value(kind: Any, text: str) -> Any:
    kind = str(kind)
    if kind == "bool":
        return text == "1"
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def k_pixels(k: float, locations: int) -> int:
    """The number of CAM values Top-GAP averages: round(k * locations), at least 1."""
    return min(locations, max(1, round(k * locations)))


def top_gap(cam: torch.Tensor, k: int) -> torch.Tensor:
    """Top-GAP(X, k): per image and class, the mean of the k largest values of the map.

    ``cam`` is (N, C, H, W); returns (N, C). The gradient reaches only the k
    selected locations (``topk``'s backward scatters into them).
    """
    flat = cam.flatten(2)
    if k >= flat.shape[2]:
        return flat.mean(2)
    return flat.topk(k, dim=2, sorted=False).values.mean(2)


def min_max(cam: torch.Tensor) -> torch.Tensor:
    """Each map (last two dims) scaled to [0, 1]; a constant map becomes 0."""
    flat = cam.flatten(-2)
    low = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.view_as(cam)


class ResNetFeatures(ResNet):
    """ResNet-18 (at ``width``) returning the outputs of its four stages (strides 4, 8, 16, 32).

    Module names are timm's ``features_only`` ResNet-18's (conv1, bn1, layer1-4),
    so either's state dict loads into the other.
    """

    reductions = (4, 8, 16, 32)

    def __init__(self, width: float = 1.0) -> None:
        super().__init__((2, 2, 2, 2), num_classes=1, width=width)
        self.channels = self.planes
        del self.fc, self.avgpool  # no classifier: the Top-GAP head replaces it

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def make_backbone(name: str) -> tuple[nn.Module, tuple[int, ...], tuple[int, ...]]:
    """Backbone module, channels and strides of its feature maps (shallow to deep)."""
    if name in BACKBONES_NATIVE:
        net = ResNetFeatures(BACKBONES_NATIVE[name])
        return net, net.channels, net.reductions
    import timm  # imported only here: 3-6 s (it imports torchvision)

    timm_name = name.removeprefix("timm:")
    try:
        net = timm.create_model(timm_name, features_only=True, pretrained=False)
    except RuntimeError as err:
        raise ValueError(f"topgap.backbone: timm has no model {timm_name!r} ({err})") from err
    return net, tuple(net.feature_info.channels()), tuple(net.feature_info.reduction())


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load local weights (safetensors) into the backbone; never downloads.

    Accepts a backbone state dict, timm's full-model keys, or one of our
    checkpoints (keys ``net.*``): prefixes ``net.``/``backbone.`` are removed
    and classifier keys the backbone lacks are dropped. Every backbone key
    must be present.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"topgap.weights: {path} not found (expected a local .safetensors file)")
    state = {re.sub(r"^(net\.|backbone\.)", "", k): v for k, v in load_file(str(path)).items()}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"topgap.weights: {path} lacks backbone keys {missing[:5]} "
                         f"({len(missing)} missing)")
    backbone.load_state_dict({k: state[k] for k in own})


class TopGapNet(nn.Module):
    """Backbone + simplified FPN + 1x1 classifier (the CAM) + Top-GAP / GAP pooling."""

    def __init__(self, num_classes: int, config: TopGapConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone, channels, strides = make_backbone(config.backbone)
        levels = min(config.levels, len(channels)) if config.fpn else 1
        self.levels = levels
        used = channels[-levels:]
        #: stride of the CAM relative to the input (4 for the last 4 maps of ResNet-18)
        self.cam_stride = strides[-levels]
        if config.fpn:
            self.lateral = nn.ModuleList(nn.Conv2d(c, config.width, 3, padding=1) for c in used)
            head_in = config.width
        else:
            self.lateral = nn.ModuleList()
            head_in = used[-1]
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(head_in, num_classes, 1)

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """The raw CAM X (N, classes, H, W) of normalised images."""
        maps = self.backbone(x)[-self.levels:]
        if self.config.fpn:
            size = maps[0].shape[-2:]  # the largest map
            summed = None
            for conv, m in zip(self.lateral, maps, strict=True):
                y = conv(m)
                if y.shape[-2:] != size:
                    y = F.interpolate(y, size=size, mode="nearest")
                summed = y if summed is None else summed + y
            features = summed
        else:
            features = maps[-1]
        return self.classifier(self.dropout(features))

    def k_for(self, cam: torch.Tensor) -> int:
        """Locations pooled for a CAM of this size (all of them without Top-GAP)."""
        locations = cam.shape[-2] * cam.shape[-1]
        return k_pixels(self.config.k, locations) if self.config.topgap else locations

    def pool(self, cam: torch.Tensor) -> torch.Tensor:
        """Class scores: Top-GAP(X, k) or, with ``topgap`` off, GAP."""
        return top_gap(cam, self.k_for(cam))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.cam(x))


class TopGapModel(NormalizedModel):
    """A Top-GAP classifier over images in [0, 1] (normalisation inside, as every model)."""

    net: TopGapNet

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Raw CAM in the current mode (training: dropout on)."""
        return self.net.cam(self.normalize(self.preprocess(x)))

    def cam_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward giving the CAM (for the l1 term) and the pooled logits (for CE)."""
        cam = self.cam(x)
        return cam, self.net.pool(cam)

    def cam_mode(self, x: torch.Tensor) -> torch.Tensor:
        """CAM mode: eval (dropout off, BatchNorm frozen), no pooling, min-max scaled to [0, 1].

        Returns (N, classes, H, W); the model's train/eval mode is restored.
        """
        was_training = self.training
        self.eval()
        try:
            return min_max(self.cam(x))
        finally:
            self.train(was_training)


def build_topgap(arch_or_config: str | TopGapConfig, num_classes: int,
                 weights: str | None = None) -> TopGapModel:
    """A Top-GAP model from its architecture name or config; ``weights`` initialise the backbone."""
    config = (TopGapConfig.parse(arch_or_config) if isinstance(arch_or_config, str)
              else arch_or_config)
    model = TopGapModel(TopGapNet(num_classes, config))
    if weights:
        load_backbone_weights(model.net.backbone, weights)
    return model


def topgap_loss(cam: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """L = lambda * ||X||_1 + CE(softmax(Top-GAP(X, k)), y) (paper eq. 3).

    ||X||_1 is taken as the mean absolute CAM value (over batch, classes and
    locations), so lambda = 1 (the paper's) does not depend on the CAM size
    or the number of classes; the paper does not state its normalisation.
    """
    loss = F.cross_entropy(logits, y)
    if lam > 0:
        loss = loss + lam * cam.abs().mean()
    return loss


def describe(model: nn.Module) -> dict[str, Any]:
    """The sidecar's head fields: head (topgap / gap), k, the CAM stride, fpn levels."""
    net = model.net
    if not isinstance(net, TopGapNet):
        return {"head": "linear"}
    cfg = net.config
    return {"architecture": cfg.name(), "head": "topgap" if cfg.topgap else "gap",
            "k": cfg.k if cfg.topgap else 1.0, "cam_stride": net.cam_stride, "fpn_levels": net.levels,
            "topgap_config": asdict(cfg)}
