"""Classifiers that take images in [0, 1]: normalisation lives in the model.

Keeping the normaliser inside the model lets attacks and augmentations work
in pixel space ([0, 1] box, eps in pixel units) as in the papers.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

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
    """``net(normalize(x))``: a classifier over images in [0, 1]."""

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def resnet18(num_classes: int) -> NormalizedModel:
    """torchvision ResNet-18 (ImageNet architecture) with a ``num_classes`` head."""
    return NormalizedModel(torchvision.models.resnet18(weights=None, num_classes=num_classes))


ARCHITECTURES = {"resnet18": resnet18}


def build_model(arch: str, num_classes: int) -> NormalizedModel:
    """Model factory keyed by the architecture names used in params."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes)
