"""Attack registry keyed by the names used in params, with declared parameters.

Each entry lists its parameters (default, type, valid range) and a runner with one
signature, so workflow rules call :func:`run_attack` and never special-case an attack::

    x_adv = run_attack("pgd_l2", model, x, y, {"eps": 0.5}, generator=g)

``threat`` tells the evaluation how to use an entry: ``white-box`` attacks the evaluated
model; ``transfer`` (MI-FGSM in M-TLAT) is run on a surrogate model and the images are
then fed to the evaluated model. ``pgd_ll`` ignores ``y``: its target is each image's
least-likely class under the attacked model. Attacks with ``targeted: true`` read ``y`` as
target classes.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Also in .common; repeated so that validating params never imports torch.
BN_MODES = ("eval", "train", "keep")


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """The attack function ``name`` of ``fillrobust.attacks.<module>``, imported on call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"fillrobust.attacks.{module}"), name)(*args, **kwargs)

    return call


pgd = _lazy("pgd", "pgd")
fgsm = _lazy("fgsm", "fgsm")
mifgsm = _lazy("mifgsm", "mifgsm")
cw_l2 = _lazy("cw", "cw_l2")
deepfool = _lazy("deepfool", "deepfool")
sparsefool = _lazy("sparsefool", "sparsefool")
autoattack = _lazy("autoattack", "autoattack")
least_likely = _lazy("common", "least_likely")
make_generator = _lazy("common", "make_generator")
model_mode = _lazy("common", "model_mode")


@dataclass(frozen=True)
class ParamSpec:
    """One attack parameter: type (``float``, ``int``, ``bool``, ``choice``), default, range.

    ``low``/``high`` are inclusive bounds unless ``low_open`` is set; ``nullable`` allows None.
    """

    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    doc: str = ""

    def expected(self) -> str:
        """Human-readable description of the valid values."""
        if self.kind == "bool":
            text = "a bool"
        elif self.kind == "choice":
            text = f"one of {list(self.choices)}"
        else:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            text = f"{'an int' if self.kind == 'int' else 'a number'} in {'(' if self.low_open else '['}{lo}, {hi}]"
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any) -> tuple[bool, Any]:
        """``(ok, value coerced to the declared type)``; ok is False on a type/range error."""
        if value is None:
            return self.nullable, None
        if self.kind == "bool":
            return isinstance(value, bool), value
        if self.kind == "choice":
            return value in self.choices, value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        if self.kind == "int" and not float(value).is_integer():
            return False, value
        v = int(value) if self.kind == "int" else float(value)
        too_low = self.low is not None and (v <= self.low if self.low_open else v < self.low)
        too_high = self.high is not None and v > self.high
        return not (math.isnan(v) or too_low or too_high), v


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: runner, declared params, threat model and paper source."""

    name: str
    runner: Callable[..., Any]
    params: dict[str, ParamSpec]
    norm: str
    threat: str = "white-box"
    source: str = ""
    uses_generator: bool = False
    defaults: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {k: p.default for k, p in self.params.items()})


def _bn() -> ParamSpec:
    return ParamSpec(
        "choice", "eval", choices=BN_MODES, doc="model mode during the attack; restored afterwards"
    )


def _eps(default: float, high: float | None) -> ParamSpec:
    return ParamSpec("float", default, 0.0, high, doc="radius of the threat ball")


def _steps(default: int) -> ParamSpec:
    return ParamSpec("int", default, 1, None, doc="number of iterations")


def _positive_or_null(doc: str, high: float | None = None) -> ParamSpec:
    """A float in (0, high], or null for the attack's own rule."""
    return ParamSpec("float", None, 0.0, high, low_open=True, nullable=True, doc=doc)


def _pgd_params(eps: float, eps_high: float | None) -> dict[str, ParamSpec]:
    return {
        "eps": _eps(eps, eps_high),
        "steps": _steps(10),
        "step_size": _positive_or_null("explicit step; null: step_factor * eps / steps"),
        "step_factor": ParamSpec("float", 2.5, 0.0, None, low_open=True,
                                 doc="default step rule factor (robustness library: 2.5)"),
        "random_start": ParamSpec("bool", True, doc="random start in the ball"),
        "use_best": ParamSpec("bool", False, doc="return the highest-loss iterate"),
        "bn_mode": _bn(),
    }


def _run_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, p: Mapping[str, Any],
             generator: torch.Generator | None, *, norm: str) -> torch.Tensor:
    return pgd(
        model,
        x,
        y,
        eps=p["eps"],
        steps=p["steps"],
        norm=norm,
        step_size=p["step_size"],
        random_start=p["random_start"],
        generator=generator,
        targeted=p.get("targeted", False),
        bn_mode=p["bn_mode"],
        use_best=p["use_best"],
        step_factor=p["step_factor"],
    )


def _run_pgd_ll(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, p: Mapping[str, Any],
                generator: torch.Generator | None) -> torch.Tensor:
    with model_mode(model, p["bn_mode"]):
        target = least_likely(model, x)
    return _run_pgd(model, x, target, {**p, "targeted": True}, generator, norm="linf")


def _targeted() -> ParamSpec:
    return ParamSpec("bool", False, doc="y holds target classes")


def _keywords(attack: Callable[..., Any]) -> Callable[..., Any]:
    """Runner of an attack whose keyword arguments are exactly its declared params."""
    return lambda m, x, y, p, g: attack(m, x, y, **p)


_SPECS = (
    AttackSpec("fgsm", _keywords(fgsm), {"eps": _eps(0.04, 1.0), "targeted": _targeted(), "bn_mode": _bn()},
               "linf", source="Goodfellow et al. 2015"),
    AttackSpec("pgd_linf", lambda m, x, y, p, g: _run_pgd(m, x, y, p, g, norm="linf"),
               {**_pgd_params(0.04, 1.0), "targeted": _targeted()}, "linf",
               source="Madry et al. 2018; M-TLAT eval eps 0.04, 10 it", uses_generator=True),
    AttackSpec("pgd_l2", lambda m, x, y, p, g: _run_pgd(m, x, y, p, g, norm="l2"),
               {**_pgd_params(0.5, None), "targeted": _targeted()}, "l2",
               source="Madry et al. 2018; ICIP 2021 AT (l2, 10 it)", uses_generator=True),
    AttackSpec("pgd_ll", _run_pgd_ll, _pgd_params(0.04, 1.0), "linf",
               source="least-likely-class targeted PGD; M-TLAT eps 0.04, 10 it", uses_generator=True),
    AttackSpec("mifgsm", _keywords(mifgsm), {
        "eps": _eps(0.04, 1.0),
        "steps": _steps(10),
        "decay": ParamSpec("float", 1.0, 0.0, None, doc="momentum factor mu"),
        "step_size": _positive_or_null("null: eps / steps (Dong et al.)"),
        "targeted": _targeted(),
        "bn_mode": _bn(),
    }, "linf", threat="transfer",
        source="Dong et al. 2018; M-TLAT eps 0.04/0.08, 10 it, from a VGG surrogate"),
    AttackSpec("cw_l2", _keywords(cw_l2), {
        "c": ParamSpec("float", 1.0, 0.0, None, doc="weight of the margin term"),
        "kappa": ParamSpec("float", 50.0, 0.0, None, doc="confidence"),
        "steps": _steps(40),
        "lr": ParamSpec("float", 0.01, 0.0, None, low_open=True, doc="Adam learning rate"),
        "abort_early": ParamSpec("bool", True, doc="per-image stop when cost rises"),
        "targeted": _targeted(),
        "bn_mode": _bn(),
    }, "l2", source="Carlini & Wagner 2017; M-TLAT 40 it, confidence 50"),
    AttackSpec("deepfool", _keywords(deepfool), {
        "top_k": ParamSpec("int", 10, 2, None, doc="candidate classes (capped at #classes)"),
        "overshoot": ParamSpec("float", 0.02, 0.0, None, doc="final (1+overshoot) factor"),
        "max_iter": _steps(50),
        "clamp": ParamSpec("bool", True, doc="keep iterates in [0, 1]"),
        "bn_mode": _bn(),
    }, "l2", source="Moosavi-Dezfooli et al. 2016"),
    AttackSpec("sparsefool", _keywords(sparsefool), {
        "lam": ParamSpec("float", 3.0, 1.0, None, doc="lambda, plane past the boundary"),
        "max_iter": _steps(20),
        "overshoot": ParamSpec("float", 0.02, 0.0, None, doc="final (1+overshoot) factor"),
        "df_max_iter": _steps(50),
        "top_k": ParamSpec("int", 10, 2, None, doc="DeepFool candidate classes"),
        "delta_max": _positive_or_null("optional |x_adv - x| bound (thesis 3.3)", high=1.0),
        "bn_mode": _bn(),
    }, "l0", source="Modas et al. 2019; thesis ch. 3 (lambda 3 on CIFAR-10)"),
)
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in _SPECS}


def _autoattack_spec(norm: str, eps: float, eps_high: float | None) -> AttackSpec:
    """AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) in ``norm``, with a fixed seed."""
    return AttackSpec(
        f"autoattack_{norm}",
        lambda m, x, y, p, g: autoattack(m, x, y, eps=p["eps"], norm=norm, seed=p["seed"],
                                         square_queries=p["square_queries"]),
        {
            "eps": ParamSpec("float", eps, 0.0, eps_high, low_open=True, doc="radius of the threat ball"),
            "seed": ParamSpec("int", 0, 0, 2**31 - 1,
                              doc="seed of every component (torchattacks' default is the clock)"),
            "square_queries": ParamSpec("int", 5000, 1, None,
                                        doc="Square's query budget (standard: 5000; fewer is a cheaper, "
                                            "non-standard AutoAttack)"),
        },
        norm,
        source="Croce & Hein 2020, standard version via torchattacks.AutoAttack",
    )


# AutoAttack, standard version (linf: eps of M-TLAT's PGD; l2: the ICIP-style 0.25 at 224 px
# is for PGD, here AutoAttack's usual 0.5 on 32 px; both set per threat in params).
ATTACKS["autoattack_linf"] = _autoattack_spec("linf", 0.04, 1.0)
ATTACKS["autoattack_l2"] = _autoattack_spec("l2", 0.5, None)


def list_attacks() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(ATTACKS)


def get_attack(name: str) -> AttackSpec:
    """The spec of attack ``name``; ValueError listing the valid names otherwise."""
    if name not in ATTACKS:
        raise ValueError(f"attack: unknown name {name!r}; expected one of {list_attacks()}")
    return ATTACKS[name]


def validate_attack_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` with the attack's defaults after checking keys, types and ranges.

    Raises:
        ValueError: unknown attack (lists valid names), unknown key (lists valid keys), or a
            value of the wrong type / out of range (names attack, key and the valid range).
    """
    spec = get_attack(name)
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise ValueError(
            f"attack {name!r}: params: expected a mapping; got {type(params).__name__}"
        )
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ValueError(
            f"attack {name!r}: unknown param(s) {unknown}; expected keys {sorted(spec.params)}"
        )
    out = dict(spec.defaults)
    for key, value in params.items():
        ok, checked = spec.params[key].check(value)
        if not ok:
            raise ValueError(
                f"attack {name!r}: param {key!r}: expected {spec.params[key].expected()}; "
                f"got {value!r}"
            )
        out[key] = checked
    return out


def run_attack(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Validate ``params`` and run attack ``name``; returns x_adv (N, C, H, W), detached.

    Args:
        name: registry key (see :func:`list_attacks`).
        model: the attacked model (for ``threat == "transfer"`` the surrogate).
        x: (N, C, H, W) images in [0, 1]; y: (N,) labels (targets if ``targeted``).
        params: attack parameters; missing keys take the declared defaults.
        generator: torch.Generator on x's device for random starts; if None and the attack
            is randomised, one is created on x's device from ``seed`` (same seed, same bytes).
    """
    spec = get_attack(name)
    p = validate_attack_params(name, params)
    if spec.uses_generator and generator is None:
        generator = make_generator(x.device, seed)
    return spec.runner(model, x, y, p, generator)


def params_json_schema(name: str) -> dict[str, Any]:
    """A JSON-schema fragment (object with properties) for attack ``name``'s params."""
    props: dict[str, Any] = {}
    for key, p in get_attack(name).params.items():
        types = {"float": ["number"], "int": ["integer"], "bool": ["boolean"], "choice": ["string"]}
        prop: dict[str, Any] = {
            "type": types[p.kind] + (["null"] if p.nullable else []),
            "default": p.default,
            "description": p.doc,
        }
        if p.kind == "choice":
            prop["enum"] = list(p.choices) + ([None] if p.nullable else [])
        if p.low is not None:
            prop["exclusiveMinimum" if p.low_open else "minimum"] = p.low
        if p.high is not None:
            prop["maximum"] = p.high
        props[key] = prop
    return {"type": "object", "additionalProperties": False, "properties": props}
