"""Adversarial attacks: batched, seeded, registry-driven.

Models take float32 NCHW images in [0, 1] and return logits. Every attack restores the
model's train/eval flags (``bn_mode``), writes no parameter gradients and returns detached
adversarial images. Rules use :func:`run_attack` with a registry name; code that needs
one attack imports it from its module (``from fillrobust.attacks.pgd import pgd``). The
functions named like their modules (fgsm, pgd, mifgsm, deepfool, sparsefool) are not
re-exported here so that ``fillrobust.attacks.pgd`` stays the module.
"""

from .common import BN_MODES, model_mode
from .cw import cw_l2
from .deepfool import DeepFoolResult, deepfool_details
from .norms import L2Step, LinfStep, l0_norms, l2_norms, per_image_norm
from .pgd import pgd_ll
from .registry import (
    ATTACKS,
    AttackSpec,
    ParamSpec,
    get_attack,
    list_attacks,
    params_json_schema,
    run_attack,
    validate_attack_params,
)
from .sparsefool import SparseFoolResult, linear_solver, sparsefool_details

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
