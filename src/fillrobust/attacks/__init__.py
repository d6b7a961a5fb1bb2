"""Adversarial attacks: batched, seeded, registry-driven.

Models take float32 NCHW images in [0, 1] and return logits. Every attack restores the
model's train/eval flags (``bn_mode``), writes no parameter gradients and returns detached
adversarial images. Rules use :func:`run_attack` with a registry name; code that needs
one attack imports it from its module (``from fillrobust.attacks.pgd import pgd``). The
functions named like their modules (fgsm, pgd, mifgsm, deepfool, sparsefool) are not
re-exported here so that ``fillrobust.attacks.pgd`` stays the module.
"""

import importlib
from typing import Any

# Imported on first use (PEP 562): the registry's names and specs are read by the
# parameter validation, which must not pay for ``import torch``.
_WHERE = {
    "ATTACKS": "registry",
    "AttackSpec": "registry",
    "BN_MODES": "common",
    "DeepFoolResult": "deepfool",
    "L2Step": "norms",
    "LinfStep": "norms",
    "ParamSpec": "registry",
    "SparseFoolResult": "sparsefool",
    "cw_l2": "cw",
    "deepfool_details": "deepfool",
    "get_attack": "registry",
    "l0_norms": "norms",
    "l2_norms": "norms",
    "linear_solver": "sparsefool",
    "list_attacks": "registry",
    "model_mode": "common",
    "params_json_schema": "registry",
    "per_image_norm": "norms",
    "pgd_ll": "pgd",
    "run_attack": "registry",
    "sparsefool_details": "sparsefool",
    "validate_attack_params": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


__all__ = [
    "ATTACKS",
    "BN_MODES",
    "AttackSpec",
    "DeepFoolResult",
    "L2Step",
    "LinfStep",
    "ParamSpec",
    "SparseFoolResult",
    "cw_l2",
    "deepfool_details",
    "get_attack",
    "l0_norms",
    "l2_norms",
    "linear_solver",
    "list_attacks",
    "model_mode",
    "params_json_schema",
    "per_image_norm",
    "pgd_ll",
    "run_attack",
    "sparsefool_details",
    "validate_attack_params",
]
