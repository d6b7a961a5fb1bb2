"""AutoAttack (Croce & Hein 2020), standard version, through torchattacks.

The standard ensemble runs APGD-CE, APGD-T (targeted, DLR loss), FAB-T and
Square one after another, each on the images the previous ones did not fool
(torchattacks' MultiAttack). torchattacks seeds each component from
``time.time()`` unless a seed is given, so reruns would differ: here the seed
is a parameter (default 0) and the number of classes comes from the attacked
model's logits (the dataset's classes). The components seed the global torch
RNG, which is restored afterwards so the caller's stream is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .common import check_batch, check_positive, model_mode

#: torchattacks' names of the two norms.
NORMS = {"linf": "Linf", "l2": "L2"}


@contextmanager
def _restored_rng(device: torch.device) -> Iterator[None]:
    """Keep the global CPU (and CUDA) RNG state as it was: the components reseed it."""
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


@torch.no_grad()
def num_classes_of(model: torch.nn.Module, x: torch.Tensor) -> int:
    """The number of logits the model returns (the dataset's classes)."""
    with model_mode(model, "eval"):
        return int(model(x[:1]).shape[1])


#: Square's query budget in the standard version (torchattacks.AutoAttack fixes it).
STANDARD_QUERIES = 5000


def components(model: torch.nn.Module, norm: str, eps: float, n_classes: int, seed: int,
               square_queries: int = STANDARD_QUERIES) -> list:
    """The four attacks of the standard version, configured as torchattacks.AutoAttack does
    (``square_queries`` other than 5000 is a cheaper, non-standard Square)."""
    import torchattacks

    kind = NORMS[norm]
    return [
        torchattacks.APGD(model, eps=eps, norm=kind, seed=seed, loss="ce", n_restarts=1),
        torchattacks.APGDT(model, eps=eps, norm=kind, seed=seed, n_classes=n_classes, n_restarts=1),
        torchattacks.FAB(model, eps=eps, norm=kind, seed=seed, multi_targeted=True, n_classes=n_classes,
                         n_restarts=1),
        torchattacks.Square(model, eps=eps, norm=kind, seed=seed, n_queries=square_queries, n_restarts=1),
    ]


def autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
               seed: int = 0, n_classes: int | None = None, square_queries: int = STANDARD_QUERIES) -> torch.Tensor:
    """Standard AutoAttack of radius ``eps`` in ``norm`` (``linf`` or ``l2``); detached x_adv.

    The model is attacked in eval mode (torchattacks' default) and its modes are
    restored; ``n_classes`` defaults to the model's output width. With the
    standard 5000 Square queries this is torchattacks.AutoAttack itself; another
    budget runs the same four components through torchattacks.MultiAttack (Square
    costs one forward per query on the images still robust: on CPU it dominates).
    """
    import torchattacks

    check_batch(x, y)
    check_positive("eps", eps)
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {list(NORMS)}; got {norm!r}")
    classes = n_classes or num_classes_of(model, x)
    with model_mode(model, "eval"), _restored_rng(x.device), _contiguous(model):
        if square_queries == STANDARD_QUERIES:
            attack = torchattacks.AutoAttack(model, norm=NORMS[norm], eps=eps, version="standard",
                                             n_classes=classes, seed=seed)
        else:
            attack = torchattacks.MultiAttack(components(model, norm, eps, n_classes=classes, seed=seed,
                                                         square_queries=square_queries))
        return attack(x.detach().contiguous(), y.detach()).detach()


@contextmanager
def _contiguous(model: torch.nn.Module) -> Iterator[None]:
    """FAB reshapes input gradients with ``view``, which fails on channels_last tensors (the
    pipeline's layout): the attack runs on NCHW-contiguous weights and inputs, and the
    weights get their layout back afterwards."""
    layouts = [(p, p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous())
               for p in model.parameters() if p.dim() == 4]
    model.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        if any(last for _, last in layouts):
            model.to(memory_format=torch.channels_last)
