"""Training strategies, keyed by the ids used in params.

The six strategies of ICIP 2021 are one mechanism with four knobs, read from
a strategy's params:

- ``init``: ``scratch`` (random weights) or ``source`` (a source-domain
  model, standard when ``source_eps`` is 0, robust otherwise);
- ``frozen_stages`` L: the first L ResNet stages keep their source weights
  and BatchNorm statistics (L=0 full-network, L=4 fixed-feature transfer);
- ``adversarial``: when present, each batch is replaced by its l2-PGD
  adversarial version (Madry et al.), otherwise clean cross-entropy;
- a new ``num_classes``-way head on top of the source model;
- ``augment``: a data augmentation applied to each batch (thesis ch. 5:
  ``DA-PRIME`` from scratch, ``AT-DA-PRIME`` from the robust source,
  ``AUGMIX``);
- ``mixing``: Mixup and FGSM adversarial training with soft labels (M-TLAT,
  ECCVW 2020: ``MIXUP``, ``TLAT``, ``M-TLAT``, ``IAT``, ``FGSM-AT``,
  ``TFGSM-AT``, ``LS-AT``; fillrobust.train.mixing);
- ``preprocess``: a fixed input transform (``lowpass``, ``gray``; thesis
  Tab. 5.1 ``LP``, ``GRAY``, ``AUGMIX-LP``). ``preprocess_at: train`` (default,
  as the thesis) filters the training batches only (after any augmentation)
  and the model stays plain, so it is tested on standard RGB images;
  ``preprocess_at: model`` builds it into the model, so it also applies at
  evaluation and attack time.

So ``ST`` = scratch; ``AT`` = scratch + adversarial; ``ST-FT`` = standard
source; ``ST-AFT`` = standard source + adversarial; ``AT-FT`` = robust source;
``AT-AFT`` = robust source + adversarial. Adding a strategy is one entry in
params (``train.strategies``; ids follow fillrobust.strategy_ids) plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fillrobust.io.checkpoint import load_checkpoint, read_sidecar
from fillrobust.io.integrity import check_pin
from fillrobust.job_params import model_preprocess
from fillrobust.models.preprocess import build_preprocess
from fillrobust.models.resnet import STAGES, architecture_name, build_model
from fillrobust.train.loop import StepFn, cross_entropy_step


@dataclass(frozen=True)
class Prepared:
    """A model ready to train, with its batch loss and train-mode hook."""

    model: nn.Module
    step: StepFn
    set_train_mode: Callable[[nn.Module], None] | None = None
    parent: dict[str, Any] | None = None
    #: sidecar fields the strategy sets (Top-GAP: architecture, head, k)
    sidecar: dict[str, Any] | None = None


def frozen_modules(model: nn.Module, stages: int) -> list[nn.Module]:
    """The modules of the first ``stages`` ResNet stages (stem with the first)."""
    if not 0 <= stages <= len(STAGES):
        raise ValueError(f"frozen_stages: expected 0..{len(STAGES)}, got {stages}")
    net = model.net
    return [getattr(net, name) for stage in STAGES[:stages] for name in stage]


def freeze_stages(model: nn.Module, stages: int) -> Callable[[nn.Module], None]:
    """Freeze the first ``stages`` stages; return the train-mode hook that keeps
    their BatchNorm layers in eval mode (running statistics frozen too)."""
    frozen = frozen_modules(model, stages)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)

    def set_train_mode(m: nn.Module) -> None:
        m.train()
        for module in frozen:
            module.eval()

    return set_train_mode


def adversarial_step(adv: Mapping[str, Any], seed: int,
                     observe: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> StepFn:
    """Cross-entropy on l2/l_inf PGD examples made against the current model.

    The attack runs with BatchNorm in ``adv['bn_mode']`` (default eval, like
    the robustness library's AttackerModel) and restores the train mode.
    ``eps`` is in the papers' units; the attack uses ``eps * eps_scale``.
    ``observe(x, x_adv)``, when given, sees each clean batch and its PGD
    examples before the update (the frequency study records their energy).
    """
    from fillrobust.attacks.pgd import pgd
    from fillrobust.device import full_precision

    generator = torch.Generator().manual_seed(seed + 7919)

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        gen = generator if x.device.type == "cpu" else None
        with full_precision(x):  # under a bf16 / fp16 training step the attack stays in fp32
            x_adv = pgd(model, x, y, eps=adv["eps"] * adv.get("eps_scale", 1.0), steps=adv["steps"],
                        norm=adv["norm"],
                        random_start=adv["random_start"], generator=gen, bn_mode=adv["bn_mode"],
                        step_factor=adv["step_factor"])
        if observe is not None:
            observe(x, x_adv)
        return cross_entropy_step(model, x_adv, y)

    return step


def preprocessed_step(pre: nn.Module, base: StepFn) -> StepFn:
    """``base`` on the filtered batch: train-only preprocessing (``preprocess_at: train``)."""

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        with torch.no_grad():
            x = pre(x)
        return base(model, x, y)

    return step


def augmented_step(augment: dict[str, Any], base: StepFn, seed: int, pre: nn.Module | None = None) -> StepFn:
    """Augment each batch (PRIME, AugMix, gray; thesis ch. 5) before ``base``.

    Randomness comes from a generator seeded by ``seed``, one draw per image.
    ``pre``: a train-only preprocessing applied after the augmentation (AugMix+LP).
    """
    from fillrobust.augment.registry import build_augmentation

    aug = build_augmentation(augment["name"], augment.get("params"))
    if pre is not None:
        raw = aug
        aug = lambda x, gen: pre(raw(x, gen))  # noqa: E731
    generator = torch.Generator().manual_seed(seed + 104729)
    if augment.get("jsd_weight"):
        if base is not cross_entropy_step:
            raise ValueError("augment.jsd_weight: the JSD consistency loss needs a plain cross-entropy step "
                             "(no adversarial training)")
        return _jsd_step(aug, generator, float(augment["jsd_weight"]), pre)

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        gen = generator if x.device.type == "cpu" else None
        return base(model, aug(x, gen), y)

    return step


def _jsd_step(aug: Callable, generator: torch.Generator, weight: float, pre: nn.Module | None = None) -> StepFn:
    """AugMix / PRIME training with the JSD consistency loss (thesis 5.3.2).

    Two augmented views per image; one forward over [clean, view 1, view 2]
    (BatchNorm sees all three, as in the reference code); loss = CE(clean) +
    ``weight`` * JSD(clean, view 1, view 2).
    """
    from fillrobust.augment.prime import jsd_loss

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        gen = generator if x.device.type == "cpu" else None
        x0 = x if pre is None else pre(x)  # the clean view is filtered too (train-only preprocessing)
        logits = model(torch.cat([x0, aug(x, gen), aug(x, gen)]))
        clean, view1, view2 = logits.chunk(3)
        return F.cross_entropy(clean, y) + jsd_loss(clean, view1, view2, weight), clean

    return step


def mixed_step(strategy: str, params: dict[str, Any], num_classes: int, seed: int) -> StepFn:
    """The ``mixing`` step (Mixup / TLAT / M-TLAT / IAT / FGSM-AT family, fillrobust.train.mixing).

    It replaces the batch loss, so it cannot be combined with ``adversarial`` (PGD)
    or the JSD loss; a plain ``augment`` still runs before it.
    """
    from fillrobust.train.mixing import mixing_step

    if params.get("adversarial"):
        raise ValueError(f"strategy {strategy}: 'mixing' and 'adversarial' both set the batch loss; keep one")
    if (params.get("augment") or {}).get("jsd_weight"):
        raise ValueError(f"strategy {strategy}: 'mixing' cannot be combined with augment.jsd_weight")
    try:
        return mixing_step(params["mixing"], num_classes, seed)
    except ValueError as err:
        raise ValueError(f"strategy {strategy}: {err}") from err


def load_source(weights: str, num_classes: int, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """A source checkpoint with its head replaced by a fresh ``num_classes``-way one."""
    info = read_sidecar(weights)
    model = build_model(info["architecture"], len(info["classes"]))
    load_checkpoint(model, weights)
    torch.manual_seed(seed)
    model.net.fc = nn.Linear(model.net.fc.in_features, num_classes)
    parent = {"weights": str(weights), "sha256": info["weights_sha256"],
              "strategy": info.get("strategy"), "eps": info.get("eps", 0.0)}
    return model, parent


def topgap_step(lam: float) -> StepFn:
    """Top-GAP training (paper eq. 3): CE on the Top-GAP-pooled CAM + ``lam`` * ||CAM||_1."""
    from fillrobust.models.topgap import topgap_loss

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        cam, logits = model.cam_and_logits(x)
        return topgap_loss(cam, logits, y, lam), logits

    return step


def prepare_topgap(strategy: str, params: dict[str, Any], num_classes: int, seed: int,
                   source_weights: str | None = None) -> Prepared:
    """The ``topgap`` strategies (TOPGAP and its k / ablation members, models/topgap.py).

    Architecture keys of ``params['topgap']`` build the model; ``l1`` and
    ``lambda`` set the loss; the backbone starts from ``weights`` (a local
    file), from the source checkpoint with ``init: source``, or from scratch.
    A batch ``augment`` applies as for any strategy.
    """
    from fillrobust.models.topgap import TopGapConfig, build_topgap, describe

    for key in ("adversarial", "mixing"):
        if params.get(key):
            raise ValueError(f"strategy {strategy}: 'topgap' sets the batch loss; it cannot be combined "
                             f"with '{key}'")
    if int(params.get("frozen_stages", 0)) or params.get("preprocess", "none") != "none":
        raise ValueError(f"strategy {strategy}: 'topgap' trains every stage on plain images "
                         "(frozen_stages 0, preprocess none)")
    spec = params["topgap"]
    if spec.get("weights"):  # an outside file, pinned like source.imports (our checkpoints carry sidecars)
        check_pin(spec["weights"], spec.get("weights_sha256"), "Top-GAP backbone weights",
                  f"train.strategies.{strategy}.topgap.weights_sha256")
    weights = spec.get("weights") or (source_weights if params.get("init") == "source" else None)
    if params.get("init") == "source" and not weights:
        raise ValueError(f"strategy {strategy}: init 'source' needs a source checkpoint")
    try:
        config = TopGapConfig.from_params(spec)
    except ValueError as err:
        raise ValueError(f"train.strategies.{strategy}: {err}") from err
    torch.manual_seed(seed)
    model = build_topgap(config, num_classes, weights)
    step = topgap_step(float(spec.get("lambda", 1.0)) if spec.get("l1", True) else 0.0)
    if params.get("augment"):
        step = augmented_step(params["augment"], step, seed)
    parent = {"weights": str(weights)} if weights else None
    return Prepared(model, step, None, parent, describe(model))


def prepare(strategy: str, params: dict[str, Any], num_classes: int, seed: int = 0,
            source_weights: str | None = None) -> Prepared:
    """Build the model and the step function of a strategy from its params.

    ``params`` are resolved (no ``"selected"`` left); ``source_weights`` is the
    source checkpoint when ``params['init'] == 'source'``.
    """
    if params.get("topgap"):
        return prepare_topgap(strategy, params, num_classes, seed, source_weights)
    init = params.get("init", "scratch")
    preprocess = model_preprocess(params)  # "none" unless preprocess_at: model
    if init == "scratch":
        arch = architecture_name(params.get("arch", "resnet18"), preprocess)
        model, parent = build_model(arch, num_classes), None
    elif init == "source":
        if not source_weights:
            raise ValueError(f"strategy {strategy}: init 'source' needs a source checkpoint")
        model, parent = load_source(source_weights, num_classes, seed)
        model.preprocess = build_preprocess(preprocess)  # parameter-free: the weights are unchanged
    else:
        raise ValueError(f"strategy {strategy}: init must be 'scratch' or 'source', got {init!r}")
    hook = freeze_stages(model, int(params.get("frozen_stages", 0)))
    adv = params.get("adversarial")
    step = adversarial_step(adv, seed) if adv else cross_entropy_step
    if params.get("mixing"):
        step = mixed_step(strategy, params, num_classes, seed)
    # Train-only filter (preprocess_at: train): the batches are filtered, the model stays plain.
    train_only = params.get("preprocess", "none") if preprocess == "none" else "none"
    pre = None if train_only == "none" else build_preprocess(train_only)
    if params.get("augment"):
        step = augmented_step(params["augment"], step, seed, pre)
    elif pre is not None:
        step = preprocessed_step(pre, step)
    return Prepared(model, step, hook, parent)
