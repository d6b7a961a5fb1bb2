"""PRIME, its primitives, the augmentation registry, AugMix and Gray on tiny images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fillrobust.augment import _random
from fillrobust.augment.diffeo import (
    _mode_std_table,
    _sine_basis,
    displacement_field,
    random_diffeo,
    sample_diffeo_params,
    temperature_range,
)
from fillrobust.augment.prime import (
    PRESETS,
    PRIME,
    color_transform,
    contact_sheet,
    jsd_loss,
    resolve_prime_params,
    sample_color_params,
    sample_fir_taps,
    spectral_filter,
)
from fillrobust.augment.registry import AUGMENTATIONS, build_augmentation


def _images(n: int = 8, side: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content so that warps and filters change it measurably
    base = torch.rand((n, 3, side // 4, side // 4), generator=g)
    return torch.nn.functional.interpolate(base, size=side, mode="bilinear", align_corners=False)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- identity


def test_zero_strength_is_identity_for_each_primitive() -> None:
    x = _images()
    n = x.shape[0]
    taps = sample_fir_taps(n, 3, 0.0, _gen(), x.device)
    assert torch.allclose(spectral_filter(x, taps), x, atol=1e-6)
    beta, k0 = sample_color_params(n, 3, 500, 20, 0.0, _gen(), x.device)
    assert torch.allclose(color_transform(x, beta, k0), x, atol=1e-6)
    cut = torch.full((n,), 10, dtype=torch.long)
    assert torch.allclose(random_diffeo(x, cut, torch.zeros(n), generator=_gen()), x, atol=1e-6)


def test_prime_with_zero_strength_is_identity() -> None:
    x = _images()
    out = PRIME({"strength": 0.0})(x, _gen(1))
    assert torch.allclose(out, x, atol=1e-6)
    out = PRIME({"spectral_sigma2": 0.0, "color_sigma2": 0.0, "primitives": ["spectral", "color"]})
    assert torch.allclose(out(x, _gen(1)), x, atol=1e-6)


# ----------------------------------------------------------------------------- ranges, determinism


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_output_shape_range_and_change(preset: str) -> None:
    x = _images(side=24)
    out = PRIME({"preset": preset})(x, _gen(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - x).abs().mean() > 1e-3


def test_same_seed_same_bytes_different_seed_differs() -> None:
    x = _images()
    prime = PRIME({"preset": "cifar"})
    a, b, c = prime(x, _gen(5)), prime(x, _gen(5)), prime(x, _gen(6))
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, c)


def test_copies_of_one_image_get_different_augmentations() -> None:
    x = _images(1).repeat(6, 1, 1, 1)
    out = PRIME({"mix_a": 1.0, "mix_b": 1.0})(x, _gen(3))
    flat = out.flatten(1)
    dists = torch.cdist(flat, flat) + torch.eye(6) * 1e9
    assert dists.min() > 1e-3


def test_alone_vs_in_batch_not_equal() -> None:
    """Documented behaviour: the random streams are consumed batch-wise."""
    x = _images(4)
    prime = PRIME()
    assert not torch.allclose(prime(x[:1], _gen(9)), prime(x, _gen(9))[:1])


# ----------------------------------------------------------------------------- spatial


def test_diffeo_leaves_border_fixed_and_moves_interior() -> None:
    n, side = 16, 20
    cut, temp = sample_diffeo_params(n, side, 2, 10, 0.5, _gen(), torch.device("cpu"))
    field = displacement_field(cut, temp * 50, side, side, _gen())
    border = torch.cat(
        [field[..., 0, :], field[..., -1, :], field[..., :, 0], field[..., :, -1]], dim=-1
    )
    assert border.abs().max() == 0.0
    assert field[..., 1:-1, 1:-1].abs().amax(dim=(1, 2, 3)).min() > 0
    x = _images(n, side)
    out = random_diffeo(x, cut, temp * 50, generator=_gen())
    for edge in (out[..., 0, :] - x[..., 0, :], out[..., :, -1] - x[..., :, -1]):
        assert edge.abs().max() < 1e-5


def test_temperature_within_bounds_and_cut_in_range() -> None:
    n, side = 2000, 32
    cut, temp = sample_diffeo_params(n, side, 2, 10, 0.5, _gen(4), torch.device("cpu"))
    assert cut.min() == 2 and cut.max() == 10
    t1, t2 = temperature_range(side, cut)
    assert torch.all(temp >= t1) and torch.all(temp <= t2)
    assert torch.allclose(
        t1[cut == 5], torch.tensor(1 / (math.pi * side**2 * math.log(5))).double()
    )
    # arcsine law: the two extreme cuts are the most frequent
    counts = torch.bincount(cut - 2)
    assert counts[0] > counts[4] and counts[-1] > counts[4]


def test_diffeo_covariance_matches_direct_mode_sum() -> None:
    """Folding aliased modes keeps the exact covariance of the explicit mode sum."""
    c, h, w = 30, 10, 9
    k = torch.arange(1, c + 1, dtype=torch.float64)
    sx = torch.sin(math.pi * torch.linspace(0, 1, w, dtype=torch.float64)[:, None] * k)
    sy = torch.sin(math.pi * torch.linspace(0, 1, h, dtype=torch.float64)[:, None] * k)
    r2 = k[:, None] ** 2 + k[None] ** 2
    wgt = ((r2 <= c * c) / r2).sqrt()
    direct = torch.einsum("ij,xi,yj->yxij", wgt, sx, sy).reshape(h * w, -1)
    table = _mode_std_table(h, w, 40, "cpu")[c - 2].double()
    bx = _sine_basis(w, table.shape[0], "cpu").double()
    by = _sine_basis(h, table.shape[1], "cpu").double()
    folded = torch.einsum("ij,xi,yj->yxij", table, bx, by).reshape(h * w, -1)
    assert torch.allclose(direct @ direct.T, folded @ folded.T, atol=1e-5)


# ----------------------------------------------------------------------------- distributions


def test_fir_tap_variance_matches_uniform_strength() -> None:
    s_max = 0.5
    taps = sample_fir_taps(20000, 3, s_max, _gen(7), torch.device("cpu"))
    assert abs(taps.mean().item()) < 0.005
    assert taps.var().item() == pytest.approx(s_max**2 / 3, rel=0.05)
    # per image the taps share one strength: per-image variance ranges over [0, s_max^2]
    per_image = taps.flatten(1).var(dim=1)
    assert per_image.quantile(0.05) < 0.02 and per_image.quantile(0.95) > 0.15


def test_color_coefficients_distribution() -> None:
    s_max = math.sqrt(0.001)
    beta, k0 = sample_color_params(5000, 3, 500, 20, s_max, _gen(8), torch.device("cpu"))
    assert beta.shape == (5000, 3, 20)
    assert beta.var().item() == pytest.approx(s_max**2 / 3, rel=0.05)
    assert k0.min() == 1 and k0.max() == 481
    _, k_all = sample_color_params(10, 3, 10, None, s_max, _gen(8), torch.device("cpu"))
    assert torch.all(k_all == 1)


def test_color_transform_matches_direct_sum() -> None:
    x = _images(4)
    beta, k0 = sample_color_params(4, 3, 500, 70, 0.01, _gen(1), x.device)
    j = torch.arange(70, dtype=torch.float64)
    freqs = (k0[:, None].double() + j)[:, None, None, None, :]
    direct = x.double() + (
        beta.double()[:, :, None, None, :] * torch.sin(math.pi * freqs * x.double()[..., None])
    ).sum(-1)
    assert torch.allclose(color_transform(x, beta, k0).double(), direct.clamp(0, 1), atol=1e-4)


def test_spectral_identity_tap_is_centred() -> None:
    x = _images(2)
    taps = torch.zeros(2, 3, 3)
    taps[:, 1, 2] = 1.0  # delta + right neighbour tap -> x + shifted x
    out = spectral_filter(x * 0.5, taps)
    assert torch.allclose(out[..., :-1], (0.5 * x[..., :-1] + 0.5 * x[..., 1:]).clamp(0, 1))


def test_mixing_weights_and_beta_law() -> None:
    w = _random.dirichlet_ones(20000, 3, _gen(), torch.device("cpu"))
    assert torch.allclose(w.sum(1), torch.ones(20000))
    assert w.mean(0) == pytest.approx(torch.full((3,), 1 / 3), abs=0.01)
    p = _random.beta(5.0, 1.0, 20000, _gen(), torch.device("cpu"))
    assert p.mean().item() == pytest.approx(5 / 6, abs=0.005)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"widht": 3}, "widht"),
        ({"preset": "svhn"}, "preset"),
        ({"width": 0}, "width"),
        ({"spectral_kernel": 4}, "spectral_kernel"),
        ({"spatial_cut_min": 1}, "spatial_cut_min"),
        ({"spatial_cut_max": 1}, "spatial_cut_max"),
        ({"color_band": 600}, "color_band"),
        ({"color_sigma2": -1.0}, "color_sigma2"),
        ({"mix_a": 0}, "mix_a"),
        ({"primitives": ["spectral", "blur"]}, "primitives"),
        ({"identity": 1}, "identity"),
    ],
)
def test_validation_names_the_key(params: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        resolve_prime_params(params)


def test_registry_validation() -> None:
    with pytest.raises(ValueError, match="valid names"):
        build_augmentation("cutout", None, 16)
    with pytest.raises(ValueError, match="image_size"):
        build_augmentation("prime", None, 0)
    with pytest.raises(ValueError, match="severity"):
        build_augmentation("augmix", {"severity": 0}, 16)
    with pytest.raises(ValueError, match="'p'"):
        build_augmentation("gray", {"p": 2}, 16)
    with pytest.raises(ValueError, match="images"):
        build_augmentation("prime", None, 16)(torch.rand(3, 16, 16), _gen())
    assert set(AUGMENTATIONS) == {"none", "prime", "augmix", "gray"}


# ----------------------------------------------------------------------------- registry


def test_none_gray_augmix() -> None:
    x = _images(4)
    assert torch.equal(build_augmentation("none", None, 16)(x, _gen()), x)
    gray = build_augmentation("gray", None, 16)(x, _gen())
    assert gray.shape == x.shape
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(gray[:, 0], expected, atol=1e-6)
    augmix = build_augmentation("augmix", {"severity": 3}, 16)
    a, b = augmix(x, _gen(1)), augmix(x, _gen(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, augmix(x, _gen(2)))
    assert (a - x).abs().mean() > 1e-3


def test_prime_from_registry_matches_class() -> None:
    x = _images(4)
    aug = build_augmentation("prime", {"preset": "cifar", "depth": 2}, 16)
    assert torch.equal(aug(x, _gen(3)), PRIME({"preset": "cifar", "depth": 2})(x, _gen(3)))


# ----------------------------------------------------------------------------- JSD, contact sheet


def test_jsd_loss() -> None:
    z = torch.randn(8, 4, generator=_gen())
    assert jsd_loss(z, z, z).item() == pytest.approx(0.0, abs=1e-6)
    z2 = torch.randn(8, 4, generator=_gen(1))
    loss = jsd_loss(z, z2, z, weight=1.0)
    p, q = z.softmax(1), z2.softmax(1)
    m = (2 * p + q) / 3
    kl = lambda a: (a * (a.log() - m.log())).sum(1).mean()  # noqa: E731
    assert loss.item() == pytest.approx(((2 * kl(p) + kl(q)) / 3).item(), rel=1e-4)


def test_contact_sheet_writes_png(tmp_path) -> None:
    from PIL import Image

    imgs = (np.random.default_rng(0).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    out = contact_sheet(imgs, {"preset": "cifar"}, tmp_path / "sheet.png", seed=0, tile=32)
    with Image.open(out) as im:
        w, h = im.size
    assert h == 2 * 4 * 32 and w == 60 + 5 * 32
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet(imgs.astype(np.float32), None, tmp_path / "x.png")
