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
