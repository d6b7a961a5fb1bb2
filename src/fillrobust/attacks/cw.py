"""Carlini-Wagner l2 attack (fixed c, no binary search), batched, Adam in tanh space.

Like torchattacks.CW: minimise ``||x' - x||_2^2 + c * f(x')`` over ``w`` with
``x' = (tanh(w) + 1) / 2``, ``f = max(Z_y - max_{i != y} Z_i, -kappa)`` (untargeted), and
return per image the successful iterate of smallest l2 (the clean image if none).
M-TLAT evaluates it with 40 iterations and confidence kappa = 50.

Success is Carlini and Wagner's (``compare`` in their ``l2_attack.py``): the logit
margin must reach the confidence, ``max_{i != y} Z_i - Z_y >= kappa`` (untargeted;
``Z_y - max_{i != y} Z_i >= kappa`` targeted), and be positive, so kappa = 0 is plain
misclassification. torchattacks counts any misclassified iterate as a success whatever
kappa is; the two agree only at kappa = 0.

Deviations from torchattacks, both to keep images independent of their batch mates:
Adam is written out per image, and early abort is decided per image (an image stops when
its own cost rose since the last check, every ``max(steps // 10, 1)`` steps) instead of
stopping the whole batch on the summed cost. The "other" logit is the true maximum over
the other classes (torchattacks multiplies by a one-hot mask, which reads 0 for the
label when every other logit is negative).
"""

from __future__ import annotations

import torch

from .common import check_batch, check_positive, model_mode
from .norms import per_image_norm

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_ATANH_GUARD = 1e-6


def _adversarial_margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """How far each image is on the attacker's side: ``max_{i!=y} Z_i - Z_y`` (flipped if targeted)."""
    real = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return real - other if targeted else other - real


def _margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float, targeted: bool):
    """CW's f: ``max(Z_y - max_{i!=y} Z_i, -kappa)`` (sign flipped when targeted)."""
    return torch.clamp(-_adversarial_margin(logits, y, targeted), min=-kappa)


def cw_success(logits: torch.Tensor, y: torch.Tensor, kappa: float, targeted: bool = False) -> torch.Tensor:
    """Carlini-Wagner success: the adversarial logit margin is positive and reaches ``kappa``."""
    margin = _adversarial_margin(logits, y, targeted)
    return (margin >= kappa) & (margin > 0)


class _Adam:
    """Element-wise Adam (torch.optim.Adam's update) on a subset of rows of ``w``."""

    def __init__(self, w: torch.Tensor, lr: float) -> None:
        self.m = torch.zeros_like(w)
        self.v = torch.zeros_like(w)
        self.lr = lr
        self.t = 0

    def step(self, w: torch.Tensor, g: torch.Tensor, rows: torch.Tensor) -> None:
        """Update ``w[rows]`` in place with gradient ``g`` (already restricted to ``rows``)."""
        self.t += 1
        b1, b2 = _BETAS
        m = self.m[rows].mul_(b1).add_(g, alpha=1 - b1)
        v = self.v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
        self.m[rows], self.v[rows] = m, v
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        denom = v.sqrt() / bc2**0.5 + _ADAM_EPS
        w[rows] = w[rows] - (self.lr / bc1) * m / denom


def cw_l2(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    c: float = 1.0,
    kappa: float = 50.0,
    steps: int = 40,
    lr: float = 0.01,
    targeted: bool = False,
    abort_early: bool = True,
    bn_mode: str = "eval",
) -> torch.Tensor:
    """Carlini-Wagner l2 with a fixed trade-off constant ``c``.

    Args:
        model: classifier on [0, 1] images returning logits.
        x: (N, C, H, W) clean images in [0, 1] (the tanh box is [0, 1]).
        y: (N,) labels (targets if ``targeted``).
        c: weight of the classification term (torchattacks default 1; M-TLAT is silent).
        kappa: confidence margin (M-TLAT: 50).
        steps: Adam iterations (M-TLAT: 40).
        lr: Adam learning rate (torchattacks default 0.01).
        targeted: push towards ``y`` instead of away from it.
        abort_early: stop an image once its cost increases between checks.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"``; modes are restored.

    Returns:
        (N, C, H, W) adversarial images: per image the successful iterate (logit
        margin >= ``kappa``, :func:`cw_success`) with the smallest l2 distance, or
        the clean image where no iterate succeeded.
    """
    check_batch(x, y)
    check_positive("c", c, allow_zero=True)
    check_positive("kappa", kappa, allow_zero=True)
    check_positive("lr", lr)
    if int(steps) < 1:
        raise ValueError(f"steps: expected an integer >= 1; got {steps!r}")
    x, y = x.detach(), y.detach()
    n = x.shape[0]
    w = torch.atanh(torch.clamp(2 * x - 1, -1 + _ATANH_GUARD, 1 - _ATANH_GUARD))
    adam = _Adam(w, lr)
    best = x.clone()
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    prev_cost = torch.full((n,), float("inf"), device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    check_every = max(int(steps) // 10, 1)
    with model_mode(model, bn_mode), torch.enable_grad():
        for it in range(int(steps)):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            wa = w[rows].requires_grad_(True)
            xa = (torch.tanh(wa) + 1) / 2
            l2sq = per_image_norm(xa - x[rows], 2) ** 2
            logits = model(xa)
            cost = l2sq + c * _margin_loss(logits, y[rows], kappa, targeted)
            g = torch.autograd.grad(cost.sum(), wa)[0]
            adam.step(w, g, rows)
            success = cw_success(logits.detach(), y[rows], kappa, targeted)
            _update_best(best, best_l2, rows, xa=xa.detach(), l2sq=l2sq.detach(), success=success)
            if abort_early and it % check_every == 0:
                cost = cost.detach()
                active[rows[cost > prev_cost[rows]]] = False
                prev_cost[rows] = cost
    return best


def _update_best(
    best: torch.Tensor,
    best_l2: torch.Tensor,
    rows: torch.Tensor,
    xa: torch.Tensor,
    l2sq: torch.Tensor,
    success: torch.Tensor,
) -> None:
    """Record, in place, successful iterates that are closer than the best so far."""
    better = success & (l2sq < best_l2[rows])
    sel = rows[better]
    best[sel] = xa[better]
    best_l2[sel] = l2sq[better]
