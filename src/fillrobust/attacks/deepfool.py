"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016): minimal l2 perturbation, batched.

Follows the authors' reference code (LTS4/DeepFool): the candidate classes are the
``top_k`` classes of the clean image (the reference label first), every iteration moves
towards the closest linearised boundary by ``r_i = (pert + 1e-4) * w / ||w||``, the
iterate is ``x0 + (1 + overshoot) * r_tot`` and the loop stops once its label changes.

All images advance together; an index set of still-active images replaces the
per-image Python loop. The candidate gradients are one backward pass per candidate over
the active batch (``torch.autograd.grad`` w.r.t. the input only, graph retained).

Options beyond the paper: ``clamp`` keeps the iterate in the image box (evaluation
default; the margin analysis switches it off) and ``grad_projection`` restricts the
gradients, hence the perturbation, to a linear subspace (subspace-constrained DeepFool
for margins, e.g. a DCT block: pass ``P`` with ``P(v)`` the orthogonal projection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .common import check_batch, check_positive, model_mode
from .norms import TINY, l2_norms, per_image_norm

#: Minimal step added to every DeepFool step (reference code), avoids stalling on the boundary.
_MIN_STEP = 1e-4


@dataclass
class DeepFoolResult:
    """Output of :func:`deepfool_details` (all tensors have the batch as first dim)."""

    x_adv: torch.Tensor  #: x0 + (1 + overshoot) r_tot, box-clamped if requested
    r_tot: torch.Tensor  #: accumulated perturbation before the overshoot factor
    label: torch.Tensor  #: reference class of each image (y, or the clean prediction)
    adv_label: torch.Tensor  #: prediction at x_adv
    n_iter: torch.Tensor  #: DeepFool steps taken per image
    fooled: torch.Tensor  #: bool, adv_label != label
    norms: torch.Tensor  #: per-image l2 norm of x_adv - x0


def _candidates(logits0: torch.Tensor, label: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) candidate classes: the reference label, then the k-1 highest other logits."""
    others = logits0.scatter(1, label[:, None], float("-inf")).topk(k - 1, dim=1).indices
    return torch.cat([label[:, None], others], dim=1)


def _closest_boundary(
    logits: torch.Tensor,
    xa: torch.Tensor,
    cand: torch.Tensor,
    grad_projection: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, distance to and normal of the closest linearised boundary among candidates.

    One backward per candidate over the whole batch: ``w_k = grad(f_k - f_0)`` (the sum over
    the batch separates per image because images do not interact in eval mode).
    """
    f = logits.gather(1, cand)
    k = cand.shape[1]
    best_pert = torch.full((xa.shape[0],), float("inf"), device=xa.device, dtype=xa.dtype)
    best_w = torch.zeros_like(xa)
    for j in range(1, k):
        diff = f[:, j] - f[:, 0]
        w = torch.autograd.grad(diff.sum(), xa, retain_graph=j < k - 1)[0]
        if grad_projection is not None:
            w = grad_projection(w)
        pert = diff.detach().abs() / (per_image_norm(w, 2) + TINY)
        better = pert < best_pert
        best_pert = torch.where(better, pert, best_pert)
        best_w = torch.where(better.view(-1, 1, 1, 1), w, best_w)
    return best_pert, best_w


def _place(x0: torch.Tensor, r: torch.Tensor, overshoot: float,
           box: tuple[float, float] | None) -> torch.Tensor:
    """The DeepFool iterate ``x0 + (1 + overshoot) r``, clamped to ``box`` if given."""
    x = x0 + (1 + overshoot) * r
    return x if box is None else torch.clamp(x, box[0], box[1])


def deepfool_core(
    model: torch.nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor | None,
    top_k: int,
    overshoot: float,
    max_iter: int,
    box: tuple[float, float] | None,
    grad_projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> DeepFoolResult:
    """Batched DeepFool iterations; the model's mode is left as the caller set it."""
    n = x0.shape[0]
    r_tot = torch.zeros_like(x0)
    x_cur = x0.clone()
    n_iter = torch.zeros(n, dtype=torch.long, device=x0.device)
    adv_label = torch.empty(n, dtype=torch.long, device=x0.device)
    active = torch.arange(n, device=x0.device)
    label = cand = None
    for it in range(max_iter + 1):
        xa = x_cur[active].requires_grad_(True)
        logits = model(xa)
        pred = logits.detach().argmax(dim=1)
        if it == 0:
            label = pred if y is None else y
            k = min(top_k, logits.shape[1])
            cand = _candidates(logits.detach(), label, k)
        adv_label[active] = pred
        still = pred == label[active]
        if it == max_iter or not bool(still.any()):
            break
        pert, w = _closest_boundary(logits, xa, cand[active], grad_projection)
        scale = (pert + _MIN_STEP) / (per_image_norm(w, 2) + TINY)
        rows = active[still]
        r_tot[rows] += (w * scale.view(-1, 1, 1, 1))[still]
        n_iter[rows] += 1
        x_cur[rows] = _place(x0[rows], r_tot[rows], overshoot, box)
        active = rows
    fooled = adv_label != label
    return DeepFoolResult(x_cur, r_tot, label, adv_label=adv_label, n_iter=n_iter, fooled=fooled,
                          norms=l2_norms(x_cur, x0))


def _check_deepfool_args(top_k: int, overshoot: float, max_iter: int) -> None:
    if int(top_k) < 2:
        raise ValueError(f"top_k: expected an integer >= 2; got {top_k!r}")
    check_positive("overshoot", overshoot, allow_zero=True)
    if int(max_iter) < 1:
        raise ValueError(f"max_iter: expected an integer >= 1; got {max_iter!r}")


def deepfool_details(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    top_k: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    clamp: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    bn_mode: str = "eval",
    grad_projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> DeepFoolResult:
    """DeepFool with per-image diagnostics; see :func:`deepfool` for the arguments.

    Returns:
        :class:`DeepFoolResult`; ``result.norms`` holds the per-image l2 norms.
    """
    check_batch(x, y)
    _check_deepfool_args(top_k, overshoot, max_iter)
    x0 = x.detach()
    box = (clip_min, clip_max) if clamp else None
    with model_mode(model, bn_mode), torch.enable_grad():
        res = deepfool_core(
            model,
            x0,
            None if y is None else y.detach(),
            top_k=int(top_k),
            overshoot=overshoot,
            max_iter=int(max_iter),
            box=box,
            grad_projection=grad_projection,
        )
    return res


def deepfool(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    **options: Any,
) -> torch.Tensor:
    """Batched l2 DeepFool; returns the adversarial images (use ``norms.l2_norms`` for sizes).

    Args (``options`` are :func:`deepfool_details`' keywords):
        model: classifier on [0, 1] images returning logits.
        x: (N, C, H, W) images.
        y: (N,) reference labels; ``None`` uses the clean predictions (the reference code).
            Images whose prediction already differs from ``y`` are returned unchanged.
        top_k: number of candidate classes incl. the reference (capped at the class count).
        overshoot: the final perturbation is ``(1 + overshoot) * r_tot``.
        max_iter: maximum DeepFool steps per image.
        clamp: clamp every iterate to [clip_min, clip_max] (off for margin analysis).
        clip_min, clip_max: image box.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"``; modes are restored.
        grad_projection: optional orthogonal projection applied to every gradient
            (subspace-constrained DeepFool).

    Returns:
        (N, C, H, W) adversarial images, detached.
    """
    return deepfool_details(model, x, y, **options).x_adv
