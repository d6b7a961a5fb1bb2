"""Augmentations keyed by the names used in params: ``none``, ``prime``, ``augmix``, ``gray``.

``build_augmentation(name, params, image_size)`` returns a callable
``aug(x, generator) -> Tensor`` on float ``(N, 3, H, W)`` images in ``[0, 1]`` (same shape,
same device, values in ``[0, 1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from fillrobust.augment import _random
from fillrobust.augment.augmix import AugMix
from fillrobust.augment.params import (
    resolve_augment_params,
    resolve_gray_params,
    resolve_none_params,
)
from fillrobust.augment.prime import PRIME, check_images

Augmentation = Callable[[Tensor, "torch.Generator | None"], Tensor]

#: ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


class Identity:
    """No augmentation (``none``)."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images(x)
        return x


class Gray:
    """Grayscale with 3 equal channels (thesis Tab. 5.1 "Gray"), applied with probability ``p``."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.p = resolve_gray_params(params)["p"]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images(x)
        if x.shape[1] != 3:
            raise ValueError(f"gray: expected 3 channels (RGB), got {x.shape[1]}")
        luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)
        gray = torch.einsum("nchw,c->nhw", x, luma)[:, None].expand_as(x)
        if self.p >= 1.0:
            return gray.contiguous()
        pick = _random.rand((x.shape[0],), generator, x.device) < self.p
        return torch.where(pick[:, None, None, None], gray, x)


def _identity(params: Mapping[str, Any] | None) -> Identity:
    resolve_none_params(params)
    return Identity()


_FACTORIES: dict[str, Callable[[Mapping[str, Any] | None], Augmentation]] = {
    "none": _identity,
    "prime": PRIME,
    "augmix": AugMix,
    "gray": Gray,
}

AUGMENTATIONS: tuple[str, ...] = tuple(_FACTORIES)


def _check_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"image_size: expected a positive int or (H, W), got {image_size!r}")
    return size  # type: ignore[return-value]


def build_augmentation(
    name: str, params: Mapping[str, Any] | None = None, image_size: int | tuple[int, int] = 32
) -> Augmentation:
    """Build the augmentation ``name`` from its ``params`` dict (None = defaults).

    ``image_size`` is validated (positive int or (H, W)); the augmentations themselves
    adapt to the size of each batch. Raises ValueError listing valid names or keys.
    """
    resolve_augment_params(name, params)  # the checks config.validate runs before any job
    _check_size(image_size)
    return _FACTORIES[name](params)
