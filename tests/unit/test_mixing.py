"""M-TLAT and its baselines (fillrobust.train.mixing): labels, mixing, draws, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fillrobust.config import ConfigError, load_params, strategy_params, validate
from fillrobust.train import mixing
from fillrobust.train.mixing_spec import mixing_problems, resolve_mixing
from fillrobust.train.schedule import build_optimizer, build_schedule
from fillrobust.train.strategies import prepare

STRATEGIES = ["MIXUP", "TLAT", "M-TLAT", "IAT", "FGSM-AT", "TFGSM-AT", "LS-AT"]


@pytest.fixture(scope="module")
def config(root):
    return validate(load_params(root / "params.yaml"))


def _net(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes))


def _batch(n: int = 32, classes: int = 4, side: int = 8):
    """A learnable batch: each class has its own mean colour."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = 0.5 + 0.3 * torch.randn(n, 3, side, side, generator=g) * 0.3
    x[:, 0] += 0.1 * (y.view(-1, 1, 1).float() - 1.5)
    return x.clamp(0, 1), y


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.025])
def test_targeted_label_sums_to_one_and_puts_eps_on_the_target(eps):
    y = mixing.one_hot(torch.tensor([0, 1, 2]), 4)
    target = mixing.one_hot(torch.tensor([3, 1, 0]), 4)
    label = mixing.targeted_label(y, target, eps)
    assert torch.allclose(label.sum(1), torch.ones(3))
    assert label[0, 3] == pytest.approx(eps) and label[0, 0] == pytest.approx(1 - eps)
    assert label[1, 1] == pytest.approx(1.0)  # target == ground truth: all mass on it
    assert label[2, 0] == pytest.approx(eps) and label[2, 2] == pytest.approx(1 - eps)


def test_smoothed_label_sums_to_one():
    label = mixing.smoothed_label(mixing.one_hot(torch.tensor([2, 0]), 4), 0.02)
    assert torch.allclose(label.sum(1), torch.ones(2))
    assert label[0, 2] == pytest.approx(0.98 + 0.005) and label[0, 1] == pytest.approx(0.005)


def test_mixed_inputs_are_convex_combinations_with_the_labels_lambda():
    x, y = _batch(8)
    y1 = mixing.one_hot(y, 4)
    perm = torch.tensor([3, 2, 1, 0, 7, 6, 5, 4])
    xm, ym = mixing.mix(x, y1, 0.3, perm)
    for i in range(8):
        assert torch.allclose(xm[i], 0.3 * x[i] + 0.7 * x[perm[i]])
        assert torch.allclose(ym[i], 0.3 * y1[i] + 0.7 * y1[perm[i]])
    assert torch.allclose(ym.sum(1), torch.ones(8))


def test_mtlat_step_mixes_attacks_and_labels_as_algorithm_1():
    """The M-TLAT part's label is (1-eps) y_mix + eps y_target with the same lambda as its input."""
    model = _net()
    x, y = _batch(16)
    m = resolve_mixing({"alpha": 0.4, "attack": "targeted_fgsm", "label": "targeted", "eps_max": 0.025})
    draws = mixing.Draws(5)
    xa, ya, lam, perm = mixing._adversarial_part(model, x, y, mixing.one_hot(y, 4), m, draws, 4)
    replay = mixing.Draws(5)  # the same stream: eps, targets, lambda, pairing, in that order
    eps = replay.eps(0.025)
    target = replay.targets(16, 4, x.device)
    assert replay.lam(0.4) == lam and torch.equal(replay.perm(16, x.device), perm)
    x_mix = lam * x + (1 - lam) * x[perm]
    assert 0 <= eps <= 0.025
    assert (xa - x_mix).abs().max() <= eps + 1e-6  # one FGSM step around the mixed image
    y_mix = lam * mixing.one_hot(y, 4) + (1 - lam) * mixing.one_hot(y[perm], 4)
    assert torch.allclose(ya, (1 - eps) * y_mix + eps * mixing.one_hot(target, 4))
    assert torch.allclose(ya.sum(1), torch.ones(16))


def test_tlat_eps_is_drawn_per_batch_in_range():
    draws = mixing.Draws(0)
    values = [draws.eps(0.025) for _ in range(200)]
    assert all(0 <= v <= 0.025 for v in values)
    assert len(set(values)) == 200 and max(values) > 0.02 and min(values) < 0.005
    # one eps per batch: every adversarial image of a batch moves by the same l_inf step
    model = _net()
    x, y = _batch(16)
    m = resolve_mixing({"attack": "targeted_fgsm", "label": "targeted"})
    xa, ya, _, _ = mixing._adversarial_part(model, x, y, mixing.one_hot(y, 4), m, mixing.Draws(1), 4)
    moved = (xa - x).abs().flatten(1)
    interior = (x.flatten(1) > 0.05) & (x.flatten(1) < 0.95)
    steps = moved[interior]
    assert steps.max() - steps[steps > 0].min() < 1e-6  # a single eps for the batch
    eps = float(steps.max())
    assert 0 < eps <= 0.025
    # the label's target mass is the same eps as the images' step (TLAT: eps in both)
    second = ya.topk(2, dim=1).values[:, 1]
    off = second > 0  # rows whose random target differs from the ground truth
    assert off.any() and torch.allclose(second[off], torch.full_like(second[off], eps), atol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_loss_decreases_on_tiny_data(config, strategy):
    params = strategy_params(config, strategy, "S1")
    step = mixing.mixing_step(params["mixing"], 4, seed=0)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = _batch(32)
    model.train()
    losses = []
    for _ in range(40):
        loss, logits = step(model, x, y)
        assert logits.shape == (32, 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_train_through_prepare_with_the_same_bytes(config, strategy):
    """The one mechanism: prepare() builds the step; same seed, same update."""
    params = strategy_params(config, strategy, "S1")
    x, y = _batch(8, side=32)

    def one_update() -> torch.Tensor:
        torch.manual_seed(0)
        prepared = prepare(strategy, params, 4, seed=3)
        prepared.model.train()
        loss, _ = prepared.step(prepared.model, x, y)
        loss.backward()
        return loss.detach()

    assert torch.equal(one_update(), one_update())


def test_inconsistent_mixing_blocks_are_rejected_naming_the_key(config):
    assert mixing_problems({"alpha": 0.4, "attack": "fgsm"}, "k")  # untargeted FGSM of a mixed image
    assert any("k.label" in p for p in mixing_problems({"attack": "fgsm", "label": "targeted"}, "k"))
    assert any("k.order" in p for p in mixing_problems({"attack": "fgsm", "order": "attack_then_mix"}, "k"))
    assert mixing_problems({"alphaa": 1}, "k")[0].startswith("k: unknown key")
    broken = {**config, "train": {**config["train"], "strategies": {
        **config["train"]["strategies"], "TLAT": {"init": "scratch", "lr": 0.05,
                                                "mixing": {"attack": "fgsm", "label": "targeted"}}}}}
    with pytest.raises(ConfigError, match="train.strategies.TLAT.mixing.label"):
        validate(broken)


def test_step_schedule_and_adam():
    """Paper optimiser: Adam; lr /10 at 1/3, 2/3 and 8/9 of the epochs (30, 60, 80 of 90)."""
    p = [nn.Parameter(torch.zeros(1))]
    hyper = {"optimizer": "adam", "lr": 0.002, "weight_decay": 1e-4, "epochs": 90, "schedule": "step",
             "lr_milestones": [1 / 3, 2 / 3, 8 / 9], "lr_gamma": 0.1}
    opt = build_optimizer(p, hyper)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 1e-4
    sched = build_schedule(opt, hyper, steps_per_epoch=2)
    lrs = []
    for _ in range(180):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[59] == pytest.approx(0.002) and lrs[60] == pytest.approx(0.0002)
    assert lrs[119] == pytest.approx(0.0002) and lrs[120] == pytest.approx(0.00002)
    assert lrs[159] == pytest.approx(0.00002) and lrs[160] == pytest.approx(0.000002)
    default = build_optimizer(p, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0})
    assert isinstance(default, torch.optim.SGD)  # the default stays SGD (existing models unchanged)
