"""Models of the synthetic experiments (thesis 4.2.2, App. A.1).

- ``MLP``: ``depth`` hidden layers of ``width`` ReLU units (thesis: 10 x 500);
  ``init="kaiming"`` (default here) uses He-normal weights and zero biases;
  ``"torch"`` keeps PyTorch's default, under which the signal shrinks ~3x per
  layer and a 10-layer net needs the thesis' 500 epochs to start learning;
- ``LogisticRegression``: one linear score z, returned as logits [-z/2, z/2] so
  that softmax cross-entropy on them is exactly the logistic loss on z and the
  multi-class margin code applies unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

SYNTHETIC_MODELS = ("mlp", "logreg")
MLP_INITS = ("kaiming", "torch")


class MLP(nn.Sequential):
    """Fully connected ReLU network: in_dim -> depth x width -> num_classes."""

    def __init__(
        self, in_dim: int, num_classes: int = 2, width: int = 500, depth: int = 10,
        init: str = "kaiming",
    ):
        if init not in MLP_INITS:
            raise ValueError(f"unknown MLP init {init!r}; valid: {list(MLP_INITS)}")
        if min(in_dim, num_classes, width) < 1 or depth < 0:
            raise ValueError(f"need in_dim, num_classes, width >= 1 and depth >= 0, got "
                             f"{in_dim}, {num_classes}, {width}, {depth}")
        layers: list[nn.Module] = []
        prev = in_dim
        for _ in range(depth):
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        super().__init__(*layers)
        if init == "kaiming":
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)


class LogisticRegression(nn.Module):
    """Binary logistic regression with two symmetric logits."""

    def __init__(self, in_dim: int):
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        self.linear = nn.Linear(in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, 2] = [-z/2, z/2] with z = w.x + b."""
        z = self.linear(x.flatten(1)) / 2
        return torch.cat([-z, z], dim=1)


def build_synthetic_model(
    name: str, in_dim: int, width: int = 500, depth: int = 10, init: str = "kaiming"
) -> nn.Module:
    """Model by name: 'mlp' (depth x width ReLU MLP) or 'logreg'."""
    if name == "mlp":
        return MLP(in_dim, 2, width, depth, init)
    if name == "logreg":
        return LogisticRegression(in_dim)
    raise ValueError(f"unknown synthetic model {name!r}; valid: {list(SYNTHETIC_MODELS)}")
