"""Fast gradient sign method (Goodfellow et al. 2015), l_inf, optionally targeted, and the
sign-gradient loop that FGSM and MI-FGSM (``mifgsm.py``) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .common import ce_loss, check_batch, check_positive, input_grad, model_mode
from .norms import LinfStep


def sign_gradient_steps(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    step_size: float,
    steps: int,
    direction: Callable[[torch.Tensor], torch.Tensor] | None = None,
    targeted: bool = False,
    bn_mode: str = "eval",
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> torch.Tensor:
    """``steps`` times ``x <- proj(x + step_size * sign(direction(grad)))`` from the clean ``x``.

    The inputs are checked by the callers. ``direction`` (default: the gradient itself) is
    called once per step, in order, so it may carry state (MI-FGSM's momentum). ``targeted``,
    ``bn_mode``, ``clip_min`` and ``clip_max`` are as in :func:`fgsm`.
    """
    x = x.detach()
    step = LinfStep(x, eps, step_size, clip_min, clip_max)
    x_adv = x.clone()
    with model_mode(model, bn_mode), torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            g = input_grad(ce_loss(model(x_adv), y, targeted), x_adv)
            x_adv = step.project(step.step(x_adv.detach(), g if direction is None else direction(g)))
    return x_adv


def fgsm(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **options: Any
) -> torch.Tensor:
    """One signed-gradient step of size ``eps``: ``clip(x + eps * sign(grad))``.

    Args:
        model: classifier on [0, 1] images returning logits.
        x: (N, C, H, W) clean images.
        y: (N,) true labels, or targets with ``targeted=True`` (then the step descends the
            target's cross-entropy, as in M-TLAT's targeted FGSM).
        eps: l_inf step size / radius (>= 0).
        options: keywords of :func:`sign_gradient_steps`: ``targeted`` (default False),
            ``bn_mode`` (``"eval"``, ``"train"`` or ``"keep"``; the model's modes are
            restored), ``clip_min``, ``clip_max`` (image box, default [0, 1]).

    Returns:
        (N, C, H, W) adversarial images, detached.
    """
    check_batch(x, y)
    check_positive("eps", eps, allow_zero=True)
    return sign_gradient_steps(model, x, y, eps, step_size=eps, steps=1, **options)
