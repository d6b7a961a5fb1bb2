"""PRIME sampling properties not covered by test_prime.py: Alg. 3's uniform primitive draw,
no cross-talk between the images of a batch, and the diffeomorphism's temperature bound T2."""

from __future__ import annotations

import torch

from fillrobust.augment.diffeo import displacement_field, temperature_range
from fillrobust.augment.prime import PRIME


def _images(n: int, side: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand((n, 3, side // 4, side // 4), generator=g)
    return torch.nn.functional.interpolate(base, size=side, mode="bilinear", align_corners=False)


def test_each_step_draws_uniformly_from_id_and_the_primitives(monkeypatch):
    """Alg. 3: every (image, chain) row draws uniformly from {Id, spectral, spatial, colour} per step."""
    counts = {"spectral": 0, "spatial": 0, "color": 0}
    prime = PRIME({"width": 3, "depth": 2})

    def counting(name, x, generator):
        counts[name] += x.shape[0]
        return x

    monkeypatch.setattr(prime, "apply_primitive", counting)
    n = 2000
    prime(torch.rand(n, 3, 4, 4), torch.Generator().manual_seed(0))
    rows = n * 3 * 2  # images x width x depth
    for name, count in counts.items():
        assert abs(count / rows - 0.25) < 0.01, (name, count / rows)  # Id takes the remaining quarter
    counts = dict.fromkeys(counts, 0)
    prime = PRIME({"width": 3, "depth": 1, "identity": False, "primitives": ["spatial", "color"]})
    monkeypatch.setattr(prime, "apply_primitive", counting)
    prime(torch.rand(n, 3, 4, 4), torch.Generator().manual_seed(1))
    assert counts["spectral"] == 0 and abs(counts["spatial"] / (n * 3) - 0.5) < 0.02


def test_no_cross_talk_between_images():
    """Image i's augmentation depends on image i and the random stream only, not on its neighbours."""
    x = _images(8)
    other = x.clone()
    other[0] = 1.0 - other[0]
    prime = PRIME({"preset": "cifar"})
    a, b = prime(x, torch.Generator().manual_seed(3)), prime(other, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[1:], b[1:], atol=1e-6, rtol=0)
    assert not torch.allclose(a[0], b[0])


def test_diffeo_at_the_upper_temperature_bound_is_almost_surely_bijective():
    """At T2 = 4/(pi^3 c^2 ln c) the map r -> r - tau(r) keeps a positive Jacobian almost everywhere."""
    side, n = 32, 64
    for c in (3, 10):
        cut = torch.full((n,), c, dtype=torch.long)
        _, t2 = temperature_range(side, cut)
        field = displacement_field(cut, t2, side, side, torch.Generator().manual_seed(c)).double()
        ux, uy = field[:, 0], field[:, 1]
        # central differences in pixels of the displacement (pixel units on both axes)
        dux_dx, dux_dy = torch.gradient(ux, dim=(2, 1))
        duy_dx, duy_dy = torch.gradient(uy, dim=(2, 1))
        det = (1 - dux_dx) * (1 - duy_dy) - dux_dy * duy_dx
        assert (det > 0).double().mean() > 0.99, (c, (det <= 0).double().mean())
        # and it does move pixels: the typical displacement exceeds the T1 scale (half a pixel)
        assert field.abs().amax(dim=(1, 2, 3)).median() > 0.5


def test_strength_scales_the_temperature_quadratically(monkeypatch):
    """Fig. 5.4's factor alpha multiplies the std maxima and the temperature by alpha^2."""
    seen = []
    import fillrobust.augment.prime as module

    def record(x, cut, temperature, generator=None, max_cut=None):
        seen.append(temperature.clone())
        return x

    monkeypatch.setattr(module, "random_diffeo", record)
    for alpha in (1.0, 0.5):
        prime = PRIME({"strength": alpha, "primitives": ["spatial"], "identity": False, "depth": 1, "width": 1})
        prime(torch.rand(16, 3, 8, 8), torch.Generator().manual_seed(0))
        assert prime.spectral_max == alpha * 0.1 and abs(prime.color_max - alpha * 0.001 ** 0.5) < 1e-12
    torch.testing.assert_close(seen[1], seen[0] * 0.25)
