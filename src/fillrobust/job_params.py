"""Parameter helpers that the jobs themselves run (training, selection, the tables).

They live apart from :mod:`fillrobust.config`, whose schema and cross-checks run
in the Snakefile only: the training code hash (``CODE["train"]`` in
``workflow/rules/common.smk``) covers this module, not the validation, so an
edit to a check or an error message retrains nothing. ``fillrobust.config``
re-exports every name here.
"""

from __future__ import annotations

import copy
from typing import Any


class ConfigError(ValueError):
    """The parameters are invalid; the message names the key and the expectation."""


def model_preprocess(params: dict[str, Any]) -> str:
    """The preprocessing built into the model: ``preprocess`` only with ``preprocess_at: model``.

    The default ``preprocess_at: train`` filters the training batches only (thesis 5.2.1:
    trained on filtered images, tested on standard RGB images), so the model is plain.
    """
    name = params.get("preprocess", "none")
    return name if params.get("preprocess_at", "train") == "model" else "none"


def preprocess_label(params: dict[str, Any]) -> str:
    """How a strategy's preprocessing is applied, as the tables name it: ``lowpass (train only)``."""
    name = params.get("preprocess", "none")
    if name == "none":
        return "none"
    return f"{name} ({'in model' if params.get('preprocess_at', 'train') == 'model' else 'train only'})"


def eps_label(eps: float) -> str:
    """Canonical text of an eps in paths and wildcards: 0.05 -> '0.05', 1.0 -> '1'."""
    return f"{float(eps):g}"


def needs_selection(params: dict[str, Any]) -> bool:
    """Whether a strategy reads the eps_s selected by the eps sweep."""
    adv = params.get("adversarial") or {}
    return params.get("source_eps") == "selected" or adv.get("eps") == "selected"


def resolve_selected(params: dict[str, Any], selected_eps: float | None) -> dict[str, Any]:
    """Replace ``"selected"`` by the eps chosen by the sweep (ICIP: eps_t = eps_s)."""
    if needs_selection(params) and selected_eps is None:
        raise ConfigError("this strategy uses the selected eps_s but no selection was given")
    out = copy.deepcopy(params)
    if out.get("source_eps") == "selected":
        out["source_eps"] = selected_eps
    if (out.get("adversarial") or {}).get("eps") == "selected":
        out["adversarial"]["eps"] = selected_eps
    return out
