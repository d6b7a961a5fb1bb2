"""Corrupted test sets: ImageNet-C's 15 corruptions and M-TLAT's four extra ones.

The 15 common corruptions come in two suites of strengths (``evaluate.corruptions.suite``):
``imagenet_c``, ImageNet-C's constants for 224-px images, from ``imagecorruptions-imaug``
(the maintained fork of Michaelis et al.'s ``imagecorruptions`` that works with numpy
2), and ``cifar10_c``, CIFAR-10-C's constants for 32-px images (``cifar_c.py``). M-TLAT
(ECCVW 2020, Sec. 4) adds rotation (8-40 degrees), translation (15-62 px),
colour distortion (a constant of 8-30 % of the maximum pixel value, 255, added
to one channel) and occlusion (a grey square of
60-127 px side) for 224-px images; the pixel ranges are scaled to the image
size here and the five severities are evenly spaced across each range.

A corrupted set is built once per split, on a container-balanced subset of the
test images (:func:`benchmark_order`), as a dataset in the standard contract:
one row per (corruption, severity, image), plus the clean images as corruption
``clean`` / severity 0 so that every evaluation has its clean reference on the
very same images. Every image is corrupted with its own seed derived from
(seed, corruption, severity, image), so the bytes do not depend on how the work
is split across processes.

This module imports neither torch nor imagecorruptions at import time: the
parameter validation reads :data:`CORRUPTIONS` from it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

IMAGENET_C = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
MTLAT = ("rotation", "translation", "colour", "occlusion")
CORRUPTIONS = IMAGENET_C + MTLAT
#: Strength constants of the 15 common corruptions: ImageNet-C's (224 px) or CIFAR-10-C's (32 px).
SUITES = ("imagenet_c", "cifar10_c")
SEVERITIES = (1, 2, 3, 4, 5)

# M-TLAT ranges (224-px images), severity 1 -> low end, 5 -> high end.
MTLAT_RANGES = {
    "rotation": (8.0, 40.0),      # degrees (not scaled)
    "translation": (15.0, 62.0),  # pixels at 224 px
    "colour": (0.08, 0.30),       # constant added to one channel, as a fraction of 255
    "occlusion": (60.0, 127.0),   # square side in pixels at 224 px
}
MTLAT_REFERENCE_SIDE = 224
MAX_PIXEL = 255.0  # the colour shift is a fraction of the maximum uint8 value
MIN_SIDE_IMAGENET_C = 32  # imagecorruptions rejects smaller images


def severity_value(name: str, severity: int, side: int) -> float:
    """The M-TLAT corruption strength at ``severity`` for ``side``-pixel images."""
    low, high = MTLAT_RANGES[name]
    value = low + (high - low) * (severity - 1) / (len(SEVERITIES) - 1)
    if name in ("translation", "occlusion"):
        value *= side / MTLAT_REFERENCE_SIDE
    return value


def _mtlat(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One M-TLAT corruption of an HxWx3 uint8 image."""
    from PIL import Image

    h, w = image.shape[:2]
    value = severity_value(name, severity, min(h, w))
    if name == "rotation":
        angle = value * rng.choice([-1.0, 1.0])
        return np.asarray(Image.fromarray(image).rotate(angle, resample=Image.BILINEAR))
    if name == "translation":
        theta = rng.uniform(0, 2 * np.pi)
        dx, dy = int(round(value * np.cos(theta))), int(round(value * np.sin(theta)))
        out = np.zeros_like(image)
        src = image[max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
        out[max(0, dy): max(0, dy) + src.shape[0], max(0, dx): max(0, dx) + src.shape[1]] = src
        return out
    if name == "colour":
        channel = rng.integers(3)
        out = image.astype(np.float32)
        # M-TLAT Sec. 4.1: "a constant is added to all the pixels of this channel",
        # 8-30 % "of the maximum possible pixel value" (additive, not a gain).
        out[..., channel] += value * MAX_PIXEL
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    side = max(1, min(int(round(value)), h, w))  # occlusion
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    out = image.copy()
    out[top: top + side, left: left + side] = 128
    return out


def _imagenet_c(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One ImageNet-C corruption; images under 32 px are resized up and back."""
    from imagecorruptions import corrupt
    from PIL import Image

    h, w = image.shape[:2]
    small = min(h, w) < MIN_SIDE_IMAGENET_C
    if small:  # deviation for tiny test images only; the default crops are 32 px
        scale = MIN_SIDE_IMAGENET_C / min(h, w)
        size = (int(round(w * scale)), int(round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    np.random.seed(seed % 2**32)  # the package draws from numpy's global generator
    kwargs = {"seed": seed % 2**32} if name in ("glass_blur", "impulse_noise") else {}
    out = corrupt(image, severity=severity, corruption_name=name, **kwargs)
    if small:
        out = np.asarray(Image.fromarray(out).resize((w, h), Image.BILINEAR))
    return out


@functools.cache
def cache_glass_blur_kernel() -> bool:
    """Compile glass blur's pixel shuffle once per environment, not once per process.

    ``imagecorruptions``' numba kernel (``_shuffle_pixels_njit_glass_blur``, both suites use
    it) has no ``cache=True``, so every process compiled it at its first glass blur: 4-5 s on
    the AVX2 Zen 3, paid by each worker of each corrupt-set job and by the tests. The same
    Python function compiled with numba's on-disk cache (beside the package, or in
    ``NUMBA_CACHE_DIR``) loads in about 0.5 s: the same machine code, the same bytes. Where
    numba finds no writable place for a cache, the package's own kernel stays. Returns whether
    the cached kernel is in place.
    """
    import numba
    from imagecorruptions import corruptions as package

    original = package._shuffle_pixels_njit_glass_blur
    try:
        package._shuffle_pixels_njit_glass_blur = numba.njit(cache=True)(original.py_func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return False
    return True


def corrupt_image(image: np.ndarray, name: str, severity: int, seed: int,
                  suite: str = "imagenet_c") -> np.ndarray:
    """Corrupt an HxWx3 uint8 image; deterministic in (image, name, severity, seed, suite).

    ``suite`` sets the strengths of the 15 common corruptions (:data:`SUITES`);
    M-TLAT's four scale with the image side in either suite.
    """
    if suite not in SUITES:
        raise ValueError(f"corruption suite must be one of {list(SUITES)}; got {suite!r}")
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity must be one of {list(SEVERITIES)}; got {severity!r}")
    if name in MTLAT:
        return _mtlat(image, name, severity, np.random.default_rng(seed))
    if name == "glass_blur":
        cache_glass_blur_kernel()
    if suite == "cifar10_c":
        from fillrobust.evaluate.cifar_c import corrupt_cifar

        return corrupt_cifar(image, name, severity, seed)
    return _imagenet_c(image, name, severity, seed)


def image_seed(seed: int, corruption: int, severity: int, position: int) -> int:
    """The per-image seed, independent of chunking and worker count."""
    return int(np.random.SeedSequence([seed, corruption, severity, position]).generate_state(1)[0])


def benchmark_order(manifest: pd.DataFrame, test: np.ndarray, seed: int) -> np.ndarray:
    """Test indices in a container-balanced order: any prefix is (nearly) balanced.

    Within each container the order is a seeded permutation; containers then
    take turns (round robin), so the first ``n`` indices are the benchmark
    subset of size ``n`` and smaller subsets (expensive attacks) are nested in
    larger ones.
    """
    from fillrobust.data.splits import round_robin

    rng = np.random.default_rng(seed)
    containers = manifest.set_index("index").loc[test, "container"].to_numpy()
    return round_robin([rng.permutation(test[containers == c]) for c in sorted(set(containers))])


def _chunk(task: tuple[np.ndarray, str, int, int, int, str]) -> np.ndarray:
    images, name, severity, seed, cid, suite = task
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = corrupt_image(image, name, severity, image_seed(seed, cid, severity, i), suite)
    return out


def warm_up() -> None:
    """Load (or, the first time in this environment, compile) glass_blur's numba kernel."""
    corrupt_image(np.zeros((32, 32, 3), np.uint8), "glass_blur", 1, 0)


def corrupt_batch(images: np.ndarray, names: Sequence[str], severities: Sequence[int], seed: int,
                  workers: int = 1, executor: Executor | None = None,
                  suite: str = "imagenet_c") -> list[tuple[str, int, np.ndarray]]:
    """All (corruption, severity) versions of ``images``, in parallel processes.

    Returns ``[(name, severity, corrupted images)]`` in the order of ``names`` x
    ``severities``; the bytes are the same for any ``workers``. One task per
    (corruption, severity); ``executor`` reuses a pool (benchmarks).
    """
    tasks = [(np.ascontiguousarray(images), n, s, seed, CORRUPTIONS.index(n), suite)
             for n in names for s in severities]
    if executor is not None:
        results = list(executor.map(_chunk, tasks))
    elif workers <= 1:
        results = [_chunk(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_chunk, tasks))
    return [(t[1], t[2], r) for t, r in zip(tasks, results, strict=True)]


def build_corrupted_set(dataset_dir: str, split_path: str, params: dict[str, Any], out_dir: str,
                        workers: int = 1) -> pd.DataFrame:
    """Write the corrupted test set of one split (see the module docstring).

    ``params``: ``names`` (corruptions), ``severities``, ``images`` (subset
    size, container-balanced), ``seed``, ``suite`` (:data:`SUITES`).
    """
    from fillrobust.data.splits import indices, read_split
    from fillrobust.data.store import read_dataset, write_dataset

    names, severities = list(params["names"]), list(params["severities"])
    for name in names:
        if name not in CORRUPTIONS:
            raise ValueError(f"evaluate.corruptions.names: unknown {name!r}; expected one of {list(CORRUPTIONS)}")
    suite = params.get("suite")
    if suite not in SUITES:
        raise ValueError(f"evaluate.corruptions.suite: expected one of {list(SUITES)}, got {suite!r}")
    ds = read_dataset(dataset_dir)
    order = benchmark_order(ds.manifest, indices(read_split(split_path), "test"), params["seed"])
    subset = order[: params["images"]]
    clean = np.asarray(ds.images[np.sort(subset)])
    subset = np.sort(subset)
    rows = ds.manifest.set_index("index").loc[subset]
    blocks = [("clean", 0, clean)] + corrupt_batch(clean, names, severities, params["seed"], workers, suite=suite)
    manifest = pd.concat([
        pd.DataFrame({"source_index": subset, "container": rows["container"].to_numpy(),
                      "label": rows["label"].to_numpy(), "corruption": name, "severity": severity})
        for name, severity, _ in blocks], ignore_index=True)
    manifest.insert(0, "index", np.arange(len(manifest)))
    meta = {"name": "corrupted", "classes": ds.classes, "source": str(dataset_dir),
            "source_hash": ds.meta.get("content_hash"), "params": params}
    write_dataset(out_dir, np.concatenate([b[2] for b in blocks]), manifest, meta)
    return manifest
