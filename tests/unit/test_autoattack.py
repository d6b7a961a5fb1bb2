"""AutoAttack through torchattacks: fixed seed, the four components, the registry entries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fillrobust.attacks.autoattack import autoattack, components, num_classes_of
from fillrobust.attacks.norms import per_image_norm
from fillrobust.attacks.registry import run_attack, validate_attack_params


def _model_and_batch(classes: int = 4):
    """A small trained-for-a-few-steps CNN (so some images resist the early components)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(32, classes))
    g = torch.Generator().manual_seed(1)
    y = torch.arange(8) % classes
    x = (0.5 + 0.1 * torch.randn(8, 3, 8, 8, generator=g) + 0.3 * (y.view(-1, 1, 1, 1).float() / classes - 0.4))
    x = x.clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, x, y


def _one_by_one(model, x, y, eps, norm, seed, square_queries=5000):
    """The standard ensemble by hand: each component on the images not yet fooled."""
    final, fails = x.clone(), torch.arange(len(x))
    for attack in components(model, norm, eps, num_classes_of(model, x), seed, square_queries):
        adv = attack(x[fails], y[fails])
        with torch.no_grad():
            wrong = model(adv).argmax(1) != y[fails]
        final[fails[wrong]] = adv[wrong]
        fails = fails[~wrong]
        if len(fails) == 0:
            break
    return final


def test_autoattack_is_deterministic_for_a_fixed_seed():
    model, x, y = _model_and_batch()
    norm, eps = "linf", 0.03
    torch.manual_seed(123)
    first = autoattack(model, x, y, eps, norm, seed=7)
    after = torch.rand(1)
    torch.manual_seed(123)
    second = autoattack(model, x, y, eps, norm, seed=7)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(1), after)  # the global stream is restored: the caller's draws are unaffected
    assert per_image_norm(first - x, "inf").max() <= eps * (1 + 1e-4) + 1e-6
    assert first.min() >= 0 and first.max() <= 1


# linf 0.03 leaves images for every component (Square included); l2 1.0 is settled early (cheaper).
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.03), ("l2", 1.0)])
def test_autoattack_matches_its_four_components_run_one_by_one(norm, eps):
    model, x, y = _model_and_batch()
    ensemble = autoattack(model, x, y, eps, norm, seed=0)
    by_hand = _one_by_one(model, x, y, eps, norm, seed=0)
    assert torch.allclose(ensemble, by_hand, atol=1e-6)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(ensemble).argmax(1) == y).float().mean()
        apgd = (model(components(model, norm, eps, 4, 0)[0](x, y)).argmax(1) == y).float().mean()
    assert robust <= apgd <= clean  # the ensemble is at least as strong as its first component
    assert robust < clean


def test_registry_entries_validate_and_run():
    model, x, y = _model_and_batch()
    assert validate_attack_params("autoattack_linf", {})["seed"] == 0
    with pytest.raises(ValueError, match="'seed'"):
        validate_attack_params("autoattack_l2", {"seed": -1})
    with pytest.raises(ValueError, match="'eps'"):
        validate_attack_params("autoattack_linf", {"eps": 0.0})
    a = run_attack("autoattack_l2", model, x, y, {"eps": 2.0, "seed": 3})  # large: fooled by APGD-CE alone
    b = autoattack(model, x, y, 2.0, "l2", seed=3)
    assert torch.equal(a, b)
    assert num_classes_of(model, x) == 4


def test_channels_last_model_and_inputs_keep_their_layout():
    """The pipeline's layout (channels_last weights and NHWC-strided batches) works with FAB."""
    model, x, y = _model_and_batch()
    reference = autoattack(model, x, y, 0.03, "linf", seed=1)  # leaves images for FAB-T and Square
    model = model.to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    adv = autoattack(model, x_last, y, 0.03, "linf", seed=1)
    assert torch.allclose(adv, reference, atol=1e-5)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_smaller_square_budget_runs_the_same_components():
    """square_queries < 5000 (the CPU default) is the same ensemble with a cheaper Square."""
    model, x, y = _model_and_batch()
    cheap = autoattack(model, x, y, 0.03, "linf", seed=0, square_queries=50)
    assert torch.allclose(cheap, _one_by_one(model, x, y, 0.03, "linf", seed=0, square_queries=50), atol=1e-6)
    assert per_image_norm(cheap - x, "inf").max() <= 0.03 * (1 + 1e-4) + 1e-6
    assert validate_attack_params("autoattack_linf", {"square_queries": 50})["square_queries"] == 50
