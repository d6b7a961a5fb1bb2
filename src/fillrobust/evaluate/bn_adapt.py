"""Test-time BatchNorm adaptation (thesis 5.3.3, eq. 5.7; Schneider et al. 2020).

Every BatchNorm layer normalises with a mix of its source statistics z_s
(running mean and variance) and the statistics z_t of the current test batch
of n images: z_hat = N / (N + n) * z_s + n / (N + n) * z_t. The thesis'
settings are single (n = 1, N = 16), partial (n = 8, N = 16) and full
(n = 400, N = 0: pure test-batch statistics). The mix is applied layer by
layer in one forward pass, so deeper layers see inputs already normalised
with adapted statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

MODES = {"none": None, "single": (1, 16), "partial": (8, 16), "full": (400, 0)}


def resolve(params: dict[str, Any] | None) -> tuple[int, int] | None:
    """``{mode, n, N}`` -> (n, N), or None for no adaptation; n/N override the mode's."""
    params = params or {"mode": "none"}
    mode = params.get("mode", "none")
    if mode not in MODES:
        raise ValueError(f"evaluate.bn_adaptation.mode: {mode!r} is not one of {list(MODES)}")
    if MODES[mode] is None:
        return None
    n, prior = MODES[mode]
    n = params.get("n") or n
    prior = params.get("N") if params.get("N") is not None else prior
    if n < 1 or prior < 0:
        raise ValueError(f"evaluate.bn_adaptation: need n >= 1 and N >= 0; got n={n}, N={prior}")
    return int(n), int(prior)


def _mixed_forward(bn: nn.modules.batchnorm._BatchNorm, weight: float):
    def forward(x: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        mixed_mean = weight * bn.running_mean + (1 - weight) * mean
        mixed_var = weight * bn.running_var + (1 - weight) * var
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = (x - mixed_mean.view(shape)) / torch.sqrt(mixed_var.view(shape) + bn.eps)
        if bn.affine:
            out = out * bn.weight.view(shape) + bn.bias.view(shape)
        return out

    return forward


@contextmanager
def adapted(model: nn.Module, n: int, prior: int) -> Iterator[nn.Module]:
    """Within the block, every BatchNorm of ``model`` uses eq. 5.7 with batch size ``n``.

    The caller feeds batches of ``n`` images; the running statistics are not
    changed, and the original forwards are restored on exit.
    """
    weight = prior / (prior + n)
    patched = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in patched:
        bn.forward = _mixed_forward(bn, weight)
    try:
        yield model
    finally:
        for bn in patched:
            del bn.forward  # back to the class's forward
