"""The ``mixing`` knob of a strategy, checked without importing torch.

M-TLAT (Laugros et al., ECCVW 2020) and its baselines are one batch step
with these keys (``train.strategies.<name>.mixing``):

- ``alpha``: Mixup with lambda ~ Beta(alpha, alpha), one lambda per batch part
  (0 = no Mixup);
- ``attack``: ``none``, ``fgsm`` (untargeted) or ``targeted_fgsm`` (towards a
  random class per image); eps ~ U[0, ``eps_max``] drawn once per batch (l_inf,
  pixel values in [0, 1]);
- ``order``: ``mix_then_attack`` (M-TLAT: the mixed images are attacked) or
  ``attack_then_mix`` (IAT: attacked images are mixed);
- ``label`` of the adversarial part: ``ground_truth`` (FGSM-AT, TFGSM-AT, IAT's
  Mixup labels), ``targeted`` (TLAT: (1-eps)·y + eps·y_target) or ``smoothing``
  (LS-AT: label smoothing with eps);
- ``adversarial_share``: the share of each batch that is attacked (the paper's
  minibatches hold clean and adversarial samples; Algorithm 1: half and half);
- ``bn_mode``: BatchNorm mode of the FGSM forward (``eval``, ``train``, ``keep``).
"""

from __future__ import annotations

from typing import Any

ATTACKS = ("none", "fgsm", "targeted_fgsm")
ORDERS = ("mix_then_attack", "attack_then_mix")
LABELS = ("ground_truth", "targeted", "smoothing")
BN_MODES = ("eval", "train", "keep")

#: The defaults of every key (the paper: alpha 0.4 where Mixup is used, eps_max 0.025).
DEFAULTS: dict[str, Any] = {"alpha": 0.0, "attack": "none", "order": "mix_then_attack",
                            "label": "ground_truth", "eps_max": 0.025, "adversarial_share": 0.5,
                            "bn_mode": "eval"}


def resolve_mixing(spec: dict[str, Any] | None, key: str = "mixing") -> dict[str, Any]:
    """``spec`` completed with :data:`DEFAULTS`; ValueError naming ``key`` when inconsistent."""
    problems = mixing_problems(spec, key)
    if problems:
        raise ValueError("; ".join(problems))
    return {**DEFAULTS, **(spec or {})}


def mixing_problems(spec: dict[str, Any] | None, key: str = "mixing") -> list[str]:
    """What is wrong with a ``mixing`` block (empty when it is valid)."""
    if spec is None:
        return []
    if not isinstance(spec, dict):
        return [f"{key}: expected a mapping, got {type(spec).__name__}"]
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        return [f"{key}: unknown key(s) {unknown}; expected {sorted(DEFAULTS)}"]
    m = {**DEFAULTS, **spec}
    problems = [f"{key}.{name}: {m[name]!r} is not one of {list(choices)}"
                for name, choices in (("attack", ATTACKS), ("order", ORDERS), ("label", LABELS),
                                      ("bn_mode", BN_MODES)) if m[name] not in choices]
    for name, low, high in (("alpha", 0.0, 100.0), ("eps_max", 0.0, 1.0), ("adversarial_share", 0.0, 1.0)):
        value = m[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            problems.append(f"{key}.{name}: expected a number in [{low}, {high}], got {value!r}")
    if problems:
        return problems
    if m["attack"] == "none" and m["alpha"] == 0:
        problems.append(f"{key}: neither Mixup (alpha > 0) nor an attack; drop the block instead")
    if m["attack"] != "none" and not 0 < m["adversarial_share"] < 1:
        problems.append(f"{key}.adversarial_share: an attack needs clean and adversarial samples "
                        f"in each batch (0 < share < 1), got {m['adversarial_share']}")
    if m["label"] == "targeted" and m["attack"] != "targeted_fgsm":
        problems.append(f"{key}.label: 'targeted' (TLAT) needs attack 'targeted_fgsm', got {m['attack']!r}")
    if m["attack"] == "none" and m["label"] != "ground_truth":
        problems.append(f"{key}.label: {m['label']!r} labels adversarial samples; attack is 'none'")
    if m["order"] == "attack_then_mix" and (m["alpha"] == 0 or m["attack"] == "none"):
        problems.append(f"{key}.order: 'attack_then_mix' (IAT) needs alpha > 0 and an attack")
    if m["order"] == "attack_then_mix" and m["label"] != "ground_truth":
        problems.append(f"{key}.label: IAT (attack_then_mix) uses Mixup labels: expected 'ground_truth'")
    if m["order"] == "mix_then_attack" and m["alpha"] > 0 and m["attack"] == "fgsm":
        problems.append(f"{key}.attack: untargeted FGSM of a mixed image has no hard label; "
                        "use 'targeted_fgsm' (M-TLAT) or order 'attack_then_mix' (IAT)")
    return problems
