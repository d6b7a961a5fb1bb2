"""Projected gradient descent (Madry et al. 2018) in l_inf and l2, plus PGD_LL.

Structure follows MadryLab/robustness: a step object (``norms.LinfStep`` /
``norms.L2Step``) provides ``random_perturb``, ``step`` and ``project``; the loop here
only computes input gradients. Gradients are taken with ``torch.autograd.grad`` w.r.t.
the input alone, so no parameter ``.grad`` is written and the function can run inside a
training step (adversarial training) without disturbing the optimiser state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import check_batch, check_positive, least_likely, model_mode
from .norms import STEP_CLASSES, AttackerStep, check_norm

#: Default step-size rule: step = factor * eps / steps (the robustness-library convention).
DEFAULT_STEP_FACTOR = 2.5


def resolve_step_size(
    eps: float, steps: int, step_size: float | None, factor: float = DEFAULT_STEP_FACTOR
) -> float:
    """Explicit ``step_size`` if given, else ``factor * eps / steps``."""
    if step_size is not None:
        check_positive("step_size", step_size)
        return float(step_size)
    return factor * eps / steps


def _per_image_loss(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-image ascent objective: CE (untargeted) or -CE towards the target (targeted)."""
    loss = F.cross_entropy(logits, y, reduction="none")
    return -loss if targeted else loss


def _pgd_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    step: AttackerStep,
    steps: int,
    random_start: bool,
    generator: torch.Generator | None,
    targeted: bool,
    use_best: bool,
) -> torch.Tensor:
    """The PGD iterations; assumes the model is already in the wanted mode."""
    x_adv = step.random_perturb(x, generator) if random_start else x.clone()
    best, best_loss = x_adv.clone(), None
    for _ in range(steps):
        x_adv.requires_grad_(True)
        losses = _per_image_loss(model(x_adv), y, targeted)
        g = torch.autograd.grad(losses.sum(), x_adv)[0]
        x_adv = x_adv.detach()
        if use_best:
            best, best_loss = _keep_best(best, best_loss, x_adv, losses.detach())
        x_adv = step.project(step.step(x_adv, g))
    if use_best:
        with torch.no_grad():
            losses = _per_image_loss(model(x_adv), y, targeted)
        best, _ = _keep_best(best, best_loss, x_adv, losses)
        return best
    return x_adv


def _keep_best(
    best: torch.Tensor, best_loss: torch.Tensor | None, cand: torch.Tensor, loss: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, keep the iterate with the highest ascent objective so far."""
    if best_loss is None:
        return cand.clone(), loss
    better = loss > best_loss
    best = torch.where(better.view(-1, 1, 1, 1), cand, best)
    return best, torch.where(better, loss, best_loss)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    norm: str,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    targeted: bool = False,
    bn_mode: str = "eval",
    use_best: bool = False,
    step_factor: float = DEFAULT_STEP_FACTOR,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> torch.Tensor:
    """PGD attack within an l_inf or l2 ball of radius ``eps`` around ``x``, box-clipped.

    Args:
        model: classifier taking float images in [0, 1] (normalisation inside), returning logits.
        x: (N, C, H, W) clean images in [0, 1].
        y: (N,) labels to move away from, or targets to move towards (``targeted=True``).
        eps: radius of the threat ball (>= 0).
        steps: number of gradient steps (>= 1).
        norm: ``"linf"`` or ``"l2"``.
        step_size: explicit step length; ``None`` uses ``step_factor * eps / steps``
            (robustness-library convention 2.5 * eps / steps, so the walk can reach the
            boundary from the random start).
        random_start: start from a random point of the ball (uniform in l_inf; on the
            l2 sphere, as robustness does), drawn with ``generator``.
        generator: torch.Generator on x's device for the random start (None: global RNG).
        targeted: minimise the loss of ``y`` instead of maximising it.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"`` (see ``common.BN_MODES``); the
            model's per-module train/eval flags are restored afterwards.
        use_best: return per image the iterate with the highest loss (robustness'
            ``use_best``) instead of the last one (torchattacks' behaviour; the default).
        step_factor: factor of the default step-size rule.
        clip_min, clip_max: image box.

    Returns:
        (N, C, H, W) adversarial images, detached, with ``||x_adv - x|| <= eps`` and in the box.
    """
    check_norm(norm)
    check_batch(x, y)
    check_positive("eps", eps, allow_zero=True)
    if int(steps) < 1:
        raise ValueError(f"steps: expected an integer >= 1; got {steps!r}")
    alpha = resolve_step_size(eps, steps, step_size, step_factor)
    x = x.detach()
    step = STEP_CLASSES[norm](x, eps, alpha, clip_min, clip_max)
    with model_mode(model, bn_mode), torch.enable_grad():
        return _pgd_loop(
            model, x, y.detach(), step=step, steps=int(steps), random_start=random_start,
            generator=generator, targeted=targeted, use_best=use_best
        )


def pgd_ll(
    model: torch.nn.Module,
    x: torch.Tensor,
    eps: float,
    steps: int,
    norm: str = "linf",
    bn_mode: str = "eval",
    **kwargs,
) -> torch.Tensor:
    """PGD_LL: targeted PGD towards each image's least-likely class (Kurakin et al.).

    The target is the arg-min logit of the clean image under the same ``bn_mode``.
    Other keyword arguments are passed to :func:`pgd`.
    """
    check_batch(x, None)
    with model_mode(model, bn_mode):
        target = least_likely(model, x)
    return pgd(model, x, target, eps=eps, steps=steps, norm=norm, targeted=True, bn_mode=bn_mode, **kwargs)
