"""DCT utilities and frequency-derived datasets (thesis 4.3, App. A)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.fft
import torch

from fillrobust.data import frequency as fq
from fillrobust.data import store


def test_dct2_matches_scipy_and_inverts() -> None:
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    ref = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(fq.dct2(x).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(fq.idct2(fq.dct2(x)).numpy(), x.numpy(), atol=1e-5)
    assert fq.dct2(x).dtype == torch.float32


def test_numpy_dct_matches_scipy_on_nhwc() -> None:
    x = np.random.default_rng(0).random((2, 8, 10, 3))
    ref = scipy.fft.dctn(x, axes=(1, 2), norm="ortho")
    np.testing.assert_allclose(fq.dct2_np(x, axes=(1, 2)), ref, atol=1e-10)
    np.testing.assert_allclose(fq.idct2_np(ref, axes=(1, 2)), x, atol=1e-10)


def test_flip_is_exact_involution_on_float_and_moves_energy() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 16, 16))
    np.testing.assert_allclose(fq.flip_float(fq.flip_float(x)), x, atol=1e-10)
    smooth = np.ones((1, 1, 16, 16))  # pure DC -> pure highest frequency
    coeffs = fq.dct2_np(fq.flip_float(smooth))
    assert abs(coeffs[0, 0, -1, -1]) == pytest.approx(16.0)
    assert np.abs(coeffs).sum() == pytest.approx(16.0)


def test_lowpass_highpass_keep_only_their_block() -> None:
    x = np.random.default_rng(2).random((1, 3, 32, 32))
    low, high = fq.lowpass_float(x, 16), fq.highpass_float(x, 16)
    c_low, c_high = fq.dct2_np(low), fq.dct2_np(high)
    assert np.abs(c_low[..., 16:, :]).max() < 1e-10 and np.abs(c_low[..., :, 16:]).max() < 1e-10
    assert np.abs(c_high[..., :16, :]).max() < 1e-10
    np.testing.assert_allclose(c_low[..., :16, :16], fq.dct2_np(x)[..., :16, :16], atol=1e-10)
    np.testing.assert_allclose(fq.lowpass_float(low, 16), low, atol=1e-10)  # a projection


def test_uint8_transforms_shapes_and_approximate_involution() -> None:
    imgs = np.random.default_rng(3).integers(60, 200, (4, 16, 16, 3), dtype=np.uint8)
    flipped, _ = fq.flip_uint8(imgs)
    back, _ = fq.flip_uint8(flipped)
    assert flipped.dtype == np.uint8 and flipped.shape == imgs.shape
    assert np.abs(back.astype(int) - imgs.astype(int)).mean() < 2.0  # quantisation only
    gray, _ = fq.grayscale_uint8(imgs)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    low, _ = fq.lowpass_uint8(imgs, 8)
    assert abs(low.astype(float).mean() - imgs.astype(float).mean()) < 1.0  # DC kept


def test_block_size_for_scales_with_side() -> None:
    assert fq.block_size_for(32) == 16
    assert fq.block_size_for(224) == 112
    assert fq.block_size_for(8) == 4
    with pytest.raises(ValueError, match="image_side"):
        fq.block_size_for(0)


def _make_src(tmp_path, n: int = 5, side: int = 16):
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    manifest = pd.DataFrame({"index": np.arange(n), "label": rng.integers(0, 2, n)})
    masks = rng.integers(0, 2, (n, side, side), dtype=np.uint8)
    meta = {"name": "toy", "classes": ["a", "b"]}
    return store.write_dataset(tmp_path / "src", imgs, manifest, meta, masks=masks), imgs


@pytest.mark.parametrize("variant", fq.VARIANTS)
def test_derive_dataset_variants(tmp_path, variant) -> None:
    src, imgs = _make_src(tmp_path)
    out = fq.derive_dataset(src, tmp_path / variant, variant, {"chunk_size": 2})
    ds = store.read_dataset(out, verify=True)
    parent = json.loads((src / store.META).read_text())
    assert ds.meta["parent"]["content_hash"] == parent["content_hash"]
    assert ds.meta["variant"] == variant
    factor = 2 if variant == "lp_hp" else 1
    assert ds.images.shape == (factor * len(imgs), 16, 16, 3)
    if variant == "lp_hp":
        assert list(ds.manifest["variant"].unique()) == ["lowpass", "highpass"]
        low, _ = fq.lowpass_uint8(imgs, 8)
        np.testing.assert_array_equal(ds.images[: len(imgs)], low)
        assert ds.meta["block_size"] == 8
    if variant == "flipped":
        expected, _ = fq.flip_uint8(imgs)
        np.testing.assert_array_equal(ds.images, expected)  # chunking changes nothing
        assert ds.masks is None
    assert not list(tmp_path.glob(".*scratch*"))


def test_derive_dataset_rejects_bad_input(tmp_path) -> None:
    src, _ = _make_src(tmp_path)
    with pytest.raises(ValueError, match="valid"):
        fq.derive_dataset(src, tmp_path / "x", "sepia")
    with pytest.raises(ValueError, match="block_size"):
        fq.derive_dataset(src, tmp_path / "x", "lowpass", {"block_size": 99})
    with pytest.raises(ValueError, match="unknown frequency params"):
        fq.derive_dataset(src, tmp_path / "x", "lowpass", {"blocksize": 4})
    with pytest.raises(ValueError, match="flip_scale"):
        fq.derive_dataset(src, tmp_path / "x", "flipped", {"flip_scale": 0.0})
    assert not (tmp_path / "x").exists()


def test_flip_scale_reduces_clipping() -> None:
    imgs = np.random.default_rng(5).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    _, clip_full = fq.flip_uint8(imgs)
    _, clip_half = fq.flip_uint8(imgs, scale=0.5)
    assert clip_half < clip_full
