"""SynthSource: a procedural multi-class source domain standing in for ImageNet.

Twelve classes of objects and textures that have nothing to do with
containers: filled shapes (disk, square, triangle, star, ring, cross) drawn
over real photographs (scikit-image samples), and textures (stripes,
checkerboard, dots, brick, grass, gravel) filling most of the image. Colour,
size, position, rotation and illumination vary, so a network has to learn
shape and texture features that can transfer, which is what the source domain
is for in the transfer strategies. Image ``i`` depends only on (seed, i).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fillrobust.data.synthetic import SCENES, _photo, _random_window

CLASSES = ["disk", "square", "triangle", "star", "ring", "cross",
           "stripes", "checker", "dots", "brick", "grass", "gravel"]
SHAPE_CLASSES = CLASSES[:6]


def _shape_mask(name: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a randomly placed, sized and rotated shape."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    r = rng.uniform(0.18, 0.32)
    theta = rng.uniform(0, 2 * np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if name == "disk":
        return rho <= r
    if name == "square":
        return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
    if name == "triangle":
        return (v <= r * 0.5) & (v >= -r + 1.7 * np.abs(u))
    if name == "star":
        return rho <= r * (0.55 + 0.45 * np.cos(5 * phi) ** 2)
    if name == "ring":
        return (rho <= r) & (rho >= r * 0.6)
    if name == "cross":
        return ((np.abs(u) <= r * 0.3) & (np.abs(v) <= r)) | ((np.abs(v) <= r * 0.3) & (np.abs(u) <= r))
    raise ValueError(f"unknown shape {name!r}")


def _texture(name: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A float texture in [0, 1] of shape side x side."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(3.0, 7.0) * side / 32
    w = xx * np.cos(theta) + yy * np.sin(theta)
    if name == "stripes":
        return (np.sin(2 * np.pi * w / period) > 0).astype(np.float32)
    if name == "checker":
        w2 = -xx * np.sin(theta) + yy * np.cos(theta)
        return ((np.floor(w / period) + np.floor(w2 / period)) % 2).astype(np.float32)
    if name == "dots":
        w2 = -xx * np.sin(theta) + yy * np.cos(theta)
        return ((np.sin(2 * np.pi * w / period) * np.sin(2 * np.pi * w2 / period)) > 0.5).astype(np.float32)
    photo = _photo(name)[..., 0]
    return _random_window(rng, photo[..., None].repeat(3, 2), side, side)[..., 0]


def render_source_image(seed: int, index: int, label: int, side: int) -> np.ndarray:
    """Render image ``index`` of class ``label`` as uint8 side x side x 3."""
    rng = np.random.default_rng([seed, index, 7])
    name = CLASSES[label]
    background = _random_window(rng, _photo(SCENES[rng.integers(len(SCENES))]), side, side)
    colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    if name in SHAPE_CLASSES:
        mask = _shape_mask(name, side, rng)[..., None]
        image = np.where(mask, colour * rng.uniform(0.7, 1.0), background)
    else:
        tex = _texture(name, side, rng)[..., None]
        other = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        layer = tex * colour + (1 - tex) * other
        image = 0.8 * layer + 0.2 * background
    image = image * rng.uniform(0.7, 1.2) + rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def synthesize_source(out_dir: str, params: dict[str, Any]) -> None:
    """Write ``params['images']`` SynthSource images (balanced classes) as a dataset.

    The manifest's ``role`` column splits train / val (``params['val_fraction']``).
    """
    import pandas as pd

    from fillrobust.data.store import dataset_writer

    n, side, seed = params["images"], params["size"], params["seed"]
    classes = CLASSES[: params.get("classes", len(CLASSES))]
    labels = np.arange(n) % len(classes)
    rng = np.random.default_rng([seed, 1])
    role = np.where(rng.random(n) < params["val_fraction"], "val", "train")
    with dataset_writer(out_dir, n, side, side) as (images, _, commit):
        for i in range(n):
            images[i] = render_source_image(seed, i, int(labels[i]), side)
        manifest = pd.DataFrame({"index": np.arange(n), "label": labels,
                                 "class_name": [classes[k] for k in labels], "role": role})
        commit(manifest, {"name": "synth_source", "classes": classes, "kind": "source",
                          "provenance": {"generator": "fillrobust.data.synthetic_source", "params": params}})
