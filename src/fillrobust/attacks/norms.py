"""Norms, projections and PGD step objects shared by the attacks.

The step objects follow the structure of MadryLab/robustness (``attack_steps.py``):
each threat model is a class with ``project`` (onto the eps-ball around the original
input, then onto the image box), ``step`` (a steepest-ascent step for that norm) and
``random_perturb`` (the random start). All of them are batched: one call handles the
whole (N, C, H, W) batch with per-image norms.
"""

from __future__ import annotations

import torch

#: Numerical guard for divisions by per-image norms (same value as robustness/torchattacks).
TINY = 1e-10

NORMS = ("linf", "l2")


def _view_per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-image vector (N,) so it broadcasts against a batch like ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def per_image_norm(delta: torch.Tensor, p: float | str = 2) -> torch.Tensor:
    """Per-image norm of a batch of perturbations.

    Args:
        delta: (N, ...) perturbations (e.g. ``x_adv - x``).
        p: 2, 1, ``"inf"``/``float("inf")``, or 0 (number of non-zero coordinates).

    Returns:
        (N,) float tensor of norms.
    """
    flat = delta.reshape(delta.shape[0], -1)
    if p in ("inf", "linf", float("inf")):
        return flat.abs().amax(dim=1)
    if p in (2, "2", "l2"):
        return flat.norm(p=2, dim=1)
    if p in (1, "1", "l1"):
        return flat.abs().sum(dim=1)
    if p in (0, "0", "l0"):
        return (flat != 0).sum(dim=1).to(delta.dtype)
    raise ValueError(f"norm p: expected one of 0, 1, 2, 'inf'; got {p!r}")


def l2_norms(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image l2 norm of ``x_adv - x`` (shape (N,)); the DeepFool/CW size measure."""
    return per_image_norm(x_adv - x, 2)


def l0_norms(x_adv: torch.Tensor, x: torch.Tensor, per: str = "pixel") -> torch.Tensor:
    """Per-image l0 "norm" of ``x_adv - x``: how many entries changed.

    Args:
        x_adv, x: (N, C, H, W) batches.
        per: ``"pixel"`` counts spatial positions (H*W grid) where any channel changed;
            ``"coordinate"`` counts changed scalar entries (C*H*W grid).

    Returns:
        (N,) float tensor of counts.
    """
    changed = x_adv != x
    if per == "coordinate":
        return changed.reshape(changed.shape[0], -1).sum(dim=1).to(x.dtype)
    if per == "pixel":
        return changed.any(dim=1).reshape(changed.shape[0], -1).sum(dim=1).to(x.dtype)
    raise ValueError(f"l0 per: expected 'pixel' or 'coordinate'; got {per!r}")


def check_norm(norm: str) -> str:
    """Return ``norm`` if it names a supported threat model, else raise ValueError."""
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {list(NORMS)}; got {norm!r}")
    return norm


class AttackerStep:
    """A threat model around ``orig``: the eps-ball intersected with the box [lo, hi]."""

    def __init__(
        self, orig: torch.Tensor, eps: float, step_size: float, lo: float = 0.0, hi: float = 1.0
    ) -> None:
        self.orig = orig
        self.eps = eps
        self.step_size = step_size
        self.lo = lo
        self.hi = hi

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` onto the eps-ball around ``orig`` and the image box."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Take a steepest-ascent step of length ``step_size`` along gradient ``g``."""
        raise NotImplementedError

    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random start inside the threat model (box-clamped)."""
        raise NotImplementedError


class LinfStep(AttackerStep):
    """l_inf ball: sign-gradient steps, coordinate-wise clipping, uniform random start."""

    def project(self, x: torch.Tensor) -> torch.Tensor:
        # The ball and the box intersect in one per-coordinate interval, computed once:
        # a single clamp per iteration instead of sub, clamp, add, clamp.
        if not hasattr(self, "_bounds"):
            self._bounds = (torch.clamp(self.orig - self.eps, min=self.lo),
                            torch.clamp(self.orig + self.eps, max=self.hi))
        return torch.clamp(x, *self._bounds)

    def step(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x.add(torch.sign(g), alpha=self.step_size)

    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.clamp(x + (2 * u - 1) * self.eps, self.lo, self.hi)


class L2Step(AttackerStep):
    """l2 ball: normalised-gradient steps, radial projection, random start on the sphere.

    The random start draws a Gaussian direction scaled to norm eps (as robustness'
    ``L2Step.random_perturb``), then clamps to the box.
    """

    def project(self, x: torch.Tensor) -> torch.Tensor:
        delta = x - self.orig
        n = per_image_norm(delta, 2)
        scale = torch.clamp(self.eps / (n + TINY), max=1.0)
        return torch.clamp(self.orig + delta * _view_per_image(scale, x), self.lo, self.hi)

    def step(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        gn = per_image_norm(g, 2)
        return x + g * _view_per_image(self.step_size / (gn + TINY), g)

    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        dn = per_image_norm(d, 2)
        return torch.clamp(x + d * _view_per_image(self.eps / (dn + TINY), x), self.lo, self.hi)


STEP_CLASSES: dict[str, type[AttackerStep]] = {"linf": LinfStep, "l2": L2Step}
