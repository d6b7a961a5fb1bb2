"""Momentum iterative FGSM (Dong et al., CVPR 2018), l_inf.

M-TLAT uses it as a black-box (transfer) attack: adversarial images are crafted on a
surrogate (a VGG trained on the same data) and then evaluated on the target model; the
caller passes the surrogate as ``model`` here.
"""

from __future__ import annotations

import torch

from .common import ce_loss, check_batch, check_positive, model_mode
from .norms import TINY, LinfStep


def mifgsm(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    decay: float = 1.0,
    step_size: float | None = None,
    targeted: bool = False,
    bn_mode: str = "eval",
    clip_min: float = 0.0,
    clip_max: float = 1.0,
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
        targeted: descend the loss of ``y``.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"``; modes are restored.
        clip_min, clip_max: image box.

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
    x = x.detach()
    step = LinfStep(x, eps, alpha, clip_min, clip_max)
    momentum = torch.zeros_like(x)
    x_adv = x.clone()
    with model_mode(model, bn_mode), torch.enable_grad():
        for _ in range(int(steps)):
            x_adv.requires_grad_(True)
            g = torch.autograd.grad(ce_loss(model(x_adv), y, targeted), x_adv)[0]
            g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + TINY)
            momentum = decay * momentum + g
            x_adv = step.project(step.step(x_adv.detach(), momentum))
    return x_adv
