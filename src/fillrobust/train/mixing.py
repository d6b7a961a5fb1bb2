"""Mixup, targeted-labeling adversarial training and their kin as one batch step.

The strategies of M-TLAT (Laugros et al., ECCVW 2020; Algorithm 1) are
settings of one ``mixing`` block (keys in :mod:`fillrobust.train.mixing_spec`):

=========  =====  ==============  ===============  ============
strategy   alpha  attack          order            label
=========  =====  ==============  ===============  ============
MIXUP      0.4    none            --               --
TLAT       0      targeted_fgsm   --               targeted
M-TLAT     0.4    targeted_fgsm   mix_then_attack  targeted
IAT        0.4    fgsm            attack_then_mix  ground_truth
FGSM-AT    0      fgsm            --               ground_truth
TFGSM-AT   0      targeted_fgsm   --               ground_truth
LS-AT      0      targeted_fgsm   --               smoothing
=========  =====  ==============  ===============  ============

With an attack, each batch is split into a clean part and an adversarial part
(``adversarial_share``; Algorithm 1's (x1, x2) and (x3, x4)): each part is
mixed within itself (a random pairing, one lambda per part), the adversarial
part is attacked by one FGSM step of eps ~ U[0, eps_max] (one eps per batch,
a random target class per image for the targeted attack), and the loss is the
sum of the two parts' soft-label cross-entropies (loss_1 + loss_2). Both parts
go through one forward, so BatchNorm sees the whole batch. Cost: one extra
forward-backward over the adversarial part (half the batch), so a step costs
about 1.5 ST steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fillrobust.train.loop import StepFn
from fillrobust.train.mixing_spec import resolve_mixing


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) class indices -> (N, num_classes) float one-hot rows."""
    return F.one_hot(y, num_classes).to(torch.float32)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against probability rows ``target`` (N, classes)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def mix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): ``lam * a + (1 - lam) * a[perm]`` for the images and
    the soft labels alike, so every mixed image carries the lambda of its label."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def targeted_label(y: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """TLAT's label (1 - eps) * y + eps * y_target (rows of ``y`` and ``target`` sum to 1)."""
    return (1 - eps) * y + eps * target


def smoothed_label(y: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing with ``eps`` (Szegedy et al.): (1 - eps) * y + eps / N, rows sum to 1."""
    return (1 - eps) * y + eps / y.shape[1]


class Draws:
    """The step's random draws (lambda, eps, pairings, targets) from one seeded stream."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def lam(self, alpha: float) -> float:
        """lambda ~ Beta(alpha, alpha); 1 (no mixing) when alpha is 0."""
        return float(self.rng.beta(alpha, alpha)) if alpha > 0 else 1.0

    def eps(self, eps_max: float) -> float:
        """eps ~ U[0, eps_max], once per batch."""
        return float(self.rng.uniform(0.0, eps_max))

    def perm(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.rng.permutation(n)).to(device)

    def targets(self, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
        """A uniformly random target class per image (Algorithm 1: y_target ~ U[0, N])."""
        return torch.from_numpy(self.rng.integers(0, num_classes, n)).to(device)


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, targeted: bool,
          bn_mode: str) -> torch.Tensor:
    from fillrobust.attacks.fgsm import fgsm
    from fillrobust.device import full_precision

    with full_precision(x):  # under a bf16 / fp16 training step the attack stays in fp32
        return fgsm(model, x, y, eps, targeted=targeted, bn_mode=bn_mode)


def _dominant(logits: torch.Tensor, lam: float, perm: torch.Tensor | None) -> torch.Tensor:
    """Rows reordered so row i is the prediction for the image whose label dominates it.

    A mixed image i is mostly image i when lam >= 0.5, else image perm[i]; the
    loop compares row i with y[i], so the train accuracy counts the dominant label.
    """
    if perm is None or lam >= 0.5:
        return logits
    out = torch.empty_like(logits)
    out[perm] = logits
    return out


def _clean_part(x: torch.Tensor, y1: torch.Tensor, m: dict[str, Any], draws: Draws):
    lam = draws.lam(m["alpha"])
    if lam == 1.0:
        return x, y1, lam, None
    perm = draws.perm(len(x), x.device)
    xm, ym = mix(x, y1, lam, perm)
    return xm, ym, lam, perm


def _adversarial_part(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y1: torch.Tensor,
                      m: dict[str, Any], draws: Draws, num_classes: int):
    """The attacked part: images, soft labels, and (lambda, pairing) for the train accuracy."""
    eps = draws.eps(m["eps_max"])
    targeted = m["attack"] == "targeted_fgsm"
    target = draws.targets(len(x), num_classes, x.device) if targeted else None
    if m["order"] == "attack_then_mix":  # IAT: attack the images, then mix them (Mixup labels)
        x_adv = _fgsm(model, x, target if targeted else y, eps=eps, targeted=targeted, bn_mode=m["bn_mode"])
        lam = draws.lam(m["alpha"])
        perm = draws.perm(len(x), x.device)
        xm, ym = mix(x_adv, y1, lam, perm)
        return xm, ym, lam, perm
    xm, ym, lam, perm = _clean_part(x, y1, m, draws)  # M-TLAT: mix, then attack the mixed images
    x_adv = _fgsm(model, xm, target if targeted else y, eps=eps, targeted=targeted, bn_mode=m["bn_mode"])
    if m["label"] == "targeted":
        ym = targeted_label(ym, one_hot(target, num_classes), eps)
    elif m["label"] == "smoothing":
        ym = smoothed_label(ym, eps)
    return x_adv, ym, lam, perm


def mixing_step(spec: dict[str, Any], num_classes: int, seed: int) -> StepFn:
    """The batch step of a ``mixing`` block (module docstring); draws seeded by ``seed``."""
    m = resolve_mixing(spec)
    draws = Draws(seed + 15485863)

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        y1 = one_hot(y, num_classes)
        n_adv = 0 if m["attack"] == "none" else min(max(round(len(x) * m["adversarial_share"]), 1), len(x) - 1)
        n_clean = len(x) - n_adv
        parts = [_clean_part(x[:n_clean], y1[:n_clean], m, draws)]
        if n_adv:
            parts.append(_adversarial_part(model, x[n_clean:], y[n_clean:], y1=y1[n_clean:], m=m,
                                           draws=draws, num_classes=num_classes))
        logits = model(torch.cat([p[0] for p in parts]))
        chunks = logits.split([len(p[0]) for p in parts])
        loss = sum(soft_cross_entropy(c, p[1]) for c, p in zip(chunks, parts, strict=True))
        shown = torch.cat([_dominant(c.detach(), p[2], p[3]) for c, p in zip(chunks, parts, strict=True)])
        return loss, shown

    return step
