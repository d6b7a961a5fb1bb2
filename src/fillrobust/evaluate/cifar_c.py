"""The 15 common corruptions at CIFAR-10-C's strengths, for 32-px images.

ImageNet-C's constants (``imagecorruptions``) are set for 224-px images: on the
embedded default's 32-px crops its defocus blur has a radius of 3-10 px, its
motion blur a length of 10-20 px and its fog a fractal of 1.5-3x the image's
range, so most of its corruptions leave little of the object at every severity.
Hendrycks & Dietterich (ICLR 2019) made CIFAR-10-C for 32-px images with the
same 15 functions and smaller constants (their ``make_cifar_c.py``); the thesis'
Table 5.1 reports on CIFAR-10-C. This module applies those constants, written
out below per corruption and severity, with ``imagecorruptions``' helpers (disk
kernel, plasma fractal, motion blur, glass-blur pixel shuffle, frost textures).

Differences from ``make_cifar_c.py``, none of them a strength:

- motion blur and the snow streaks use ``imagecorruptions``' numpy motion blur,
  its stand-in for ImageMagick's (the original calls ImageMagick through
  ``wand``), at CIFAR-10-C's radius and sigma;
- the frost texture is scaled by 0.2 as in CIFAR-10-C, or just enough to cover
  a larger image; the fog fractal is the next power of two of the image side;
- side-dependent constants (elastic transform) follow the image side, so the
  suite runs on any size; its strengths are CIFAR-10-C's at 32 px.

Randomness comes from numpy's global generator, seeded per image by the
caller (as ``imagecorruptions``), so the bytes depend only on the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from io import BytesIO

import numpy as np

# Severity 1..5 constants of CIFAR-10-C (make_cifar_c.py), per corruption.
GAUSSIAN = (0.04, 0.06, 0.08, 0.09, 0.10)                                      # noise sigma
SHOT = (500, 250, 100, 75, 50)                                                 # photons per unit
IMPULSE = (0.01, 0.02, 0.03, 0.05, 0.07)                                       # salt-and-pepper share
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))          # disk radius, alias blur
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max delta, iterations
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))                         # radius, sigma
ZOOM_MAX = (1.06, 1.11, 1.16, 1.21, 1.26)                                      # zoom factors 1..max, step 0.01
SNOW = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))  # loc, scale, zoom, threshold, radius, sigma, blend
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))          # image weight, frost weight
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))                   # strength, wibble decay
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG = (80, 65, 58, 50, 40)
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # CIFAR-10-C draws from 5
FROST_SCALE = 0.2


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(x, sigma=sigma, channel_axis=-1)


def _gaussian_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    x = x / 255.0
    return np.clip(x + np.random.normal(size=x.shape, scale=GAUSSIAN[severity - 1]), 0, 1) * 255


def _shot_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    c = SHOT[severity - 1]
    return np.clip(np.random.poisson(x / 255.0 * c) / c, 0, 1) * 255


def _impulse_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from skimage.util import random_noise

    return np.clip(random_noise(x / 255.0, mode="s&p", rng=seed, amount=IMPULSE[severity - 1]), 0, 1) * 255


def _defocus_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    import cv2
    from imagecorruptions.corruptions import disk

    radius, alias = DEFOCUS[severity - 1]
    kernel = disk(radius=radius, alias_blur=alias)
    x = x / 255.0
    return np.clip(np.stack([cv2.filter2D(x[..., d], -1, kernel) for d in range(3)], -1), 0, 1) * 255


def _glass_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from imagecorruptions.corruptions import _shuffle_pixels_njit_glass_blur

    c = GLASS[severity - 1]
    blurred = np.uint8(_gaussian(x / 255.0, c[0]) * 255)
    shuffled = _shuffle_pixels_njit_glass_blur(x.shape[0], x.shape[1], blurred, c, seed)
    return np.clip(_gaussian(shuffled / 255.0, c[0]), 0, 1) * 255


def _motion_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from imagecorruptions.corruptions import _motion_blur as blur

    radius, sigma = MOTION[severity - 1]
    return np.clip(blur(x, radius=radius, sigma=sigma, angle=np.random.uniform(-45, 45)), 0, 255)


def _centre_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of ``img`` by ``factor`` and cut it back to the image's size."""
    from scipy.ndimage import zoom

    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    out = zoom(img[top: top + ch, left: left + cw], (factor, factor, 1), order=1)
    top, left = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[top: top + h, left: left + w]


def _zoom_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    factors = np.arange(1, ZOOM_MAX[severity - 1], 0.01)
    x = (x / 255.0).astype(np.float32)
    out = sum(_centre_zoom(x, f) for f in factors)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _snow(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    import cv2
    from imagecorruptions.corruptions import _motion_blur as blur

    c = SNOW[severity - 1]
    x = x.astype(np.float32) / 255.0
    layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _centre_zoom(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = np.round(np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float32)
    layer = blur(layer, radius=c[4], sigma=c[5], angle=np.random.uniform(-135, -45))
    layer = (np.round(np.clip(layer, 0, 255)) / 255.0)[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@lru_cache(maxsize=len(FROST_FILES) * 2)
def _frost_texture(name: str, h: int, w: int) -> np.ndarray:
    """The frost photograph ``name`` (BGR), scaled for an h x w image; read once per process."""
    import importlib.resources

    import cv2

    with importlib.resources.as_file(importlib.resources.files("imagecorruptions") / "frost" / name) as path:
        frost = cv2.imread(str(path))
    scale = max(FROST_SCALE, (h + 1) / frost.shape[0], (w + 1) / frost.shape[1])
    out = cv2.resize(frost, (0, 0), fx=scale, fy=scale)
    out.flags.writeable = False  # shared between calls
    return out


def _frost(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    weight, frost_weight = FROST[severity - 1]
    name = FROST_FILES[np.random.randint(len(FROST_FILES))]
    h, w = x.shape[:2]
    frost = _frost_texture(name, h, w)
    top, left = np.random.randint(0, frost.shape[0] - h), np.random.randint(0, frost.shape[1] - w)
    frost = frost[top: top + h, left: left + w][..., [2, 1, 0]]
    return np.clip(weight * x + frost_weight * frost, 0, 255)


def _fog(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from imagecorruptions.corruptions import next_power_of_2, plasma_fractal

    strength, decay = FOG[severity - 1]
    h, w = x.shape[:2]
    x = x / 255.0
    peak = x.max()
    x = x + strength * plasma_fractal(mapsize=next_power_of_2(max(h, w)), wibbledecay=decay)[:h, :w, None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def _brightness(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + BRIGHTNESS[severity - 1], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * CONTRAST[severity - 1] + means, 0, 1) * 255


def _elastic_transform(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """A random affine warp, then a smooth random displacement field (CIFAR-10-C's version)."""
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    h, w = x.shape[:2]
    alpha, sigma, affine = (v * min(h, w) for v in ELASTIC[severity - 1])
    image = x.astype(np.float32) / 255.0
    centre, half = np.float32((h, w)) // 2, min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + np.random.uniform(-affine, affine, size=src.shape).astype(np.float32)
    image = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    dx, dy = (gaussian(np.random.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
              for _ in range(2))
    cols, rows, chans = np.meshgrid(np.arange(w), np.arange(h), np.arange(3))
    coords = (rows + dy[..., None]).ravel(), (cols + dx[..., None]).ravel(), chans.ravel()
    out = map_coordinates(image, coords, order=1, mode="reflect").reshape(image.shape)
    return np.clip(out, 0, 1) * 255


def _pixelate(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from PIL import Image

    h, w = x.shape[:2]
    c = PIXELATE[severity - 1]
    small = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


def _jpeg_compression(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=JPEG[severity - 1])
    return np.asarray(Image.open(buffer))


CORRUPT: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "defocus_blur": _defocus_blur, "glass_blur": _glass_blur,
    "motion_blur": _motion_blur, "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost, "fog": _fog,
    "brightness": _brightness, "contrast": _contrast, "elastic_transform": _elastic_transform,
    "pixelate": _pixelate, "jpeg_compression": _jpeg_compression,
}


def corrupt_cifar(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """CIFAR-10-C corruption ``name`` of an HxWx3 uint8 image at ``severity`` (1-5), seeded."""
    np.random.seed(seed % 2**32)
    out = CORRUPT[name](np.ascontiguousarray(image), severity, seed % 2**32)
    return np.uint8(np.clip(out, 0, 255))  # truncation, as imagecorruptions and make_cifar_c.py
