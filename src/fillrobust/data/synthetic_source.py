"""SynthSource: a procedural multi-class source domain standing in for ImageNet.

The source domain has to teach features that transfer to filling-level
classification, as ImageNet does in the papers: objects with shading,
silhouettes and specular highlights, materials, and in particular vessels
made of glass in which one sees a (refracted) background and liquids or
grains at any level. Classes are everyday object and material categories
(ImageNet-like, :data:`CLASSES`):

- vessels (:data:`VESSELS`): bottle, jar, bowl, vase, Erlenmeyer flask, mug
  with a handle, test tube, bucket with a wire handle, tin can with a label;
  clear, tinted, frosted or opaque (painted, ceramic, metal) walls in
  class-dependent proportions (:data:`MATERIAL_P`: lab glass is always clear,
  cans always opaque), filled with nothing, water, wine, juice, milk, oil,
  pasta, rice or beans at a random level (8-95 %), drawn with the SynthCCM
  primitives (radial profile, refraction behind the wall, meniscus, shading,
  highlight, shadow);
- objects: ball, box, traffic cone, plate;
- materials: brick, grass, gravel, fabric, water surface;
- photographed things: coins, printed text.

The label is the category only. The filling level is a nuisance variable,
drawn independently of the class and never a label: the source must not be
the target task (filling level) in disguise. None of the eight C-CCM
containers is rendered (their profiles live in ``synthetic.SHAPES``; the
vessels here have other silhouettes: necks, lids, handles, bulbs, cones).
Stemmed glasses are absent by default; ``extra_classes`` adds two
(:data:`STEMMED_SHAPES`: goblet, tulip glass) with their own proportions.

Everything is drawn over real photographs shipped with scikit-image (loaded
offline) at twice the output size and area-averaged down, which gives
anti-aliased edges like the SynthCCM crops. Image ``i`` depends only on
(seed, i), so images can be rendered in any order with the same bytes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fillrobust.data.synthetic import (
    SCENES,
    SHAPES,
    Shape,
    _content_mask,
    _draw_shadow,
    _geometry,
    _illuminate,
    _noise_texture,
    _photo,
    _random_window,
    _refract,
    _scene,
)

# Vessel silhouettes: (t, r) radial profiles in units of the frame height
# (as synthetic.Shape); ``bowl`` is where the inside begins (the base's thickness).
VESSEL_SHAPES: dict[str, Shape] = {
    "bottle": Shape(0.78, ((0, .115), (.52, .115), (.66, .05), (.72, .036), (1, .036)), 0.03, (.9, .95, .9)),
    "jar": Shape(0.55, ((0, .165), (.04, .175), (.84, .175), (.88, .14), (1, .14)), 0.04, (.95, .95, .95)),
    "bowl": Shape(0.30, ((0, .10), (.08, .16), (.45, .24), (1, .285)), 0.10, (.95, .95, .95)),
    "vase": Shape(0.76, ((0, .08), (.30, .165), (.55, .13), (.78, .055), (.92, .06), (1, .10)), 0.04,
                  (.9, .95, .95)),
    "flask": Shape(0.70, ((0, .20), (.05, .21), (.58, .06), (.63, .045), (1, .045)), 0.03, (.95, .97, .97)),
    "mug": Shape(0.40, ((0, .15), (1, .16)), 0.05, (.95, .95, .95)),
    "test_tube": Shape(0.78, ((0, .0), (.03, .045), (.07, .058), (1, .058)), 0.02, (.95, .97, .97)),
    "bucket": Shape(0.45, ((0, .15), (.9, .21), (.92, .225), (1, .225)), 0.04, (.8, .2, .2)),
    "tin_can": Shape(0.50, ((0, .12), (.04, .13), (.96, .13), (1, .12)), 0.03, (.7, .7, .72)),
}
# Optional stemmed vessels (``source.synth.extra_classes``), as ImageNet's goblet,
# red wine and beer glass: a bowl on a stem, contents above the stem as in the
# C-CCM stemmed glasses but with other proportions (a short thick stem under a
# deep round bowl; a tall tulip on a long stem). Not in the default: measured,
# they do not lift transfer (docs/deviations.md, "Is the source the limit?").
STEMMED_SHAPES: dict[str, Shape] = {
    "goblet": Shape(0.60, ((0, .12), (.04, .12), (.06, .03), (.24, .03), (.30, .12), (.55, .17),
                           (.85, .17), (1, .15)), 0.28, (.93, .95, .96)),
    "tulip_glass": Shape(0.80, ((0, .09), (.03, .09), (.05, .02), (.30, .02), (.36, .08), (.60, .12),
                                (.85, .09), (1, .11)), 0.34, (.93, .95, .96)),
}
VESSELS = list(VESSEL_SHAPES)
OBJECTS = ["ball", "box", "traffic_cone", "plate"]
MATERIALS = ["brick", "grass", "gravel", "fabric", "water_surface"]
PHOTOS = {"coins": ("coins",), "text": ("text", "page")}
CLASSES = VESSELS + OBJECTS + MATERIALS + list(PHOTOS)
EXTRA_CLASSES = list(STEMMED_SHAPES)
_SHAPES = {**VESSEL_SHAPES, **STEMMED_SHAPES}

# Contents: liquids (colour, opacity of the liquid) and grains (colour, grain px).
LIQUIDS = {"water": ((.55, .75, .95), .45), "wine": ((.45, .04, .10), .85), "juice": ((.98, .60, .10), .8),
           "milk": ((.97, .96, .93), .95), "oil": ((.85, .75, .20), .6)}
GRAINS = {"pasta": ((.93, .72, .30), 3), "rice": ((.96, .94, .86), 2), "beans": ((.45, .20, .12), 3)}
FILLINGS = ["none", *LIQUIDS, *GRAINS]
GLASS_TINTS = [(.93, .95, .96), (.35, .75, .40), (.55, .35, .15), (.35, .55, .85)]
# Wall material per class (transparent, translucent, opaque), as a category
# implies a material in ImageNet: lab glass is clear, mugs are ceramic, buckets
# and cans are painted or metal; jars, bowls and vases come in any.
TRANSPARENCY = ("transparent", "translucent", "opaque")
MATERIAL_P = {"bottle": (.85, .1, .05), "jar": (.8, .1, .1), "bowl": (.4, .2, .4), "vase": (.4, .2, .4),
              "flask": (1, 0, 0), "test_tube": (1, 0, 0), "mug": (0, .2, .8), "bucket": (0, .1, .9),
              "tin_can": (0, 0, 1),
              "goblet": (.85, .1, .05), "tulip_glass": (.85, .1, .05)}
TABLES = ["brick", "gravel", "grass", "camera"]
# Scenes that are not a class themselves (coins and text are classes).
BACKGROUNDS = [s for s in SCENES if s not in ("coins", "text", "page")]
_CONE_COLOURS = [(.95, .40, .05), (.95, .85, .10), (.20, .45, .90)]


def _colour(rng: np.random.Generator, low: float = 0.1, high: float = 1.0) -> np.ndarray:
    return rng.uniform(low, high, size=3).astype(np.float32)


def _jitter_shape(rng: np.random.Generator, shape: Shape) -> Shape:
    """The class silhouette with random proportions (height and width)."""
    hs, ws = rng.uniform(0.9, 1.15), rng.uniform(1.1, 1.6)  # wider than SynthCCM's frame-relative radii
    return replace(shape, height=shape.height * hs, profile=tuple((t, r * ws) for t, r in shape.profile))


def _draw_filling(rng: np.random.Generator, view: np.ndarray, geo: dict[str, Any], shape: Shape,
                  filling: str, level: int) -> None:
    """Liquid (tinted, with a bright meniscus) or grains, in place on ``view``."""
    cmask = _content_mask(geo, shape, level)
    if filling == "none" or not cmask.any():
        return
    if filling in LIQUIDS:
        colour, opacity = LIQUIDS[filling]
        c = np.array(colour, np.float32) * rng.uniform(0.8, 1.1)
        view[cmask] = (1 - opacity) * view[cmask] + opacity * c
        top = shape.bowl + (1.0 - shape.bowl) * level / 100.0
        surface = cmask & (np.abs(geo["t"] - top) < 1.5 / geo["height"])
        view[surface] = 0.3 * view[surface] + 0.7
    else:
        colour, grain = GRAINS[filling]
        tex = _noise_texture(rng, *cmask.shape, grain)[..., None]
        view[cmask] = (np.array(colour, np.float32) * rng.uniform(0.85, 1.1) * (0.6 + 0.55 * tex))[cmask]


def _draw_handle(rng: np.random.Generator, frame: np.ndarray, geo: dict[str, Any], shape: Shape,
                 look: np.ndarray) -> np.ndarray:
    """A mug's handle: a half ring on one side of the body."""
    side = 1 if rng.random() < 0.5 else -1
    r_body = shape.profile[-1][1] * geo["scale"]
    cy = geo["base"] - 0.55 * geo["height"]
    cx = geo["cx"] + side * r_body
    ry, rx = 0.28 * geo["height"], 0.55 * r_body
    rho = np.hypot((geo["xx"] - cx) / rx, (geo["yy"] - cy) / ry)
    ring = (rho <= 1) & (rho >= 0.6) & (side * (geo["xx"] - cx) > 0)
    frame[ring] = look
    return ring


def _draw_vessel(rng: np.random.Generator, name: str, frame: np.ndarray, table_y: int) -> np.ndarray:
    """A vessel of class ``name`` with random wall material and contents."""
    h, w = frame.shape[:2]
    shape = _jitter_shape(rng, _SHAPES[name])
    transparency = TRANSPARENCY[rng.choice(3, p=MATERIAL_P[name])]
    tint = GLASS_TINTS[rng.integers(len(GLASS_TINTS))] if transparency == "transparent" else _colour(rng)
    shape = replace(shape, colour=tuple(float(c) for c in tint))
    filling = FILLINGS[rng.integers(len(FILLINGS))]
    level = 0 if filling == "none" else int(rng.integers(8, 96))
    geo = _geometry(rng, shape, h, w, table_y)
    _draw_shadow(rng, frame, geo, w)
    inside, u = geo["inside"], geo["u"]
    body = np.array(shape.colour, np.float32)
    shading = (0.55 + 0.45 * np.sqrt(np.clip(1 - u**2, 0, 1)))[..., None]
    if transparency == "opaque":
        look = body * shading
    else:
        seen = _refract(frame, geo, rng.uniform(0.5, 2.0))
        _draw_filling(rng, seen, geo, shape=shape, filling=filling, level=level)
        alpha = rng.uniform(0.7, 0.9) if transparency == "translucent" else rng.uniform(0.1, 0.3)
        look = (1 - alpha) * seen * (0.6 + 0.4 * body) + alpha * body * shading
        wall = (np.abs(u) > 0.86)[..., None]
        look = np.where(wall, 0.6 * look + 0.4 * body * 0.75, look)
    highlight = (np.abs(u + rng.uniform(0.3, 0.6)) < 0.09)[..., None] * rng.uniform(0.15, 0.5)
    look = np.clip(look + highlight, 0, 1)
    out = np.where(inside[..., None], look, frame)
    if name in ("jar", "bottle"):  # a lid or cap: opaque band at the top
        cap = inside & (geo["t"] > (0.9 if name == "jar" else 0.92))
        out[cap] = _colour(rng, 0.2, 0.9) * shading[cap]
    if name == "mug":
        _draw_handle(rng, out, geo, shape, body * 0.85)
    if name == "tin_can":  # a printed label band around the middle
        band = inside & (geo["t"] > rng.uniform(.15, .3)) & (geo["t"] < rng.uniform(.7, .85))
        out[band] = _colour(rng) * shading[band]
    if name == "bucket":  # a wire handle arching over the rim
        top, half = geo["base"] - geo["height"], shape.profile[-1][1] * geo["scale"]
        arc = np.abs(np.hypot((geo["xx"] - geo["cx"]) / half, (geo["yy"] - top) / (0.6 * half)) - 1) < 0.06
        out[arc & (geo["yy"] < top)] = 0.3
    return out


def _draw_object(rng: np.random.Generator, name: str, frame: np.ndarray, table_y: int) -> np.ndarray:
    """Ball, box, traffic cone or plate standing on the tabletop."""
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = _colour(rng)
    cx = w / 2 + rng.uniform(-0.15, 0.15) * w
    if name == "ball":
        r = rng.uniform(0.2, 0.33) * h
        cy = table_y - r + rng.uniform(0, 0.05) * h
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
        lx, ly = rng.uniform(-0.5, 0.5, size=2)
        z = np.sqrt(np.clip(1 - d2, 0, 1))
        shade = np.clip(0.25 + 0.75 * (z - lx * (xx - cx) / r - ly * (yy - cy) / r) / 1.5, 0, 1)
        spec = np.clip(1 - ((xx - cx + lx * r * 0.5) ** 2 + (yy - cy + ly * r * 0.5) ** 2) / (0.2 * r) ** 2, 0, 1)
        look = np.clip(colour * shade[..., None] + 0.6 * spec[..., None], 0, 1)
        return np.where((d2 <= 1)[..., None], look, frame)
    if name == "box":
        s, dep = rng.uniform(0.3, 0.45) * h, rng.uniform(0.08, 0.16) * h
        x0, y1 = cx - s / 2, table_y + rng.uniform(-0.02, 0.04) * h
        front = (xx >= x0) & (xx <= x0 + s) & (yy <= y1) & (yy >= y1 - s)
        top = (yy < y1 - s) & (yy >= y1 - s - dep) & (xx >= x0 + (y1 - s - yy)) & (xx <= x0 + s + (y1 - s - yy))
        side = (xx > x0 + s) & (xx <= x0 + s + dep) & (yy <= y1 - (xx - x0 - s)) & (yy >= y1 - s - (xx - x0 - s))
        out = frame.copy()
        for mask, k in ((front, 0.85), (top, 1.0), (side, 0.55)):
            out[mask] = colour * k
        return out
    if name == "traffic_cone":
        shape = _jitter_shape(rng, Shape(0.62, ((0, .20), (.05, .16), (1, .03)), 0.0, (1, 1, 1)))
        geo = _geometry(rng, shape, h, w, table_y)
        _draw_shadow(rng, frame, geo, w)
        paint = np.array(_CONE_COLOURS[rng.integers(len(_CONE_COLOURS))], np.float32)
        band = (geo["t"] > 0.45) & (geo["t"] < 0.62)
        shading = (0.55 + 0.45 * np.sqrt(np.clip(1 - geo["u"] ** 2, 0, 1)))[..., None]
        look = np.where(band[..., None], 0.95, paint) * shading
        return np.where(geo["inside"][..., None], look, frame)
    # plate: an ellipse seen from above at an angle, rim and well
    rx, ry = rng.uniform(0.3, 0.45) * w, rng.uniform(0.1, 0.22) * h
    cy = table_y - ry * 0.5
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    out = frame.copy()
    out[d <= 1] = colour * 0.95
    out[d <= 0.45] = colour * 0.8
    out[(d > 0.9) & (d <= 1)] = colour * 0.65
    return out


def _material(rng: np.random.Generator, name: str, side: int) -> np.ndarray:
    """A full-frame material: tinted photographic texture, woven fabric or rippled water."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    if name == "fabric":
        theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 8.0) * side / 32
        w1 = xx * np.cos(theta) + yy * np.sin(theta)
        w2 = -xx * np.sin(theta) + yy * np.cos(theta)
        warp, weft = np.sin(2 * np.pi * w1 / period) > 0, np.sin(2 * np.pi * w2 / period) > 0
        a, b = _colour(rng), _colour(rng)
        weave = 0.5 + 0.5 * np.sin(2 * np.pi * (w1 + w2) / (period / 3))
        img = np.where((warp ^ weft)[..., None], a, b) * (0.8 + 0.2 * weave[..., None])
        return np.clip(img, 0, 1)
    if name == "water_surface":
        under = _random_window(rng, _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]), side, side)
        k = rng.uniform(0.15, 0.5, size=2) * 32 / side
        ripple = np.sin(k[0] * xx + 2 * np.sin(k[1] * yy)) + np.sin(k[1] * 1.3 * yy + rng.uniform(0, 6))
        xs = np.clip(np.round(xx + 2.5 * side / 32 * ripple), 0, side - 1).astype(np.int64)
        tint = np.array(LIQUIDS["water"][0], np.float32) * rng.uniform(0.6, 1.0)
        img = 0.5 * under[yy.astype(np.int64), xs] + 0.5 * tint
        return np.clip(img + 0.35 * np.clip(ripple - 1.2, 0, None)[..., None], 0, 1)
    gray = _random_window(rng, _photo(name), side, side).mean(axis=2, keepdims=True)
    return np.clip(gray * _colour(rng, 0.5, 1.2) + _colour(rng, -0.1, 0.2), 0, 1)


def _photo_class(rng: np.random.Generator, name: str, side: int) -> np.ndarray:
    """A colourised window of a class photograph (coins, printed text)."""
    names = PHOTOS[name]
    gray = _random_window(rng, _photo(names[rng.integers(len(names))]), side, side).mean(axis=2, keepdims=True)
    ink, paper = _colour(rng, 0.0, 0.5), _colour(rng, 0.6, 1.0)
    return ink + (paper - ink) * gray


def _downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Area average over factor x factor blocks (anti-aliased edges)."""
    h, w, c = img.shape
    return img.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def render_source_image(seed: int, index: int, label: int | str, side: int, supersample: int = 2) -> np.ndarray:
    """Render image ``index`` of class ``label`` (an index into :data:`CLASSES`, or a class
    name, :data:`EXTRA_CLASSES` included) as uint8 side x side x 3."""
    rng = np.random.default_rng([seed, index, 7])
    name, big = (CLASSES[label] if isinstance(label, int) else label), side * supersample
    if name not in CLASSES and name not in EXTRA_CLASSES:
        raise ValueError(f"SynthSource has no class {name!r} (expected one of {CLASSES + EXTRA_CLASSES})")
    if name in _SHAPES or name in OBJECTS:
        table_y = int(big * rng.uniform(0.8, 0.95))
        frame, _ = _scene(rng, big, big, table_y, BACKGROUNDS)
        draw = _draw_vessel if name in _SHAPES else _draw_object
        image = draw(rng, name, frame, table_y)
    elif name in MATERIALS:
        image = _material(rng, name, big)
    else:
        image = _photo_class(rng, name, big)
    image, _ = _illuminate(rng, np.asarray(image, np.float32), 0.0)
    image = _downsample(image, supersample) + rng.normal(0, 0.015, (side, side, 3))
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def target_shapes_rendered() -> list[str]:
    """Names of C-CCM container shapes among the source vessels (must be empty)."""
    return [n for n, s in _SHAPES.items() if any(s.profile == t.profile for t in SHAPES.values())]


def synthesize_source(out_dir: str, params: dict[str, Any]) -> None:
    """Write ``params['images']`` SynthSource images (balanced classes) as a dataset.

    ``params['classes']`` (optional) keeps the first k classes of :data:`CLASSES`;
    ``params['extra_classes']`` (optional) appends classes of :data:`EXTRA_CLASSES`.
    The manifest's ``role`` column splits train / val (``params['val_fraction']``).
    """
    import pandas as pd

    from fillrobust.data.store import dataset_writer

    n, side, seed = params["images"], params["size"], params["seed"]
    extra = list(params.get("extra_classes", []))
    if any(c not in EXTRA_CLASSES for c in extra) or len(set(extra)) != len(extra):
        raise ValueError(f"source.synth.extra_classes: {extra} (expected distinct names from {EXTRA_CLASSES})")
    classes = CLASSES[: params.get("classes", len(CLASSES))] + extra
    labels = np.arange(n) % len(classes)
    rng = np.random.default_rng([seed, 1])
    role = np.where(rng.random(n) < params["val_fraction"], "val", "train")
    with dataset_writer(out_dir, n, side, side) as (images, _, commit):
        for i in range(n):
            images[i] = render_source_image(seed, i, classes[labels[i]], side)
        names = [classes[k] for k in labels]
        # ``container``: the dataset contract's grouping column (C-CCM's container); here the
        # category, so per-group accuracy and balanced subsets work on SynthSource as a split.
        manifest = pd.DataFrame({"index": np.arange(n), "label": labels, "class_name": names,
                                 "container": names, "role": role})
        commit(manifest, {"name": "synth_source", "classes": classes, "kind": "source",
                          "provenance": {"generator": "fillrobust.data.synthetic_source", "params": params}})
