"""Corrupted test sets: every corruption, determinism, parallel bytes, balanced subsets."""

import numpy as np
import pandas as pd
import pytest

from fillrobust.data.store import read_dataset
from fillrobust.evaluate.corruptions import (
    CORRUPTIONS,
    IMAGENET_C,
    benchmark_order,
    build_corrupted_set,
    corrupt_batch,
    corrupt_image,
    severity_value,
)


def _split(tmp_path, crops):
    from fillrobust.data.splits import make_split

    manifest = read_dataset(crops).manifest
    split = make_split(manifest, ["red_cup", "beer_cup", "green_glass", "wine_glass"],
                       ["champagne_flute", "cocktail_glass"], 0.25, 0, "S1")
    split.to_parquet(tmp_path / "S1.parquet", index=False)
    return tmp_path / "S1.parquet"


def _image(side: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(40, 215, (side // 8, side // 8, 3)), np.ones((8, 8, 1)))
    return (smooth + rng.integers(-30, 30, smooth.shape)).astype(np.uint8)  # edges and texture


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_changes_the_image_deterministically(name):
    x = _image()
    a5 = corrupt_image(x, name, 5, seed=7)
    assert a5.dtype == np.uint8 and a5.shape == x.shape
    assert np.array_equal(a5, corrupt_image(x, name, 5, seed=7))
    assert not np.array_equal(a5, x)
    # Severity 5 moves the image further from the original than severity 1.
    a1 = corrupt_image(x, name, 1, seed=7)
    dist = [np.abs(a.astype(int) - x).mean() for a in (a1, a5)]
    assert dist[1] >= dist[0] * 0.9, dist


def test_small_images_are_resized_for_imagenet_c():
    x = _image(16)
    out = corrupt_image(x, "fog", 3, seed=0)
    assert out.shape == x.shape and not np.array_equal(out, x)


def test_bad_names_and_severities_fail_clearly():
    with pytest.raises(ValueError, match="unknown corruption 'blur'.*gaussian_noise"):
        corrupt_image(_image(), "blur", 1, 0)
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt_image(_image(), "fog", 6, 0)


def test_mtlat_strengths_scale_with_image_size():
    assert severity_value("rotation", 1, 32) == 8 and severity_value("rotation", 5, 32) == 40
    assert severity_value("translation", 5, 224) == 62
    assert severity_value("occlusion", 1, 32) == pytest.approx(60 * 32 / 224)
    x = np.full((32, 32, 3), 10, np.uint8)
    occluded = corrupt_image(x, "occlusion", 5, seed=3)
    side = round(127 * 32 / 224)
    assert (occluded == 128).all(axis=2).sum() == side * side
    shifted = corrupt_image(x, "translation", 5, seed=3)
    assert 0 < (shifted == 0).all(axis=2).sum() < 32 * 32

def test_colour_distortion_adds_a_fraction_of_the_maximum_pixel_value():
    # M-TLAT adds 8-30 % of 255 to one channel: a pixel of 10 becomes 10 + 76.5
    # at severity 5 (a multiplicative gain would give 13) and 10 + 20.4 at 1.
    x = np.full((32, 32, 3), 10, np.uint8)
    strong = corrupt_image(x, "colour", 5, seed=3)
    assert sorted(np.unique(strong.reshape(-1, 3), axis=0)[0]) == [10, 10, 86]
    weak = corrupt_image(x, "colour", 1, seed=3)
    assert sorted(np.unique(weak.reshape(-1, 3), axis=0)[0]) == [10, 10, 30]
    bright = corrupt_image(np.full((8, 8, 3), 250, np.uint8), "colour", 5, seed=3)
    assert bright.max() == 255  # clipped, not wrapped


def test_parallel_build_gives_the_same_bytes():
    images = np.stack([_image(32, s) for s in range(4)])
    names = ["gaussian_noise", "glass_blur", "rotation", "occlusion"]
    serial = corrupt_batch(images, names, [1, 3], seed=5, workers=1)
    parallel = corrupt_batch(images, names, [1, 3], seed=5, workers=2)
    for (n1, s1, a), (n2, s2, b) in zip(serial, parallel, strict=True):
        assert (n1, s1) == (n2, s2) and np.array_equal(a, b)


def test_benchmark_order_prefixes_are_balanced():
    manifest = pd.DataFrame({"index": np.arange(30), "container": ["a"] * 15 + ["b"] * 9 + ["c"] * 6})
    order = benchmark_order(manifest, np.arange(30), seed=1)
    assert sorted(order) == list(range(30))
    first = manifest.set_index("index").loc[order[:9], "container"].value_counts()
    assert first.to_dict() == {"a": 3, "b": 3, "c": 3}
    assert np.array_equal(order, benchmark_order(manifest, np.arange(30), seed=1))


def test_corrupted_set_holds_clean_reference_and_is_reproducible(tmp_path, tiny_ccm):
    split = _split(tmp_path, tiny_ccm / "crops")
    params = {"names": ["gaussian_noise", "occlusion"], "severities": [1, 5], "images": 5, "seed": 0,
              "suite": "cifar10_c"}
    manifest = build_corrupted_set(str(tiny_ccm / "crops"), str(split), params, str(tmp_path / "a"))
    assert len(manifest) == 5 * (1 + 2 * 2)
    assert set(manifest["corruption"]) == {"clean", "gaussian_noise", "occlusion"}
    a, src = read_dataset(tmp_path / "a", verify=True), read_dataset(tiny_ccm / "crops")
    clean = manifest[manifest["corruption"] == "clean"]
    assert np.array_equal(a.images[clean["index"]], src.images[clean["source_index"]])
    build_corrupted_set(str(tiny_ccm / "crops"), str(split), params, str(tmp_path / "b"), workers=2)
    assert a.meta["content_hash"] == read_dataset(tmp_path / "b").meta["content_hash"]
    assert set(IMAGENET_C) <= set(CORRUPTIONS)


@pytest.mark.parametrize("name", IMAGENET_C)
@pytest.mark.parametrize("side", [32, 16])
def test_cifar10_c_suite_corrupts_deterministically(name, side):
    x = _image(side)
    a = corrupt_image(x, name, 5, seed=7, suite="cifar10_c")
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, corrupt_image(x, name, 5, seed=7, suite="cifar10_c"))
    assert not np.array_equal(a, x)
    assert not np.array_equal(a, corrupt_image(x, name, 5, seed=8, suite="cifar10_c")) or name in (
        "contrast", "brightness", "defocus_blur", "zoom_blur", "pixelate", "jpeg_compression")


def test_cifar10_c_strengths_are_the_32px_constants():
    grey = np.full((32, 32, 3), 128, np.uint8)
    # Gaussian noise: sigma 0.10 at severity 5 (ImageNet-C: 0.38), in [0, 1] units.
    noisy = corrupt_image(grey, "gaussian_noise", 5, seed=1, suite="cifar10_c").astype(float)
    assert noisy.std() / 255 == pytest.approx(0.10, rel=0.1)
    strong = corrupt_image(grey, "gaussian_noise", 5, seed=1, suite="imagenet_c").astype(float)
    assert strong.std() / 255 > 0.3
    # Contrast: (x - mean) * 0.15 + mean at severity 5 (ImageNet-C: 0.05).
    x = _image()
    low = corrupt_image(x, "contrast", 5, seed=0, suite="cifar10_c").astype(float)
    mean = x.mean(axis=(0, 1)) / 255
    expected = np.uint8(np.clip((x / 255 - mean) * 0.15 + mean, 0, 1) * 255)
    assert np.array_equal(low, expected)
    # Across the 15 corruptions severity 5 moves a 32-px image far less than ImageNet-C's.
    dist = {suite: np.mean([np.abs(corrupt_image(x, n, 5, 3, suite).astype(int) - x).mean() for n in IMAGENET_C])
            for suite in ("cifar10_c", "imagenet_c")}
    assert dist["cifar10_c"] < 0.7 * dist["imagenet_c"], dist


def test_unknown_suite_fails_clearly(tmp_path, tiny_ccm):
    with pytest.raises(ValueError, match="suite must be one of.*cifar10_c"):
        corrupt_image(_image(), "fog", 1, 0, suite="cifar100_c")
    split = _split(tmp_path, tiny_ccm / "crops")
    params = {"names": ["fog"], "severities": [1], "images": 2, "seed": 0}
    with pytest.raises(ValueError, match="evaluate.corruptions.suite: expected one of"):
        build_corrupted_set(str(tiny_ccm / "crops"), str(split), params, str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_glass_blur_kernel_is_cached_on_disk_with_the_packages_bytes(tmp_path):
    """The shuffle kernel compiles once per environment (numba's on-disk cache) and computes
    what the package's own ``@njit()`` kernel computes."""
    import os
    import subprocess
    import sys

    import numba
    from imagecorruptions import corruptions as package

    from fillrobust.evaluate.corruptions import cache_glass_blur_kernel

    assert cache_glass_blur_kernel()
    cached = package._shuffle_pixels_njit_glass_blur
    plain = numba.njit()(cached.py_func)  # the package's decorator, no cache
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for params in [(0.05, 1, 1), (0.3, 1, 2), (1.5, 4, 2)]:  # CIFAR-10-C's and ImageNet-C's
        assert np.array_equal(cached(32, 32, image.copy(), params, 11), plain(32, 32, image.copy(), params, 11))
    probe = ("import numpy as np; from fillrobust.evaluate.corruptions import corrupt_image;"
             "from imagecorruptions import corruptions as p;"
             "corrupt_image(np.zeros((32, 32, 3), np.uint8), 'glass_blur', 1, 0, 'cifar10_c');"
             "print(sum(p._shuffle_pixels_njit_glass_blur.stats.cache_hits.values()))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
            for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["0", "1"], [r.stdout + r.stderr for r in runs]


def test_glass_blur_keeps_the_packages_kernel_where_numba_cannot_cache(monkeypatch):
    """No writable place for numba's cache: the package's own kernel stays, and glass blur runs."""
    import numba
    from imagecorruptions import corruptions as package

    from fillrobust.evaluate import corruptions

    original, njit = package._shuffle_pixels_njit_glass_blur, numba.njit
    monkeypatch.setattr(package, "_shuffle_pixels_njit_glass_blur", original)  # restored after the test

    def no_locator(*args, **options):  # numba.njit, failing only where asked to cache
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return njit(*args, **options)

    monkeypatch.setattr(numba, "njit", no_locator)
    # the undecorated function, so that this process's memo (the other tests') is left alone
    unmemoised = corruptions.cache_glass_blur_kernel.__wrapped__
    monkeypatch.setattr(corruptions, "cache_glass_blur_kernel", unmemoised)
    assert unmemoised() is False
    assert package._shuffle_pixels_njit_glass_blur is original
    image = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = corrupt_image(image, "glass_blur", 2, 7)  # through the package's own kernel
    assert out.shape == image.shape and not np.array_equal(out, image)
