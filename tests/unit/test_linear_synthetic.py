"""Synthetic T1/T2 data, their models and the margin driver (thesis 4.2.2, 4.4.1, App. A.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fillrobust.data.linear_synthetic import make_t1, make_t2, random_rotation
from fillrobust.evaluate import synthetic_margins as sm
from fillrobust.models.mlp import MLP, LogisticRegression, build_synthetic_model


def test_rotation_is_orthonormal_with_unit_determinant() -> None:
    u = random_rotation(20, seed=3)
    torch.testing.assert_close(u.T @ u, torch.eye(20), atol=1e-5, rtol=0)
    assert torch.linalg.det(u.double()).item() == pytest.approx(1.0, abs=1e-6)


def test_t1_shapes_labels_signal_and_noise() -> None:
    data = make_t1(4000, eps=5.0, sigma=2.0, dim=30, seed=1)
    assert data.x.shape == (4000, 30) and data.x.dtype == torch.float32
    assert set(data.y.tolist()) == {-1, 1} and abs(data.y.float().mean()) < 0.1
    z = data.x @ data.basis  # coordinates in the U basis
    torch.testing.assert_close(z[:, 0], 5.0 * data.y.float(), atol=1e-4, rtol=0)
    assert z[:, 1:].std().item() == pytest.approx(2.0, rel=0.05)
    assert z[:, 1:].mean().abs().item() < 0.05
    half = make_t1(10, eps=5.0, sigma=1.0, dim=30, seed=1, signal_scale=0.5)
    torch.testing.assert_close((half.x @ half.basis)[:, 0], 2.5 * half.y.float(), atol=1e-4,
                               rtol=0)
    assert torch.equal(data.targets, (data.y + 1) // 2)


def test_t2_alternating_pattern_along_u2() -> None:
    data = make_t2(2000, rho=20.0, eps=0.3, sigma=1.0, K=3, dim=12, seed=2)
    z = data.x @ data.basis
    torch.testing.assert_close(z[:, 0], 0.3 * data.y.float(), atol=1e-4, rtol=0)
    k = z[:, 1] / 20.0
    pos, neg = k[data.y > 0], k[data.y < 0]
    torch.testing.assert_close(pos, pos.round(), atol=1e-4, rtol=0)
    torch.testing.assert_close(neg - 0.5, (neg - 0.5).round(), atol=1e-4, rtol=0)
    assert set(pos.round().int().tolist()) == {-3, -2, -1, 0, 1, 2}
    assert z[:, 2:].std().item() == pytest.approx(1.0, rel=0.05)


def test_generators_deterministic_by_seed_and_share_basis() -> None:
    a, b = make_t1(50, 5.0, 1.0, 10, seed=7), make_t1(50, 5.0, 1.0, 10, seed=7)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = make_t1(50, 5.0, 1.0, 10, seed=8)
    assert not torch.equal(a.x, c.x)
    test = make_t1(20, 5.0, 1.0, 10, seed=99, basis=a.basis)
    assert torch.equal(test.basis, a.basis)


def test_bad_generator_input_raises() -> None:
    with pytest.raises(ValueError, match="sigma"):
        make_t1(10, 1.0, -1.0)
    with pytest.raises(ValueError, match="K must be"):
        make_t2(10, 20.0, 1.0, 1.0, K=0)
    with pytest.raises(ValueError, match="dim"):
        make_t2(10, 20.0, 1.0, 1.0, K=1, dim=2)


def test_models_structure_and_logistic_loss() -> None:
    mlp = MLP(100)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert len(linears) == 11 and all(m.out_features == 500 for m in linears[:-1])
    torch.manual_seed(0)
    logreg, x = LogisticRegression(5), torch.randn(8, 5)
    logits = logreg(x)
    z = logreg.linear(x).squeeze(1)
    target = torch.randint(0, 2, (8,))
    ce = nn.functional.cross_entropy(logits, target)
    bce = nn.functional.binary_cross_entropy_with_logits(z, target.float())
    assert ce.item() == pytest.approx(bce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="valid"):
        build_synthetic_model("svm", 5)
    with pytest.raises(ValueError, match="init"):
        MLP(5, init="xavier")


def test_t1_margin_table_small_logreg() -> None:
    cfg = sm.SyntheticConfig(model="logreg", n_train=500, n_test=100, dim=20, epochs=15)
    table = sm.t1_margin_table(cfg).set_index("subspace")
    assert list(table.index) == list(sm.T1_SUBSPACES)
    assert table["train_acc"].iloc[0] == 1.0 and table["found"].min() == 1.0
    # classes sit at +-2.5 along u1: the boundary is near 0, invariance elsewhere
    assert table.loc["u1", "median"] == pytest.approx(2.55, rel=0.15)
    assert table.loc["S_orth", "median"] > 3 * table.loc["u1", "median"]
    assert table.loc["u1", "paper_median"] == 2.49
    # the exact margin along u1: DeepFool on a linear model is it times (1 + overshoot)
    assert table.loc["u1", "median"] == pytest.approx(1.02 * table.loc["u1", "exact_median"], rel=1e-3)
    assert table.loc[["S_orth", "S_rand"], "exact_median"].isna().all()


class _Curved(nn.Module):
    """Two classes split where x0 = 1 or x0 = -1 (class 1 between): a curved-enough boundary."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = 1 - x[:, 0] ** 2
        return torch.stack([-inside, inside], dim=1)


def test_line_margins_find_the_first_flip_on_either_side() -> None:
    x = torch.tensor([[0.0, 5.0], [0.7, 0.0], [-0.9, 1.0]])
    got = sm.line_margins(_Curved(), x, torch.tensor([2.0, 0.0]), max_dist=4.0)
    assert torch.allclose(got, torch.tensor([1.0, 0.3, 0.1]), atol=1e-4)
    # no flip along x1 (the class does not depend on it): inf
    assert torch.isinf(sm.line_margins(_Curved(), x, torch.tensor([0.0, 1.0]), max_dist=4.0)).all()


def test_t2_sweep_small_mlp_columns() -> None:
    cfg = sm.SyntheticConfig(n_train=200, n_test=30, dim=10, epochs=2, width=16, depth=2)
    table = sm.t2_eps_sweep([0.0, 1.0], cfg)
    assert list(table["eps"]) == [0.0, 1.0]
    assert {"median_u1", "median_u2", "exact_median_u1", "exact_median_u2", "train_acc",
            "test_acc"} <= set(table.columns)
    assert table[["median_u2", "found_u2"]].notna().all().all()


def test_training_logs_progress_with_eta_and_the_same_result_without_it() -> None:
    cfg = sm.SyntheticConfig(n_train=200, n_test=30, dim=10, epochs=40, width=16, depth=2)
    data = make_t1(cfg.n_train, cfg.eps, cfg.sigma, cfg.dim, seed=0)
    lines: list[str] = []
    models = []
    for log in (lines.append, None):
        torch.manual_seed(0)
        models.append(build_synthetic_model("mlp", cfg.dim, cfg.width, cfg.depth, cfg.init))
        sm.train_classifier(models[-1], data, cfg, log=log)
    assert len(lines) == 20 and "[2/40 epochs" in lines[0] and "[40/40 epochs" in lines[-1]
    assert all("ETA" in line and "loss=" in line for line in lines) and lines[-1].endswith("ETA 0:00]")
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="subspace_dim"):
        sm.SyntheticConfig(subspace_dim=100)
    with pytest.raises(ValueError, match="momentum"):
        sm.SyntheticConfig(momentum=1.5)
