"""Whether a training run converged: its final train accuracy against a threshold.

The threshold is the training parameter ``converged_min_acc`` (``train.defaults``,
overridable per strategy, and ``source.train``); the sidecar records the
accuracy, the threshold and the flag, so the tables can mark (and the claims
table count) models that did not converge instead of reporting them silently.
"""

from __future__ import annotations

import math
from typing import Any

#: Used when a parameter set predates the key (params.yaml sets it explicitly).
DEFAULT_MIN_ACC = 0.9


def convergence(final_metrics: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Sidecar entries ``final_train_accuracy``, ``converged_min_acc`` and ``converged``.

    The train accuracy is the running accuracy of the last epoch on the
    training batches as trained (perturbed or augmented where the strategy
    does so), the number the ICIP paper quotes for non-convergence.
    """
    threshold = float(params.get("converged_min_acc", DEFAULT_MIN_ACC))
    acc = final_metrics.get("train_accuracy")
    known = acc is not None and not math.isnan(float(acc))
    return {"final_train_accuracy": float(acc) if known else None, "converged_min_acc": threshold,
            "converged": bool(known and float(acc) >= threshold)}
