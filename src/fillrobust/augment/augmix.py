"""AugMix baseline (Hendrycks et al. 2020) via ``torchvision.transforms.v2.AugMix``.

AugMix is a per-image PIL-style operation: images are quantised to uint8 and augmented one
at a time (a Python loop, accepted for this baseline). torchvision draws from the global
RNG, so each call seeds a forked RNG from the caller's generator: same generator state,
same bytes. ``all_ops`` defaults to False as in the original AugMix (which leaves out
brightness, colour, contrast and sharpness because they overlap with the -C corruptions);
torchvision's default is True.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

AUGMIX_DEFAULTS: dict[str, Any] = {
    "severity": 3,
    "width": 3,
    "depth": -1,
    "alpha": 1.0,
    "all_ops": False,
}


def resolve_augmix_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge over :data:`AUGMIX_DEFAULTS` and validate; ValueError names the bad key."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(AUGMIX_DEFAULTS))
    if unknown:
        raise ValueError(
            f"augmix params: unknown key(s) {unknown}; valid keys: {list(AUGMIX_DEFAULTS)}"
        )
    p = {**AUGMIX_DEFAULTS, **params}
    checks = {
        "severity": (lambda v: _is_int(v) and 1 <= v <= 10, "an integer in [1, 10]"),
        "width": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "depth": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (random 1..3) or >= 1"),
        "alpha": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
        "all_ops": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (ok, expected) in checks.items():
        if not ok(p[key]):
            raise ValueError(f"augmix param '{key}': expected {expected}, got {p[key]!r}")
    return p


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


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
