"""Training strategies, keyed by the ids used in params (``ST``, ...).

A strategy decides the initial weights, which parameters train and the loss
of one batch; ``fillrobust.train.loop.fit`` does the rest. Adding a strategy
is one entry here plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fillrobust.models.resnet import build_model
from fillrobust.train.loop import StepFn, cross_entropy_step


@dataclass(frozen=True)
class Prepared:
    """A model ready to train, with its batch loss and train-mode hook."""

    model: nn.Module
    step: StepFn
    set_train_mode: Callable[[nn.Module], None] | None = None
    parent: dict[str, Any] | None = None


def _scratch(params: dict[str, Any], num_classes: int, **_: Any) -> Prepared:
    """ST: ResNet-18 from random initialisation, cross-entropy on clean images."""
    return Prepared(build_model(params.get("arch", "resnet18"), num_classes), cross_entropy_step)


STRATEGIES: dict[str, Callable[..., Prepared]] = {
    "ST": _scratch,
}


def prepare(strategy: str, params: dict[str, Any], num_classes: int, **sources: Any) -> Prepared:
    """Build the model and step function of ``strategy``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[strategy](params, num_classes, **sources)
