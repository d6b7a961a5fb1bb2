"""AugMix baseline (Hendrycks et al. 2020) via ``torchvision.transforms.v2.AugMix``.

AugMix is a per-image PIL-style operation: images are quantised to uint8 and augmented one
at a time (a Python loop, accepted for this baseline). torchvision draws from the global
RNG, so each call seeds a forked RNG from the caller's generator: same generator state,
same bytes. ``all_ops`` defaults to False as in the original AugMix (which leaves out
brightness, colour, contrast and sharpness because they overlap with the -C corruptions);
torchvision's default is True.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

# The params and their checks live in fillrobust.augment.params (no torch), re-exported here.
from fillrobust.augment.params import AUGMIX_DEFAULTS, resolve_augmix_params  # noqa: F401


class AugMix:
    """Per-image AugMix; call as ``augmix(x, generator)`` with float ``(N, 3, H, W)`` in [0, 1]."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = resolve_augmix_params(params)
        self.params = p
        self.op = v2.AugMix(
            severity=p["severity"],
            mixture_width=p["width"],
            chain_depth=p["depth"],
            alpha=p["alpha"],
            all_ops=p["all_ops"],
        )

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        seed = int(
            torch.randint(
                0,
                2**62,
                (1,),
                generator=generator,
                device="cpu" if generator is None else generator.device,
            )
        )
        x8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = torch.stack([self.op(img) for img in x8])
        return out.to(device=x.device, dtype=x.dtype) / 255.0
