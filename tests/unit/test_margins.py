"""Subspace-constrained DeepFool margins (thesis 4.2-4.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fillrobust.data.frequency import idct2
from fillrobust.evaluate import margins as mg


def _linear(seed: int = 0, classes: int = 10, side: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, classes)).eval()


def _images(n: int = 6, side: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _analytic(model: nn.Module, x: torch.Tensor, project) -> torch.Tensor:
    """min_k |f_k - f_y| / ||P (w_k - w_y)|| for a linear model (exact margin)."""
    lin = model[1]
    logits = model(x)
    y = logits.argmax(1)
    w = lin.weight.view(lin.out_features, *x.shape[1:])
    out = []
    for i in range(x.shape[0]):
        diffs = w - w[y[i]]
        proj = project(diffs).flatten(1).norm(dim=1)
        gaps = (logits[i] - logits[i, y[i]]).abs()
        ratio = gaps / proj
        ratio[y[i]] = float("inf")
        out.append(ratio.min())
    return torch.stack(out)


def test_diagonal_blocks_counts_and_shape() -> None:
    blocks = mg.diagonal_blocks(32, 8, 2)
    assert blocks.shape == (13, 32, 32) and int(blocks[0].sum()) == 64
    assert blocks[12, 24:, 24:].all() and len(mg.diagonal_blocks(224, 16, 16)) == 14
    with pytest.raises(ValueError, match="K <= side"):
        mg.diagonal_blocks(8, 9, 1)


def _explicit_basis(mask: torch.Tensor) -> torch.Tensor:
    """Columns = IDCT of the Dirac coefficient images of one block (single channel)."""
    side = mask.shape[0]
    cols = []
    for i, j in mask.nonzero().tolist():
        dirac = torch.zeros(side, side)
        dirac[i, j] = 1.0
        cols.append(idct2(dirac).flatten())
    return torch.stack(cols, 1)


@pytest.mark.parametrize("kind", ["dct", "random"])
def test_projection_idempotent_orthogonal(kind) -> None:
    masks = mg.diagonal_blocks(8, 4, 2)
    subs = mg.DCTSubspaces(masks) if kind == "dct" else mg.RandomBasisSubspaces(masks, seed=3)
    v = torch.randn(len(subs), 3, 8, 8, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(len(subs))
    pv = subs.project(v, idx)
    torch.testing.assert_close(subs.project(pv, idx), pv, atol=1e-5, rtol=1e-5)
    inner = (pv * (v - pv)).flatten(1).sum(1)
    assert inner.abs().max() < 1e-4
    if kind == "dct":  # matches B B^T with an explicit basis of the block
        basis = _explicit_basis(masks[1])
        ref = (v[1].flatten(1) @ basis @ basis.T).view(3, 8, 8)
        torch.testing.assert_close(pv[1], ref, atol=1e-5, rtol=1e-5)


def test_random_basis_is_seeded_and_orthonormal() -> None:
    masks = mg.diagonal_blocks(8, 4, 2)
    a, b = mg.RandomBasisSubspaces(masks, 5), mg.RandomBasisSubspaces(masks, 5)
    assert torch.equal(a.basis, b.basis)
    eye = a.basis.T @ a.basis
    torch.testing.assert_close(eye, torch.eye(64), atol=1e-5, rtol=0)
    assert not torch.equal(a.basis, mg.RandomBasisSubspaces(masks, 6).basis)


@pytest.mark.parametrize("kind", ["full", "dct_block", "random_block"])
def test_linear_margins_equal_analytic(kind) -> None:
    model, x = _linear(), _images()
    full = torch.ones(1, 8, 8, dtype=torch.bool)
    block = mg.diagonal_blocks(8, 4, 2)[1:2]
    subs = {"full": mg.DCTSubspaces(full), "dct_block": mg.DCTSubspaces(block),
            "random_block": mg.RandomBasisSubspaces(block, seed=2)}[kind]
    project = lambda v: subs.project(v, torch.zeros(v.shape[0], dtype=torch.long))  # noqa: E731
    with torch.no_grad():
        expected = _analytic(model, x, project)
    exact = mg.subspace_margins(model, x, None, subs, {"overshoot": 0.0})[0]
    torch.testing.assert_close(exact, expected, rtol=0.01, atol=0)
    default = mg.subspace_margins(model, x, None, subs)[0]  # overshoot 0.02 scales by 1.02
    torch.testing.assert_close(default, 1.02 * expected, rtol=0.005, atol=0)


def test_subspace_margin_not_below_full_margin() -> None:
    model, x = _linear(seed=4), _images(seed=5)
    full = mg.subspace_margins(model, x, None, mg.DCTSubspaces(torch.ones(1, 8, 8, dtype=bool)))
    sub = mg.subspace_margins(model, x, None, mg.DCTSubspaces(mg.diagonal_blocks(8, 4, 2)))
    assert (sub >= full * (1 - 1e-4)).all()
    assert (sub > full * 1.1).any()


def test_cnn_batching_is_consistent_and_subspace_margins_larger() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 64, 10)).eval()
    x = _images(n=5, seed=6)
    subs = mg.DCTSubspaces(mg.diagonal_blocks(8, 4, 2))
    together = mg.subspace_margins(model, x, None, subs)
    one_by_one = mg.subspace_margins(model, x, None, subs, {"subspace_chunk": 1})
    single = mg.subspace_margins(model, x[2:3], None, subs)
    unreplicated = mg.subspace_margins(model, x, None, subs, {"replicate": False})
    torch.testing.assert_close(together, unreplicated, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together[:, 2:3], single, rtol=1e-4, atol=1e-6)
    # images in chunks of 2 (2 + 2 + 1), with and without given reference classes
    chunked = mg.subspace_margins(model, x, None, subs, {"image_chunk": 2, "subspace_chunk": 2})
    given = mg.subspace_margins(model, x, model(x).argmax(1), subs, {"image_chunk": 2})
    torch.testing.assert_close(together, chunked, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together, given, rtol=1e-4, atol=1e-6)
    full = mg.subspace_margins(model, x, None, mg.DCTSubspaces(torch.ones(1, 8, 8, dtype=bool)))
    assert torch.isfinite(together).all()
    assert (together.median(dim=1).values >= full.median() * 0.999).all()


@pytest.mark.parametrize("kind", ["dct", "random"])
def test_masked_basis_norms_match_the_projections(kind) -> None:
    """The Parseval path (coefficients once per point, one synthesis per sample) gives
    the margins of projecting every candidate gradient and taking its norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 64, 10)).eval()
    x = _images(n=6, seed=7)
    masks = mg.diagonal_blocks(8, 4, 2)
    subs = mg.DCTSubspaces(masks) if kind == "dct" else mg.RandomBasisSubspaces(masks, seed=3)
    fast = mg.subspace_margins(model, x, None, subs)
    generic = mg.subspace_margins(model, x, None, mg.ProjectionOnly(subs))
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-6)


def test_unreachable_subspace_gives_inf() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 3).eval()
    with torch.no_grad():
        model.weight[:, 5] = 0.0  # no class depends on coordinate 5
    basis = torch.zeros(6, 1)
    basis[5, 0] = 1.0
    x = torch.randn(3, 6)
    out = mg.subspace_margins(model, x, None, mg.ProjectorSubspaces([basis]), {"max_iter": 3})
    assert torch.isinf(out).all()
    summary = mg.margin_summary(out)
    assert summary["found"].iloc[0] == 0.0 and np.isnan(summary["median"].iloc[0])


def test_projector_subspaces_flat_inputs() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 2).eval()
    x = torch.randn(4, 6)
    basis = torch.linalg.qr(torch.randn(6, 2))[0]
    out = mg.subspace_margins(model, x, None, mg.ProjectorSubspaces([basis]), {"overshoot": 0.0})
    w = model.weight[1] - model.weight[0]
    b = model.bias[1] - model.bias[0]
    expected = (x @ w + b).abs() / (basis @ basis.T @ w).norm()
    torch.testing.assert_close(out[0], expected.detach(), rtol=0.01, atol=0)


def test_margin_summary_percentiles() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, float("inf")], [5.0, 5.0, 5.0, 5.0, 5.0]])
    table = mg.margin_summary(values, ["a", "b"])
    assert list(table["subspace"]) == ["a", "b"]
    assert table.loc[0, "median"] == pytest.approx(2.5)
    assert table.loc[0, "p95"] == pytest.approx(np.percentile([1, 2, 3, 4], 95))
    assert table.loc[0, "found"] == pytest.approx(0.8) and table.loc[1, "p5"] == 5.0


def test_bad_params_raise() -> None:
    with pytest.raises(ValueError, match="unknown margin params"):
        mg.MarginParams.from_mapping({"overshot": 0.1})
    with pytest.raises(ValueError, match="max_iter"):
        mg.MarginParams(max_iter=0)
    with pytest.raises(ValueError, match="image_chunk"):
        mg.MarginParams(image_chunk=-1)
    with pytest.raises(ValueError, match="names"):
        mg.margin_summary(torch.ones(2, 3), ["a"])
