"""Learning-rate schedules, per optimisation step."""

from __future__ import annotations

import torch


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr decays linearly from its initial value to 0 over ``total_steps`` steps."""
    total = max(int(total_steps), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total))
