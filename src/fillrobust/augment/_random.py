"""Seeded random draws shared by the augmentations.

All draws go through an explicit ``torch.Generator`` (or the global RNG when it is ``None``)
on the generator's own device and are then moved to the data device, so a CPU generator
gives the same numbers whatever device the images live on.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import betaincinv
from torch import Tensor


def draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Device on which random numbers are drawn: the generator's, else ``device``."""
    return generator.device if generator is not None else device


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) float32 draws of ``shape`` placed on ``device``."""
    dev = draw_device(generator, device)
    return torch.rand(shape, generator=generator, device=dev).to(device)


def randn(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """N(0, 1) float32 draws of ``shape`` placed on ``device``."""
    dev = draw_device(generator, device)
    return torch.randn(shape, generator=generator, device=dev).to(device)


def randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform integers in ``[0, high)`` of ``shape`` placed on ``device``."""
    dev = draw_device(generator, device)
    return torch.randint(0, high, shape, generator=generator, device=dev).to(device)


def beta(
    a: float, b: float, n: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``n`` float32 draws from Beta(a, b) by inverse CDF of seeded uniforms.

    torch.distributions cannot take a generator; the inverse regularised incomplete beta
    (scipy, float64 on CPU) keeps the draw reproducible from ``generator``.
    """
    u = rand((n,), generator, torch.device("cpu")).double().numpy()
    return torch.from_numpy(np.asarray(betaincinv(a, b, u), dtype=np.float32)).to(device)


def dirichlet_ones(
    n: int, k: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``n`` draws of Dirichlet(1, ..., 1) over ``k`` components: normalised Exp(1) variables."""
    dev = draw_device(generator, device)
    e = torch.empty((n, k), device=dev).exponential_(generator=generator).to(device)
    return e / e.sum(dim=1, keepdim=True)
