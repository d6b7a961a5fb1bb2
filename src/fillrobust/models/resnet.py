"""Classifiers that take images in [0, 1]: normalisation lives in the model.

Keeping the normaliser inside the model lets attacks and augmentations work
in pixel space ([0, 1] box, eps in pixel units) as in the papers. A fixed
preprocessing (``models/preprocess.py``: DCT low-pass, gray) sits before the
normaliser; an architecture name ``resnet18+lowpass`` selects it.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from fillrobust.models.preprocess import PREPROCESSINGS, build_preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ResNet "layers" for freezing (ICIP 2021, Sec. 4): stage 1 includes the stem.
STAGES = (("conv1", "bn1", "layer1"), ("layer2",), ("layer3",), ("layer4",))


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with constant buffers."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """``net(normalize(preprocess(x)))``: a classifier over images in [0, 1].

    ``preprocess`` (default none) is parameter-free, so it adds no state-dict keys.
    """

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 preprocess: str = "none") -> None:
        super().__init__()
        self.preprocess = build_preprocess(preprocess)
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(self.preprocess(x)))


def resnet18(num_classes: int) -> NormalizedModel:
    """torchvision ResNet-18 (ImageNet architecture) with a ``num_classes`` head."""
    return NormalizedModel(torchvision.models.resnet18(weights=None, num_classes=num_classes))


def vgg11_bn(num_classes: int, width: float = 1.0) -> NormalizedModel:
    """VGG-11-BN with a CIFAR-style head: the MI-FGSM surrogate of M-TLAT.

    torchvision's VGG-11 ("A") convolutional layers with BatchNorm, without the
    last max-pool (so 16-px inputs still work), then global average pooling and
    one linear layer: the ImageNet head (two 4096-wide layers on 7x7 maps) does
    not fit 32-px crops. ``width`` scales every layer's channels.
    """
    from torchvision.models.vgg import cfgs, make_layers

    cfg = [v if v == "M" else max(1, int(v * width)) for v in cfgs["A"][:-1]]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg[-1], num_classes))
    return NormalizedModel(nn.Sequential(make_layers(cfg, batch_norm=True), head))


def vgg11_bn_half(num_classes: int) -> NormalizedModel:
    """VGG-11-BN at half width: ~1/4 of the FLOPs, about a ResNet-18's at 32 px (CPU scale)."""
    return vgg11_bn(num_classes, 0.5)


ARCHITECTURES = {"resnet18": resnet18, "vgg11_bn": vgg11_bn, "vgg11_bn_half": vgg11_bn_half}


def architecture_name(arch: str, preprocess: str | None = "none") -> str:
    """The sidecar's architecture: ``resnet18`` or ``resnet18+lowpass`` (preprocessing inside)."""
    return arch if preprocess in (None, "none") else f"{arch}+{preprocess}"


def frozen_prefix_stages(model: nn.Module) -> int:
    """How many leading ResNet stages (``STAGES``) of ``model`` are fixed:
    no trainable parameter and every module in eval mode (BatchNorm uses, and
    keeps, its running statistics). 0 for other architectures."""
    net = getattr(model, "net", None)
    if not all(hasattr(net, name) for stage in STAGES for name in stage):
        return 0
    count = 0
    for stage in STAGES:
        modules = [getattr(net, name) for name in stage]
        fixed = all(not m.training and not any(p.requires_grad for p in m.parameters())
                    for module in modules for m in module.modules())
        if not fixed:
            break
        count += 1
    return count


def split_at_stage(model: NormalizedModel, stages: int) -> tuple[nn.Module, nn.Module]:
    """``model`` as ``suffix(prefix(x))`` cut after ``stages`` ResNet stages.

    The prefix is preprocess, normaliser, stem and the first ``stages``
    stages; the suffix the remaining stages, pooling and head. Both share the
    model's modules (training the suffix trains the model), and the order of
    operations is torchvision's ``ResNet.forward``.
    """
    if not 1 <= stages <= len(STAGES):
        raise ValueError(f"split_at_stage: expected 1..{len(STAGES)} stages, got {stages}")
    net = model.net
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    prefix = nn.Sequential(model.preprocess, model.normalize, net.conv1, net.bn1, net.relu, net.maxpool,
                           *layers[:stages])
    suffix = nn.Sequential(*layers[stages:], net.avgpool, nn.Flatten(1), net.fc)
    return prefix, suffix


def build_model(arch: str, num_classes: int) -> NormalizedModel:
    """Model factory keyed by the architecture names used in params.

    ``arch`` may name a fixed preprocessing after a ``+``: ``resnet18+lowpass``, ``resnet18+gray``.
    """
    base, plus, preprocess = arch.partition("+")
    if base not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}, "
                         f"optionally +{'|+'.join(PREPROCESSINGS[1:])}")
    if plus and preprocess not in PREPROCESSINGS[1:]:
        raise ValueError(f"architecture {arch!r}: unknown preprocessing {preprocess!r}; expected one of "
                         f"{list(PREPROCESSINGS[1:])}")
    model = ARCHITECTURES[base](num_classes)
    if plus:
        model.preprocess = build_preprocess(preprocess)
    return model
