"""SparseFool (Modas, Moosavi-Dezfooli, Frossard, CVPR 2019; thesis ch. 3), batched.

Algorithm 2 of the thesis: at each outer iteration, l2-DeepFool from the current iterate
``x_i`` gives the boundary point ``x_B = x_i + r_DF`` and the normal
``w = grad(f_adv - f_label)(x_B)``; the l1 box-constrained linear solver (Algorithm 1)
then moves ``x_i`` onto the hyperplane through ``x_i + lam * (x_B - x_i)`` (lam = 3 for
CIFAR-10, the thesis' setting) changing as few coordinates as possible; the reported
image is ``clip(x0 + (1 + overshoot) * (x_i - x0))``; stop once it is misclassified.

Batching: all images run together with an index set of active images. Algorithm 1's
one-coordinate-at-a-time greedy loop has a closed form that is computed for the whole
batch at once: sort coordinates by ``|w_d|``, each coordinate can reduce the hyperplane
residual by ``|w_d| * room_d`` (its distance to the box bound in the helpful direction),
move the leading coordinates to their bounds until the cumulative reduction reaches the
residual and move the next one part way. This is exactly the greedy result (minus the
reference code's 1e-4 minimum step); the direction of travel follows the sign of the
residual (the reference always moves along ``+sign(w)``, the same in the usual case).

Deviation: the inner DeepFool evaluates gradients at its overshot iterate (the original
DeepFool code) rather than the un-overshot one of the SparseFool repository's copy; the
boundary point and normal use the un-overshot ``x_i + r_DF`` as in the repository.

Sparsity is reported both as changed coordinates (C*H*W grid) and changed pixels (H*W
grid, a pixel counts when any channel changed); the thesis' "perturbation percentage"
is the share of changed pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .common import check_batch, check_positive, model_mode
from .deepfool import _check_deepfool_args, deepfool_core
from .norms import TINY, l0_norms, per_image_norm

#: Hyperplane overshoot of Algorithm 1 (beta in the reference code).
_BETA = 1e-3


@dataclass
class SparseFoolResult:
    """Output of :func:`sparsefool_details` (batch first)."""

    x_adv: torch.Tensor  #: adversarial images
    label: torch.Tensor  #: reference class
    adv_label: torch.Tensor  #: prediction at x_adv
    fooled: torch.Tensor  #: bool
    n_iter: torch.Tensor  #: outer iterations per image
    l0_pixels: torch.Tensor  #: changed pixels (any channel) per image
    l0_coords: torch.Tensor  #: changed coordinates per image


def linear_solver(
    x: torch.Tensor, w: torch.Tensor, p: torch.Tensor, lb: torch.Tensor, ub: torch.Tensor
) -> torch.Tensor:
    """Batched Algorithm 1: l1-sparse move of ``x`` onto the hyperplane ``w.(z - p) = 0``.

    Args:
        x: (N, ...) start points; w: (N, ...) normals; p: (N, ...) points on the planes;
        lb, ub: bounds broadcastable to x.

    Returns:
        (N, ...) points in [lb, ub] just across the plane (by the reference's beta), or as
        far as the box allows when the plane is out of reach.
    """
    n = x.shape[0]
    xf, wf = x.reshape(n, -1), w.reshape(n, -1)
    lo, hi = (
        torch.broadcast_to(lb, x.shape).reshape(n, -1),
        torch.broadcast_to(ub, x.shape).reshape(n, -1),
    )
    f = (wf * (xf - p.reshape(n, -1))).sum(dim=1)
    toward = torch.where(f > 0, -1.0, 1.0).to(x.dtype)  # increase w.z when f <= 0
    s = torch.sign(wf) * toward[:, None]
    room = torch.where(s > 0, hi - xf, xf - lo).clamp_min(0)
    cap = wf.abs() * room
    order = torch.argsort(wf.abs(), dim=1, descending=True, stable=True)
    cum = torch.cumsum(cap.gather(1, order), dim=1)
    need = f.abs() + _BETA
    m = (cum < need[:, None]).sum(dim=1, keepdim=True)  # number of coordinates moved fully
    pos = torch.arange(xf.shape[1], device=x.device)[None, :]
    prev = torch.where(m > 0, cum.gather(1, (m - 1).clamp_min(0)), torch.zeros_like(need[:, None]))
    w_m = wf.abs().gather(1, order).gather(1, m.clamp_max(xf.shape[1] - 1))
    partial = (need[:, None] - prev) / (w_m + TINY)
    room_s, s_s = room.gather(1, order), s.gather(1, order)
    step_s = torch.where(pos < m, room_s, torch.where(pos == m, partial.clamp_max(room_s), 0.0))
    step_s = torch.where(wf.abs().gather(1, order) > 0, step_s, 0.0)
    delta = torch.zeros_like(xf).scatter(1, order, step_s * s_s)
    return torch.minimum(torch.maximum(xf + delta, lo), hi).reshape(x.shape)


def _normal_at(
    model: torch.nn.Module, xb: torch.Tensor, label: torch.Tensor, adv: torch.Tensor
) -> torch.Tensor:
    """Unit normal ``grad(f_adv - f_label)`` at the boundary points ``xb``.

    Where DeepFool did not cross (adv == label) the strongest other class is used, so the
    normal is never the zero vector.
    """
    xb = xb.detach().requires_grad_(True)
    logits = model(xb)
    runner_up = logits.detach().scatter(1, label[:, None], float("-inf")).argmax(dim=1)
    adv = torch.where(adv == label, runner_up, adv)
    diff = logits.gather(1, adv[:, None]) - logits.gather(1, label[:, None])
    g = torch.autograd.grad(diff.sum(), xb)[0]
    return g / (per_image_norm(g, 2).view(-1, 1, 1, 1) + TINY)


def _bounds(x0: torch.Tensor, lo: float, hi: float,
            delta_max: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Box bounds, optionally tightened to ``x0 +- delta_max`` (thesis Sec. 3.3)."""
    if delta_max is None:
        return torch.tensor(lo, dtype=x0.dtype, device=x0.device), torch.tensor(
            hi, dtype=x0.dtype, device=x0.device
        )
    return torch.clamp(x0 - delta_max, lo, hi), torch.clamp(x0 + delta_max, lo, hi)


@dataclass(frozen=True)
class SparseFoolSettings:
    """Options of :func:`sparsefool_details` (defaults: reference code, thesis on CIFAR-10).

    Attributes:
        lam: lambda >= 1, how far past the DeepFool boundary point the plane is put
            (thesis: 1 on MNIST, 3 on CIFAR-10 and ImageNet).
        max_iter: maximum outer iterations (reference code: 20).
        overshoot: final ``(1 + overshoot)`` scaling of the perturbation (reference: 0.02).
        df_max_iter, top_k: inner DeepFool's iterations and candidate classes.
        clip_min, clip_max: box constraints [l, u] of the pixel values.
        delta_max: optional perceptibility bound, ``x0 +- delta_max`` intersected with the box.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"``; modes are restored.
    """

    lam: float = 3.0
    max_iter: int = 20
    overshoot: float = 0.02
    df_max_iter: int = 50
    top_k: int = 10
    clip_min: float = 0.0
    clip_max: float = 1.0
    delta_max: float | None = None
    bn_mode: str = "eval"

    def check(self) -> None:
        """Raise ValueError naming the first option out of range."""
        if self.lam < 1:
            raise ValueError(f"lam: expected >= 1 (thesis Sec. 3.2.3); got {self.lam!r}")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter: expected an integer >= 1; got {self.max_iter!r}")
        _check_deepfool_args(self.top_k, self.overshoot, self.df_max_iter)
        if self.delta_max is not None:
            check_positive("delta_max", self.delta_max)


def sparsefool_details(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, **options: Any
) -> SparseFoolResult:
    """SparseFool with per-image diagnostics (l0 in pixels and coordinates, iterations).

    Args:
        model: classifier on [0, 1] images returning logits.
        x: (N, C, H, W) images.
        y: (N,) reference labels; ``None``: the clean predictions (reference code).
        options: the fields of :class:`SparseFoolSettings` (``lam``, ``max_iter``, ...).
    """
    check_batch(x, y)
    settings = SparseFoolSettings(**options)
    settings.check()
    x0 = x.detach()
    with model_mode(model, settings.bn_mode), torch.enable_grad():
        bounds = _bounds(x0, settings.clip_min, settings.clip_max, settings.delta_max)
        return _sparsefool_loop(model, x0, y, settings, bounds)


def _sparsefool_loop(model: torch.nn.Module, x0: torch.Tensor, y: torch.Tensor | None,
                     settings: SparseFoolSettings,
                     bounds: tuple[torch.Tensor, torch.Tensor]) -> SparseFoolResult:
    """Outer SparseFool iterations over the active images; the model mode is already set."""
    lam, overshoot = settings.lam, settings.overshoot
    df_options = {"top_k": int(settings.top_k), "overshoot": overshoot, "max_iter": int(settings.df_max_iter)}
    lb, ub = bounds
    with torch.no_grad():
        pred = model(x0).argmax(dim=1)
    label = pred if y is None else y.detach()
    x_i, fool = x0.clone(), x0.clone()
    n_iter = torch.zeros_like(label)
    active = (pred == label).nonzero().squeeze(1)
    for _ in range(int(settings.max_iter)):
        if active.numel() == 0:
            break
        xa, la = x_i[active], label[active]
        df = deepfool_core(model, xa, la, box=None, **df_options)
        normal = _normal_at(model, xa + df.r_tot, la, df.adv_label)
        lb_a = lb if lb.dim() == 0 else lb[active]
        ub_a = ub if ub.dim() == 0 else ub[active]
        x_new = linear_solver(xa, normal, xa + lam * df.r_tot, lb_a, ub_a)
        fool_a = x0[active] + (1 + overshoot) * (x_new - x0[active])
        fool_a = torch.minimum(torch.maximum(fool_a, lb_a), ub_a)
        with torch.no_grad():
            pred_a = model(fool_a).argmax(dim=1)
        x_i[active], fool[active] = x_new, fool_a
        n_iter[active] += 1
        pred[active] = pred_a
        active = active[pred_a == la]
    return SparseFoolResult(
        fool,
        label,
        pred,
        fooled=pred != label,
        n_iter=n_iter,
        l0_pixels=l0_norms(fool, x0, "pixel"),
        l0_coords=l0_norms(fool, x0, "coordinate"),
    )


def sparsefool(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, **kwargs
) -> torch.Tensor:
    """SparseFool adversarial images; keyword arguments as :func:`sparsefool_details`."""
    return sparsefool_details(model, x, y, **kwargs).x_adv
