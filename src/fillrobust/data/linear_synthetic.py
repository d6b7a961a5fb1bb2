"""Synthetic datasets T1 and T2 of thesis 4.2.2 and 4.4.1.

Both draw ``x = U z`` with ``U`` a random rotation of R^D (Haar, det +1, seeded)
and labels ``y`` uniform in {-1, +1}:

- T1(eps, sigma): ``z = eps*y (+) N(0, sigma^2 I_{D-1})``: one discriminative
  direction ``u1`` and D-1 noise directions;
- T2(rho, eps, sigma, K): ``z = eps*y (+) x2 (+) N(0, sigma^2 I_{D-2})`` with
  ``x2 = rho*k`` (y = +1) or ``rho*(k + 1/2)`` (y = -1), ``k`` uniform in
  {-K, ..., K-1}: linearly separable along ``u1`` and separable by an
  alternating pattern along ``u2``.

``u_i`` is the i-th *column* of ``U`` (``U z = sum_i z_i u_i``); the thesis says
"first row", which is the same direction only for the transpose convention.
Test sets must reuse the training ``basis``.

``signal_scale`` multiplies the u1 feature: ``x1 = signal_scale * eps * y``. The
thesis writes ``x1 = eps * y`` (default 1.0), but its Tables 4.1 / A.1 report a
median u1 margin of eps/2 (2.49-2.50 for eps = 5, "median margin eps/2"), which
implies classes at +-eps/2, i.e. ``signal_scale = 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fillrobust.evaluate.margins import random_orthonormal


@dataclass
class SyntheticData:
    """Samples ``x`` [N, D] float32, labels ``y`` [N] in {-1, +1} (int64), basis ``U`` [D, D]."""

    x: torch.Tensor
    y: torch.Tensor
    basis: torch.Tensor

    @property
    def targets(self) -> torch.Tensor:
        """Class indices {0, 1} for cross-entropy (y = -1 -> 0, y = +1 -> 1)."""
        return (self.y > 0).long()


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    """Haar-random matrix of SO(dim) (float32) from ``seed``."""
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    q = random_orthonormal(dim, torch.Generator().manual_seed(seed))
    if torch.linalg.det(q.double()) < 0:
        q[:, -1] = -q[:, -1]  # reflect one column: Haar on O(D) -> Haar on SO(D)
    return q


def _check(n: int, dim: int, min_dim: int, **nonneg: float) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if dim < min_dim:
        raise ValueError(f"dim must be >= {min_dim}, got {dim}")
    bad = {k: v for k, v in nonneg.items() if v < 0}
    if bad:
        raise ValueError(f"parameters must be >= 0, got {bad}")


def _labels(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen) * 2 - 1


def make_t1(
    n: int, eps: float, sigma: float, dim: int = 100, seed: int = 0,
    basis: torch.Tensor | None = None, signal_scale: float = 1.0,
) -> SyntheticData:
    """Draw n samples of T1(eps, sigma) in R^dim; ``basis`` None -> random_rotation(dim, seed)."""
    _check(n, dim, 2, eps=eps, sigma=sigma)
    basis = random_rotation(dim, seed) if basis is None else basis
    gen = torch.Generator().manual_seed(seed + 1)  # independent of the basis stream
    y = _labels(n, gen)
    z = torch.cat([signal_scale * eps * y[:, None].float(), sigma * torch.randn(n, dim - 1, generator=gen)], 1)
    return SyntheticData(x=z @ basis.T, y=y, basis=basis)


def make_t2(
    n: int, rho: float, eps: float, sigma: float, K: int, dim: int = 100,  # noqa: N803
    seed: int = 0, basis: torch.Tensor | None = None, signal_scale: float = 1.0,
) -> SyntheticData:
    """Draw n samples of T2(rho, eps, sigma, K) in R^dim (thesis 4.4.1)."""
    _check(n, dim, 3, rho=rho, eps=eps, sigma=sigma)
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    basis = random_rotation(dim, seed) if basis is None else basis
    gen = torch.Generator().manual_seed(seed + 1)
    y = _labels(n, gen)
    k = torch.randint(-K, K, (n,), generator=gen).float()
    x2 = rho * (k + 0.5 * (y < 0).float())
    noise = sigma * torch.randn(n, dim - 2, generator=gen)
    z = torch.cat([signal_scale * eps * y[:, None].float(), x2[:, None], noise], 1)
    return SyntheticData(x=z @ basis.T, y=y, basis=basis)
