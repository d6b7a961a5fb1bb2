"""Helpers shared by all attacks: model mode handling, input checks, losses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

#: How the model's train/eval state is set during an attack.
#: ``eval``: model.eval() (BatchNorm uses running stats; the evaluation default);
#: ``train``: model.train() (BatchNorm uses batch stats AND updates its running stats,
#: dropout active); ``keep``: leave every module exactly as the caller set it
#: (what training code that manages modes itself, e.g. with frozen stages, wants).
BN_MODES = ("eval", "train", "keep")


def check_bn_mode(bn_mode: str) -> str:
    """Return ``bn_mode`` if valid, else raise ValueError listing the options."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode: expected one of {list(BN_MODES)}; got {bn_mode!r}")
    return bn_mode


@contextmanager
def model_mode(model: torch.nn.Module, bn_mode: str) -> Iterator[torch.nn.Module]:
    """Put ``model`` in the mode named by ``bn_mode`` and restore every module's flag after.

    Each submodule's ``training`` flag is saved and restored individually, so models
    with mixed states (e.g. frozen BatchNorm stages during fine-tuning) come back intact.
    """
    check_bn_mode(bn_mode)
    saved = [(m, m.training) for m in model.modules()]
    try:
        if bn_mode == "eval":
            model.eval()
        elif bn_mode == "train":
            model.train()
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


def check_batch(x: torch.Tensor, y: torch.Tensor | None) -> None:
    """Validate an image batch (N, C, H, W) and optional labels (N,)."""
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D (N, C, H, W) batch; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x: expected a float tensor in [0, 1]; got dtype {x.dtype}")
    if y is not None and (y.dim() != 1 or y.shape[0] != x.shape[0]):
        raise ValueError(f"y: expected shape ({x.shape[0]},) matching x; got {tuple(y.shape)}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """Raise ValueError unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected {bound}; got {value!r}")


def input_grad(loss: torch.Tensor, x: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. the input only (no parameter .grad is touched)."""
    return torch.autograd.grad(loss, x, retain_graph=retain_graph)[0]


def ce_loss(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Sum of per-image cross-entropy; negated for targeted attacks (ascend towards y).

    A sum (not a mean) keeps each image's gradient independent of the batch size; the
    step rules normalise the gradient (sign, l2, l1) so the scale does not matter.
    """
    loss = F.cross_entropy(logits, y, reduction="sum")
    return -loss if targeted else loss


def least_likely(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Least-likely class of each image under ``model`` (the PGD_LL target)."""
    with torch.no_grad():
        return model(x).argmin(dim=1)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))
