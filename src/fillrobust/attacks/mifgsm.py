"""Momentum iterative FGSM (Dong et al., CVPR 2018), l_inf.

M-TLAT uses it as a black-box (transfer) attack: adversarial images are crafted on a
surrogate (a VGG trained on the same data) and then evaluated on the target model; the
caller passes the surrogate as ``model`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .common import check_batch, check_positive
from .fgsm import sign_gradient_steps
from .norms import TINY


def mifgsm(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    decay: float = 1.0,
    step_size: float | None = None,
    **options: Any,
) -> torch.Tensor:
    """MI-FGSM: ``g <- decay * g + grad / ||grad||_1``; ``x <- proj(x + alpha * sign(g))``.

    Args:
        model: (surrogate) classifier on [0, 1] images returning logits.
        x: (N, C, H, W) clean images.
        y: (N,) labels (targets if ``targeted``).
        eps: l_inf radius (M-TLAT: 0.04 and 0.08).
        steps: iterations T (M-TLAT: 10).
        decay: momentum factor mu (paper: 1.0).
        step_size: alpha; ``None`` uses the paper's ``eps / steps``.
        options: ``targeted`` (descend the loss of ``y``), ``bn_mode`` and the image box
            ``clip_min``, ``clip_max``, as in :func:`fillrobust.attacks.fgsm.fgsm`.

    Returns:
        (N, C, H, W) adversarial images, detached.

    The l1 normalisation uses the per-image mean absolute gradient (l1 / D), as torchattacks;
    the constant factor D does not change any sign.
    """
    check_batch(x, y)
    check_positive("eps", eps, allow_zero=True)
    if int(steps) < 1:
        raise ValueError(f"steps: expected an integer >= 1; got {steps!r}")
    check_positive("decay", decay, allow_zero=True)
    alpha = eps / steps if step_size is None else float(step_size)
    return sign_gradient_steps(model, x, y, eps, step_size=alpha, steps=int(steps),
                               direction=_momentum(torch.zeros_like(x.detach()), decay), **options)


def _momentum(momentum: torch.Tensor, decay: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """MI-FGSM's direction: ``momentum <- decay * momentum + g / mean|g|`` per call, returned."""

    def direction(g: torch.Tensor) -> torch.Tensor:
        nonlocal momentum
        g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + TINY)
        momentum = decay * momentum + g
        return momentum

    return direction
