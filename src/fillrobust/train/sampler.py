"""Class-balanced batch sampling (ICIP 2021: p ~ 1 / class frequency)."""

from __future__ import annotations

import numpy as np
import torch


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample probabilities inversely proportional to the class frequency.

    Every class present then has the same total probability mass.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    freq = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    weights = np.array([1.0 / freq[int(c)] for c in labels], dtype=np.float64)
    return weights / weights.sum()


def epoch_order(labels: np.ndarray, balanced: bool, generator: torch.Generator) -> np.ndarray:
    """Positions (into ``labels``) for one epoch of ``len(labels)`` draws.

    Balanced: drawn with replacement with the balanced weights; otherwise a
    random permutation.
    """
    n = len(labels)
    if not balanced:
        return torch.randperm(n, generator=generator).numpy()
    weights = torch.from_numpy(balanced_weights(labels))
    return torch.multinomial(weights, n, replacement=True, generator=generator).numpy()
