"""Maximum-entropy random diffeomorphisms (Petrini et al. 2021; thesis eq. 5.4-5.5), batched.

Each image gets its own displacement field

    tau(r) = sum_{i^2 + j^2 <= c^2} beta_ij sin(pi i r1) sin(pi j r2),  beta_ij ~ N(0, T/(i^2+j^2)),

one independent field per displacement component, with r in [0, 1]^2 sampled on the pixel
grid (``linspace(0, 1, n)``) so the displacement is exactly zero on the image border. The
field is in units of the image side and scaled to pixels by the side (as the official code).
The cut ``c`` and temperature ``T`` are drawn per image between the bounds of Petrini et al.:
``T1 = 1/(pi n^2 ln c)`` (typical displacement of half a pixel) and ``T2 = 4/(pi^3 c^2 ln c)``
(largest T without overhangs), with ``T2`` raised to ``T1`` when smaller (official code).
Modes above the grid's Nyquist limit alias onto interior modes; their variances are folded
into those (exact in distribution on the pixel grid), so large cuts (500) cost no more than
the image side. Deviation: the mode set is ``i^2 + j^2 <= c^2`` as in the thesis; the official code uses
``sqrt(i^2 + j^2) < c + 0.5``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fillrobust.augment import _random


def temperature_range(side: int, cut: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds ``(T1, T2)`` of the temperature for image side ``side`` and per-image ``cut >= 2``."""
    c = cut.double()
    log = torch.log(c)
    t1 = 1.0 / (math.pi * side**2 * log)
    t2 = 4.0 / (math.pi**3 * c**2 * log)
    return t1, torch.maximum(t1, t2)


def sample_diffeo_params(
    n: int,
    side: int,
    cut_min: int,
    cut_max: int,
    concentration: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Per-image ``(cut, T)``: both from Beta(conc, conc) laws scaled to their ranges.

    ``cut = floor(B * (cut_max + 1 - cut_min) + cut_min)`` (discrete, as the official code),
    ``T = T1 + B' * (T2 - T1)``. ``concentration`` 0.5 is the official arcsine law, 1.0 the
    uniform law stated in thesis App. B.2. Returns int64 cuts and float64 temperatures.
    """
    u = _random.beta(concentration, concentration, n, generator, device).double()
    cut = torch.floor(u * (cut_max + 1 - cut_min) + cut_min).clamp(cut_min, cut_max).long()
    t1, t2 = temperature_range(side, cut)
    v = _random.beta(concentration, concentration, n, generator, device).double()
    return cut, t1 + v * (t2 - t1)


@lru_cache(maxsize=64)
def _sine_basis(length: int, modes: int, device: str) -> Tensor:
    """``sin(pi k r)`` for r on ``linspace(0, 1, length)``, k = 1..modes; border rows exactly 0."""
    r = torch.linspace(0.0, 1.0, length, dtype=torch.float64)
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    s = torch.sin(math.pi * r[:, None] * k[None, :])
    s[0] = 0.0
    s[-1] = 0.0
    return s.float().to(device)


def _alias(k: Tensor, length: int) -> Tensor:
    """Interior mode 1..length-2 that mode ``k`` equals (up to sign) on the grid; 0 if it vanishes."""
    period = 2 * (length - 1)
    r = k % period
    folded = torch.where(r < length - 1, r, period - r)
    return torch.where((r == 0) | (r == length - 1), torch.zeros_like(r), folded)


@lru_cache(maxsize=8)
def _mode_std_table(height: int, width: int, max_cut: int, device: str) -> Tensor:
    """Std per unit temperature of each grid mode, for every cut 2..max_cut: ``(cuts, mx, my)``.

    On an n-point grid a mode above n-2 coincides (up to sign) with an interior mode, so the
    independent Gaussian coefficients of all modes that alias together are summed exactly by
    adding their variances 1/(i^2 + j^2). The sample is thus exact on the pixel grid while
    the cost no longer grows with the cut.
    """
    mx, my = min(max_cut, width - 2), min(max_cut, height - 2)
    k = torch.arange(1, max_cut + 1, dtype=torch.int64)
    i, j = (t.flatten() for t in torch.meshgrid(k, k, indexing="ij"))
    r2 = i**2 + j**2
    keep = r2 <= max_cut**2
    i, j, r2 = i[keep], j[keep], r2[keep]
    ai, aj = _alias(i, width), _alias(j, height)
    ok = (ai > 0) & (aj > 0)
    first_cut = torch.ceil(torch.sqrt(r2[ok].double())).long().clamp(min=2) - 2
    table = torch.zeros(max_cut - 1, mx * my, dtype=torch.float64)
    flat = (ai[ok] - 1) * my + (aj[ok] - 1)
    table.index_put_((first_cut, flat), 1.0 / r2[ok].double(), accumulate=True)
    return table.cumsum(0).sqrt().view(max_cut - 1, mx, my).float().to(device)


def displacement_field(
    cut: Tensor,
    temperature: Tensor,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    max_cut: int | None = None,
) -> Tensor:
    """Per-image displacement ``(N, 2, H, W)`` in pixels (channel 0: x, channel 1: y).

    ``max_cut`` (default ``cut.max()``) only sets the size of the cached mode table; pass
    the configured maximum to reuse it across calls.
    """
    device, n = cut.device, cut.shape[0]
    max_cut = int(cut.max()) if max_cut is None else max_cut
    if n == 0 or min(height, width) < 3:
        return torch.zeros((n, 2, height, width), device=device)
    table = _mode_std_table(height, width, max_cut, str(device))
    std = table[cut - 2] * temperature.float().sqrt()[:, None, None]
    coeff = _random.randn((n, 2, *table.shape[1:]), generator, device) * std[:, None]
    sx = _sine_basis(width, table.shape[1], str(device))
    sy = _sine_basis(height, table.shape[2], str(device))
    field = torch.einsum("ncij,xi,yj->ncyx", coeff, sx, sy)
    scale = torch.tensor([width, height], device=device, dtype=field.dtype)
    return field * scale[None, :, None, None]


@lru_cache(maxsize=16)
def _base_grid(height: int, width: int, device: str) -> Tensor:
    """Pixel coordinates ``(H, W, 2)`` as (x, y)."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack((x, y), dim=-1).to(device)


def warp(x: Tensor, displacement: Tensor) -> Tensor:
    """Bilinear remap ``out(r) = x(r - tau(r))`` (official convention), clamped at borders."""
    _, _, h, w = x.shape
    pos = _base_grid(h, w, str(x.device))[None] - displacement.permute(0, 2, 3, 1)
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=x.device)
    grid = pos * scale - 1.0
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def random_diffeo(x: Tensor, cut: Tensor, temperature: Tensor, **field_options: Any) -> Tensor:
    """Apply one random diffeomorphism per image (given its cut and temperature); clip to [0, 1].

    ``field_options`` (``generator``, ``max_cut``) are :func:`displacement_field`'s.
    """
    field = displacement_field(cut, temperature, x.shape[2], width=x.shape[3], **field_options)
    return warp(x, field).clamp_(0.0, 1.0)
