"""Property tests of the attack library on tiny random-init models (8-16 px images)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fillrobust.attacks import (
    get_attack,
    l0_norms,
    l2_norms,
    linear_solver,
    list_attacks,
    model_mode,
    params_json_schema,
    per_image_norm,
    run_attack,
    validate_attack_params,
)
from fillrobust.attacks.cw import cw_l2
from fillrobust.attacks.deepfool import deepfool, deepfool_details
from fillrobust.attacks.pgd import pgd
from fillrobust.attacks.sparsefool import sparsefool_details


class TinyNet(nn.Module):
    """Conv + BatchNorm + dropout + linear head; normalisation inside."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(6 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv((x - 0.5) / 0.25)))
        h = nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.head(self.drop(h))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TinyNet().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# ---------------------------------------------------------------- registry / validation


def test_registry_names_and_defaults(params):
    used = {threat["attack"] for threat in params["evaluate"]["threats"].values()}
    assert used <= set(list_attacks()) and len(used) >= 8  # every threat of params.yaml is registered
    assert validate_attack_params("pgd_l2", None)["steps"] == 10
    p = validate_attack_params("mifgsm", {"eps": 0.08})
    assert p["eps"] == 0.08 and p["decay"] == 1.0 and p["steps"] == 10
    assert validate_attack_params("cw_l2", {})["kappa"] == 50.0
    assert validate_attack_params("cw_l2", {})["steps"] == 40
    df = validate_attack_params("deepfool", {})
    assert (df["top_k"], df["overshoot"], df["max_iter"]) == (10, 0.02, 50)
    assert validate_attack_params("sparsefool", {})["lam"] == 3.0
    assert get_attack("mifgsm").threat == "transfer"
    assert validate_attack_params("pgd_linf", {"steps": 5.0})["steps"] == 5


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("pgd_nope", {}, "expected one of"),
        ("pgd_linf", {"eps": -0.1}, "'eps'"),
        ("pgd_linf", {"eps": 2.0}, "[0.0, 1.0]"),
        ("pgd_l2", {"steps": 0}, "'steps'"),
        ("pgd_l2", {"steps": 2.5}, "an int"),
        ("fgsm", {"epsilon": 0.1}, "unknown param"),
        ("fgsm", {"bn_mode": "frozen"}, "['eval', 'train', 'keep']"),
        ("deepfool", {"top_k": 1}, "'top_k'"),
        ("sparsefool", {"lam": 0.5}, "'lam'"),
        ("cw_l2", {"lr": 0.0}, "'lr'"),
        ("pgd_linf", {"random_start": 1}, "a bool"),
        ("pgd_linf", {"step_size": 0.0}, "'step_size'"),
    ],
)
def test_validation_errors(name, params, fragment):
    with pytest.raises(ValueError) as err:
        validate_attack_params(name, params)
    assert fragment in str(err.value)
    if name in list_attacks():
        assert repr(name) in str(err.value)


def test_unknown_attack_lists_names():
    with pytest.raises(ValueError, match="pgd_linf"):
        run_attack("bogus", TinyNet(), torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))


def test_low_level_validation(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, y, 0.1, 3, "l1")
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, 0.1, 0, "linf")
    with pytest.raises(ValueError, match="eps"):
        pgd(model, x, y, -0.1, 3, "linf")
    with pytest.raises(ValueError, match="x: expected a 4-D"):
        pgd(model, x[0], y, 0.1, 3, "linf")


def test_params_json_schema():
    s = params_json_schema("pgd_linf")
    assert s["properties"]["eps"]["maximum"] == 1.0
    assert s["properties"]["steps"]["minimum"] == 1
    assert "null" in s["properties"]["step_size"]["type"]
    assert s["properties"]["bn_mode"]["enum"] == ["eval", "train", "keep"]


# ---------------------------------------------------------------- norm / box properties


@pytest.mark.parametrize(
    ("name", "params", "p", "bound"),
    [
        ("fgsm", {"eps": 0.05}, "inf", 0.05),
        ("pgd_linf", {"eps": 0.03, "steps": 5}, "inf", 0.03),
        ("pgd_ll", {"eps": 0.04, "steps": 5}, "inf", 0.04),
        ("mifgsm", {"eps": 0.08, "steps": 5}, "inf", 0.08),
        ("pgd_l2", {"eps": 0.3, "steps": 5}, 2, 0.3),
        ("pgd_l2", {"eps": 0.3, "steps": 5, "use_best": True}, 2, 0.3),
    ],
)
def test_norm_bound_and_box(setup, name, params, p, bound):
    model, x, y = setup
    x_adv = run_attack(name, model, x, y, params, seed=3)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (per_image_norm(x_adv - x, p) <= bound * (1 + 1e-5) + 1e-6).all()
    assert (x_adv != x).any()


@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_runs_restores_mode_and_writes_no_grads(setup, name):
    model, x, y = setup
    model.train()
    model.drop.eval()  # mixed state must survive
    params = {"steps": 3} if "steps" in validate_attack_params(name, None) else {}  # iterative: keep it short
    x_adv = run_attack(name, model, x, y, params)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training and model.bn.training and not model.drop.training
    assert all(p.grad is None for p in model.parameters())


def test_seed_determinism(setup):
    model, x, y = setup
    a = run_attack("pgd_linf", model, x, y, {"eps": 0.03}, seed=5)
    b = run_attack("pgd_linf", model, x, y, {"eps": 0.03}, seed=5)
    c = run_attack("pgd_linf", model, x, y, {"eps": 0.03}, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    d = pgd(model, x, y, 0.3, 4, "l2", generator=g1)
    e = pgd(model, x, y, 0.3, 4, "l2", generator=g2)
    assert torch.equal(d, e)


def test_default_step_rule(setup):
    model, x, y = setup
    a = pgd(model, x, y, 0.04, 8, "linf", random_start=False)
    b = pgd(model, x, y, 0.04, 8, "linf", step_size=2.5 * 0.04 / 8, random_start=False)
    c = pgd(model, x, y, 0.04, 8, "linf", step_size=0.001, random_start=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- bn_mode


def test_bn_mode_eval_uses_running_stats_and_restores(setup):
    model, x, y = setup
    model.train()
    before = model.bn.running_mean.clone()
    run_attack("pgd_linf", model, x, y, {"steps": 2, "bn_mode": "eval"})
    assert torch.equal(model.bn.running_mean, before)  # eval mode never updates stats
    assert model.training
    run_attack("pgd_linf", model, x, y, {"steps": 2, "bn_mode": "train"})
    assert not torch.equal(model.bn.running_mean, before)  # batch stats were used
    model.eval()
    run_attack("pgd_linf", model, x, y, {"steps": 2, "bn_mode": "train"})
    assert not model.training and not model.bn.training


def test_bn_mode_keep_leaves_modes(setup):
    model, x, y = setup
    model.train()
    seen = []
    hook = model.bn.register_forward_hook(lambda m, i, o: seen.append(m.training))
    run_attack("fgsm", model, x, y, {"bn_mode": "keep"})
    hook.remove()
    assert seen and all(seen)
    with pytest.raises(ValueError, match="bn_mode"), model_mode(model, "nope"):
        pass


# ---------------------------------------------------------------- attack semantics


def test_pgd_is_stronger_than_clean_and_targeted_reaches_target(setup):
    model, x, y = setup
    x_adv = pgd(model, x, y, 0.3, 10, "linf", random_start=False)
    assert (pred(model, x_adv) != y).float().mean() > 0.5
    target = (y + 1) % 4
    x_t = pgd(model, x, target, 0.3, 10, "linf", targeted=True, random_start=False)
    assert (pred(model, x_t) == target).float().mean() > 0.5


def test_pgd_ll_targets_least_likely(setup):
    model, x, y = setup
    with torch.no_grad():
        ll = model(x).argmin(1)
    x_adv = run_attack("pgd_ll", model, x, y, {"eps": 0.3, "random_start": False})
    assert (pred(model, x_adv) == ll).float().mean() > 0.5


def test_use_best_never_worse_than_last(setup):
    model, x, y = setup

    def loss(xa):
        with torch.no_grad():
            return nn.functional.cross_entropy(model(xa), y, reduction="none")

    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    last = pgd(model, x, y, 0.05, 5, "linf", step_size=0.05, generator=g1)
    best = pgd(model, x, y, 0.05, 5, "linf", step_size=0.05, generator=g2, use_best=True)
    assert (loss(best) >= loss(last) - 1e-5).all()


def test_cw_returns_clean_where_failed_and_adversarial_where_succeeded(setup):
    model, x, y = setup
    x_adv = cw_l2(model, x, y, c=0.05, kappa=0.0, steps=20, lr=0.01)
    fooled = pred(model, x_adv) != y
    assert fooled.any() and (~fooled).any()
    assert torch.equal(x_adv[~fooled], x[~fooled])


def test_cw_success_requires_the_margin_to_reach_kappa(setup):
    # Carlini-Wagner: an iterate counts only once max_{i!=y} Z_i - Z_y >= kappa.
    # The old rule (any misclassified iterate) returned margins of ~0.01 here.
    model, x, y = setup
    kappa = 0.5
    x_adv = cw_l2(model, x, y, c=5.0, kappa=kappa, steps=40, lr=0.01)
    changed = (x_adv - x).flatten(1).norm(dim=1) > 0
    with torch.no_grad():
        logits = model(x_adv)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    margin = other - logits.gather(1, y[:, None]).squeeze(1)
    assert changed.any() and (~changed).any()
    assert (margin[changed] >= kappa).all()
    assert torch.equal(x_adv[~changed], x[~changed])


class Linear3(nn.Module):
    """A linear 3-class classifier: DeepFool's distance is analytic."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def test_deepfool_exact_on_linear_model():
    torch.manual_seed(0)
    model = Linear3().eval()
    x = torch.rand(32, 3, 4, 4)
    res = deepfool_details(model, x, clamp=False, overshoot=0.02)
    assert res.fooled.all()
    w, b = model.lin.weight.detach(), model.lin.bias.detach()
    f = x.flatten(1) @ w.T + b
    lab = f.argmax(1)
    dist = torch.full((32,), float("inf"))
    for k in range(3):
        d = (f[:, k] - f.gather(1, lab[:, None])[:, 0]).abs() / (w[k] - w[lab]).norm(dim=1)
        dist = torch.where(lab == k, dist, torch.minimum(dist, d))
    one = res.n_iter == 1
    assert one.float().mean() > 0.8
    expected = 1.02 * (dist + 1e-4)
    assert torch.allclose(res.norms[one], expected[one], rtol=1e-4)


def test_deepfool_box_projection_and_labels(setup):
    model, x, y = setup
    res = deepfool_details(model, x, y, top_k=10, max_iter=50)
    assert res.fooled.float().mean() > 0.9
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.equal(res.adv_label[res.fooled], pred(model, res.x_adv)[res.fooled])
    assert torch.allclose(res.norms, l2_norms(res.x_adv, x))
    wrong = (y + 1) % 4  # images already "misclassified" w.r.t. y are left unchanged
    assert torch.equal(deepfool(model, x, wrong), x)


def test_deepfool_grad_projection_stays_in_subspace(setup):
    model, x, y = setup

    def red_only(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(v)
        out[:, 0] = v[:, 0]
        return out

    x_adv = deepfool(model, x, y, clamp=False, grad_projection=red_only)
    delta = x_adv - x
    assert delta[:, 1:].abs().max() == 0 and delta[:, 0].abs().max() > 0


def _greedy_reference(x, w, p, lb, ub):
    """Algorithm 1 of the thesis, one coordinate per step (plain loop, single image)."""
    x, w = x.flatten().clone(), w.flatten().clone()
    p = p.flatten()
    coord = w.clone()
    f = torch.dot(w, x - p)
    sign_true = torch.sign(f)
    toward = -1.0 if f > 0 else 1.0
    while torch.sign(torch.dot(w, x - p)) == sign_true and coord.abs().max() > 0:
        d = coord.abs().argmax()
        resid = torch.dot(w, x - p).abs() + 1e-3
        x[d] = torch.clamp(x[d] + resid / w[d].abs() * torch.sign(w[d]) * toward, lb, ub)
        coord[d] = 0
    return x


def test_linear_solver_matches_greedy_algorithm():
    g = torch.Generator().manual_seed(0)
    n = 24
    x = torch.rand(n, 1, 4, 4, generator=g)
    w = torch.randn(n, 1, 4, 4, generator=g)
    w[0, 0, 0, :2] = 0  # zero normal entries are never moved
    scale = torch.linspace(0.05, 3.0, n).view(n, 1, 1, 1)  # near planes to out-of-reach ones
    p = x + scale * w / w.flatten(1).norm(dim=1).view(n, 1, 1, 1)
    p[1] = x[1] - 0.3 * w[1]  # plane on the other side: moves against sign(w)
    ours = linear_solver(x, w, p, torch.tensor(0.0), torch.tensor(1.0))
    for i in range(n):
        ref = _greedy_reference(x[i], w[i], p[i], 0.0, 1.0)
        assert torch.allclose(ours[i].flatten(), ref, atol=1e-5), i
    assert torch.equal(ours[0, 0, 0, :2], x[0, 0, 0, :2])


def test_sparsefool_is_sparse_fools_and_respects_bounds(setup):
    model, x, y = setup
    res = sparsefool_details(model, x, y)
    assert res.fooled.float().mean() > 0.9
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.l0_coords < 3 * 8 * 8 / 2).float().mean() > 0.5
    assert (res.l0_pixels <= res.l0_coords).all() and (res.l0_pixels <= 64).all()
    assert torch.equal(res.l0_pixels, l0_norms(res.x_adv, x, "pixel"))
    bounded = sparsefool_details(model, x, y, delta_max=0.2)
    assert (bounded.x_adv - x).abs().max() <= 0.2 + 1e-6


def test_per_image_norms():
    d = torch.zeros(2, 3, 2, 2)
    d[0, 0, 0, 0], d[0, 1, 0, 0], d[0, 2, 1, 1] = 3.0, -4.0, 1.0
    assert torch.allclose(per_image_norm(d, 2), torch.tensor([26.0**0.5, 0.0]))
    assert torch.equal(per_image_norm(d, "inf"), torch.tensor([4.0, 0.0]))
    assert torch.equal(per_image_norm(d, 1), torch.tensor([8.0, 0.0]))
    assert torch.equal(l0_norms(d, torch.zeros_like(d), "coordinate"), torch.tensor([3.0, 0.0]))
    assert torch.equal(l0_norms(d, torch.zeros_like(d), "pixel"), torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError, match="per"):
        l0_norms(d, d, "channel")
