"""Fast gradient sign method (Goodfellow et al. 2015), l_inf, optionally targeted."""

from __future__ import annotations

import torch

from .common import ce_loss, check_batch, check_positive, input_grad, model_mode
from .norms import LinfStep


def fgsm(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    targeted: bool = False,
    bn_mode: str = "eval",
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> torch.Tensor:
    """One signed-gradient step of size ``eps``: ``clip(x + eps * sign(grad))``.

    Args:
        model: classifier on [0, 1] images returning logits.
        x: (N, C, H, W) clean images.
        y: (N,) true labels, or targets with ``targeted=True`` (then the step descends the
            target's cross-entropy, as in M-TLAT's targeted FGSM).
        eps: l_inf step size / radius (>= 0).
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"``; the model's modes are restored.
        clip_min, clip_max: image box.

    Returns:
        (N, C, H, W) adversarial images, detached.
    """
    check_batch(x, y)
    check_positive("eps", eps, allow_zero=True)
    x = x.detach()
    step = LinfStep(x, eps, eps, clip_min, clip_max)
    with model_mode(model, bn_mode), torch.enable_grad():
        x_req = x.clone().requires_grad_(True)
        g = input_grad(ce_loss(model(x_req), y, targeted), x_req)
    return step.project(step.step(x, g))
