"""Learning-rate schedules, per optimisation step."""

from __future__ import annotations

import torch


def linear_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr decays linearly from its initial value to 0 over ``total_steps`` steps.

    With ``warmup_steps`` > 0 it first ramps up linearly from lr/warmup_steps
    (the papers state the linear decay only; the warm-up is a parameter).
    """
    total = max(int(total_steps), 1)
    warm = max(int(warmup_steps), 0)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, 1.0 - step / total)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_decay(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
               milestones: list[float] | tuple[float, ...], gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """lr times ``gamma`` after each milestone, given as fractions of the epochs.

    M-TLAT: /10 at the end of epochs 30, 60 and 80 of 90 = fractions 1/3, 2/3, 8/9;
    a milestone falls on the epoch boundary ``round(fraction * epochs)``.
    """
    bounds = sorted(round(float(f) * epochs) * max(int(steps_per_epoch), 1) for f in milestones)

    def factor(step: int) -> float:
        return gamma ** sum(step >= b for b in bounds)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(params: list[torch.nn.Parameter], hyper: dict) -> torch.optim.Optimizer:
    """``hyper['optimizer']``: ``sgd`` (default; momentum, weight_decay) or ``adam`` (M-TLAT:
    Adam with L2 weight decay, as torch.optim.Adam's ``weight_decay``)."""
    name = hyper.get("optimizer", "sgd")
    if name == "sgd":
        return torch.optim.SGD(params, lr=hyper["lr"], momentum=hyper["momentum"],
                               weight_decay=hyper["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=hyper["lr"], weight_decay=hyper["weight_decay"])
    raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {name!r}")


def build_schedule(optimizer: torch.optim.Optimizer, hyper: dict,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``hyper['schedule']``: ``linear`` (default, :func:`linear_decay` with warm-up) or
    ``step`` (:func:`step_decay` at ``lr_milestones``, factor ``lr_gamma``)."""
    name = hyper.get("schedule", "linear")
    epochs = int(hyper["epochs"])
    if name == "linear":
        return linear_decay(optimizer, epochs * steps_per_epoch, hyper.get("warmup_epochs", 0) * steps_per_epoch)
    if name == "step":
        return step_decay(optimizer, steps_per_epoch, epochs, hyper.get("lr_milestones", [1 / 3, 2 / 3, 8 / 9]),
                          float(hyper.get("lr_gamma", 0.1)))
    raise ValueError(f"schedule: expected 'linear' or 'step', got {name!r}")
