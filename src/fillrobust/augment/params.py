"""Augmentation params and their checks, without importing torch.

The registry (:mod:`fillrobust.augment.registry`) builds each augmentation from the
params these functions resolve, and :func:`fillrobust.config.validate` runs the same
checks on every ``augment`` block before any job is planned: a typo in params then
stops the dry run instead of a training job, which Snakemake starts by deleting the
old checkpoint. Every ValueError names the offending key and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

# ----------------------------------------------------------------------------- PRIME

PRIMITIVES: tuple[str, ...] = ("spectral", "spatial", "color")

#: C-CCM values of thesis 5.5 (defaults). colour band: thesis silent for C-CCM; 20 is the
#: ImageNet value that goes with K_gamma = 500 (thesis 5.3.1, App. B.2).
PRIME_CCM: dict[str, Any] = {
    "width": 3,
    "depth": 3,
    "mix_a": 5.0,
    "mix_b": 1.0,
    "primitives": list(PRIMITIVES),
    "identity": True,
    "strength": 1.0,
    "spectral_kernel": 3,
    "spectral_sigma2": 0.01,
    "spatial_cut_min": 2,
    "spatial_cut_max": 10,
    "spatial_concentration": 0.5,
    "color_cut": 500,
    "color_band": 20,
    "color_sigma2": 0.001,
}

#: CIFAR-10/100 (App. B.2 + official config): sigma_omega = 4 (std), cut 2..100,
#: K_gamma = 10 all frequencies, colour 0.01 read as a variance (official ``T``), Beta(1, 1).
PRIME_CIFAR: dict[str, Any] = {
    **PRIME_CCM,
    "mix_a": 1.0,
    "mix_b": 1.0,
    "spectral_sigma2": 16.0,
    "spatial_cut_max": 100,
    "color_cut": 10,
    "color_band": None,
    "color_sigma2": 0.01,
}

#: ImageNet (App. B.2 + official config): cut 2..500, K_gamma = 500, Delta = 20, 0.05.
PRIME_IMAGENET: dict[str, Any] = {
    **PRIME_CIFAR,
    "spatial_cut_max": 500,
    "color_cut": 500,
    "color_band": 20,
    "color_sigma2": 0.05,
}

PRESETS: dict[str, dict[str, Any]] = {
    "ccm": PRIME_CCM,
    "cifar": PRIME_CIFAR,
    "imagenet": PRIME_IMAGENET,
}


# ----------------------------------------------------------------------------- validation


def _fail(key: str, expected: str, value: Any) -> None:
    raise ValueError(f"prime param '{key}': expected {expected}, got {value!r}")


def _check_int(p: Mapping[str, Any], key: str, low: int) -> None:
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        _fail(key, f"an integer >= {low}", v)


def _check_float(p: Mapping[str, Any], key: str, positive: bool) -> None:
    v = p[key]
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < 0 or (positive and v == 0):
        _fail(key, "a finite number " + ("> 0" if positive else ">= 0"), v)


def _check_primitives(p: Mapping[str, Any]) -> None:
    v = p["primitives"]
    if not isinstance(v, list | tuple) or not v or len(set(v)) != len(v):
        _fail("primitives", f"a non-empty list without repeats drawn from {list(PRIMITIVES)}", v)
    bad = [name for name in v if name not in PRIMITIVES]
    if bad:
        _fail("primitives", f"names from {list(PRIMITIVES)}", bad)


def resolve_prime_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``params`` over a preset (``params['preset']``, default ``'ccm'``) and validate.

    Raises ValueError naming the offending key and what is expected.
    """
    params = dict(params or {})
    preset = params.pop("preset", "ccm")
    if preset not in PRESETS:
        _fail("preset", f"one of {sorted(PRESETS)}", preset)
    unknown = sorted(set(params) - set(PRIME_CCM))
    if unknown:
        raise ValueError(
            f"prime params: unknown key(s) {unknown}; valid keys: {['preset', *PRIME_CCM]}"
        )
    p = {**PRESETS[preset], **params}
    for key in ("width", "depth", "spectral_kernel", "spatial_cut_max", "color_cut"):
        _check_int(p, key, 1)
    _check_int(p, "spatial_cut_min", 2)
    if p["spectral_kernel"] % 2 == 0:
        _fail("spectral_kernel", "an odd integer (the identity tap sits at the centre)", 0)
    if p["spatial_cut_max"] < p["spatial_cut_min"]:
        _fail(
            "spatial_cut_max", f">= spatial_cut_min ({p['spatial_cut_min']})", p["spatial_cut_max"]
        )
    for key in ("mix_a", "mix_b", "spatial_concentration"):
        _check_float(p, key, positive=True)
    for key in ("strength", "spectral_sigma2", "color_sigma2"):
        _check_float(p, key, positive=False)
    if p["color_band"] is not None:
        _check_int(p, "color_band", 1)
        if p["color_band"] > p["color_cut"]:
            _fail(
                "color_band", f"null or an integer <= color_cut ({p['color_cut']})", p["color_band"]
            )
    if not isinstance(p["identity"], bool):
        _fail("identity", "true or false", p["identity"])
    _check_primitives(p)
    p["primitives"] = list(p["primitives"])
    return p

# ----------------------------------------------------------------------------- AugMix

AUGMIX_DEFAULTS: dict[str, Any] = {
    "severity": 3,
    "width": 3,
    "depth": -1,
    "alpha": 1.0,
    "all_ops": False,
}


def resolve_augmix_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge over :data:`AUGMIX_DEFAULTS` and validate; ValueError names the bad key."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(AUGMIX_DEFAULTS))
    if unknown:
        raise ValueError(
            f"augmix params: unknown key(s) {unknown}; valid keys: {list(AUGMIX_DEFAULTS)}"
        )
    p = {**AUGMIX_DEFAULTS, **params}
    checks = {
        "severity": (lambda v: _is_int(v) and 1 <= v <= 10, "an integer in [1, 10]"),
        "width": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "depth": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (random 1..3) or >= 1"),
        "alpha": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
        "all_ops": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (ok, expected) in checks.items():
        if not ok(p[key]):
            raise ValueError(f"augmix param '{key}': expected {expected}, got {p[key]!r}")
    return p


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------- none, gray


def resolve_none_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``none`` takes no params."""
    if params:
        raise ValueError(f"none params: takes no keys, got {sorted(params)}")
    return {}


def resolve_gray_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``gray``: ``p``, the probability that an image is made gray (default 1)."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"p"})
    if unknown:
        raise ValueError(f"gray params: unknown key(s) {unknown}; valid keys: ['p']")
    p = params.get("p", 1.0)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ValueError(f"gray param 'p': expected a probability in [0, 1], got {p!r}")
    return {"p": float(p)}


# ----------------------------------------------------------------------------- by name

_RESOLVERS: dict[str, Callable[[Mapping[str, Any] | None], dict[str, Any]]] = {
    "none": resolve_none_params,
    "prime": resolve_prime_params,
    "augmix": resolve_augmix_params,
    "gray": resolve_gray_params,
}

#: The augmentation names (``augment.name`` in params; the registry builds each).
AUGMENTATIONS: tuple[str, ...] = tuple(_RESOLVERS)


def resolve_augment_params(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete params of augmentation ``name``; ValueError naming the bad name or key."""
    if name not in _RESOLVERS:
        raise ValueError(f"augmentation: unknown name {name!r}; valid names: {list(AUGMENTATIONS)}")
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"{name} params: expected a mapping, got {type(params).__name__}")
    return _RESOLVERS[name](params)


def augment_error(spec: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """What is wrong with one ``augment`` block (``{name, params, jsd_weight}``), if anything:
    (the sub-key at fault, ``name`` or ``params``; the message)."""
    if not spec:
        return None
    name = spec.get("name")
    if name not in _RESOLVERS:
        return "name", f"{name!r} is not one of {list(AUGMENTATIONS)}"
    try:
        resolve_augment_params(name, spec.get("params"))
    except ValueError as err:
        return "params", str(err)
    return None
