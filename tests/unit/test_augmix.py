"""Batched AugMix is torchvision's v2.AugMix applied image by image, byte for byte."""

from __future__ import annotations

import pytest
import torch

from fillrobust.augment.augmix import AugMix, apply_op, reference_augmix


def _images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand((n, 3, side // 4, side // 4), generator=g)
    return torch.nn.functional.interpolate(base, size=side, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("params", [
    {},                                                     # the default: partial ops, random depth
    {"severity": 10, "width": 2, "depth": 3, "alpha": 0.5},
    {"all_ops": True, "severity": 5},                       # brightness, colour, contrast, sharpness too
])
@pytest.mark.parametrize("side", [32, 17])
def test_batched_augmix_matches_torchvision_per_image(params: dict, side: int) -> None:
    x = _images(24, side, seed=side)
    ours = AugMix(params)(x, torch.Generator().manual_seed(7))
    ref = reference_augmix(x, params, torch.Generator().manual_seed(7))
    assert torch.equal(ours, ref)
    assert (ours - x).abs().mean() > 1e-3          # it augments
    # Each image has its own draws: the same image twice in a batch is augmented differently.
    twice = AugMix(params)(x[:1].repeat(8, 1, 1, 1), torch.Generator().manual_seed(1))
    assert any(not torch.equal(twice[0], twice[i]) for i in range(1, 8))


def test_augmix_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    before = torch.rand(4)
    torch.manual_seed(3)
    AugMix()(_images(4, 16), torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(4), before)


def test_apply_op_rejects_an_unknown_operation() -> None:
    with pytest.raises(ValueError, match="unknown operation 'Invert'"):
        apply_op(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "Invert", 0.0)
