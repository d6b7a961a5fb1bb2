"""SynthCCM: a deterministic procedural stand-in for the CORSMAL containers.

Each frame shows one of the eight C-CCM containers standing on a tabletop in
front of a real photograph (shipped with scikit-image, loaded offline), filled
with nothing, water, pasta or rice at 0 / 50 / 90 % of its bowl, sometimes
held by a hand. Transparent containers show the (refracted, tinted)
background and their content; translucent and opaque ones hide it, so their
class is ``unknown`` as in C-CCM. Frame ``i`` depends only on ``(seed, i)``,
so frames can be rendered in any order or in parallel with the same bytes.

Geometry is a radial profile per container (radius as a function of height),
which gives the distinct silhouettes: stems, the flute's narrowing, the
cocktail glass' cone, cup widths and heights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

CLASSES = ["0%", "50%", "90%", "unknown"]
LEVEL_CLASS = {0: "0%", 50: "50%", 90: "90%"}

SCENES = ["coffee", "rocket", "chelsea", "astronaut", "hubble_deep_field",
          "immunohistochemistry", "stereo_motorcycle", "camera"]
TABLES = ["brick", "gravel", "grass", "camera"]


@dataclass(frozen=True)
class Shape:
    """Radial profile of a container, in units of the frame height.

    ``profile`` lists (t, r) control points, t in [0, 1] from the base to the
    rim; ``bowl`` is the t where the inside (the part that holds content)
    begins, so stemmed glasses hold nothing in their stem.
    """

    height: float
    profile: tuple[tuple[float, float], ...]
    bowl: float
    colour: tuple[float, float, float]


# The eight C-CCM containers. Heights and radii are relative to the frame
# height; colours are the body tint (transparent) or paint (opaque).
SHAPES: dict[str, Shape] = {
    "red_cup": Shape(0.42, ((0, .095), (1, .135)), 0.04, (.80, .10, .12)),
    "small_white_cup": Shape(0.30, ((0, .080), (1, .110)), 0.05, (.93, .93, .90)),
    "small_transparent_cup": Shape(0.30, ((0, .075), (1, .105)), 0.05, (.92, .95, .97)),
    "beer_cup": Shape(0.55, ((0, .085), (1, .135)), 0.03, (.95, .95, .92)),
    "green_glass": Shape(0.40, ((0, .105), (.08, .105), (1, .105)), 0.08, (.35, .80, .40)),
    "wine_glass": Shape(0.62, ((0, .110), (.03, .110), (.05, .016), (.40, .016), (.46, .080),
                                (.62, .125), (.80, .125), (1, .095)), 0.43, (.93, .95, .96)),
    "champagne_flute": Shape(0.72, ((0, .085), (.03, .085), (.05, .013), (.38, .013), (.43, .050),
                                     (.70, .068), (1, .050)), 0.41, (.93, .95, .96)),
    "cocktail_glass": Shape(0.55, ((0, .110), (.03, .110), (.05, .015), (.52, .015), (.56, .030),
                                    (1, .170)), 0.54, (.93, .95, .96)),
}

FILL_COLOURS = {
    "water": (0.55, 0.75, 0.95),
    "pasta": (0.93, 0.72, 0.30),
    "rice": (0.96, 0.94, 0.86),
}


@cache
def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float32 RGB in [0, 1]."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs come as (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3].astype(np.float32) / 255.0


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize by index arithmetic (fast, deterministic)."""
    ys = (np.arange(h) * img.shape[0] / h).astype(np.int64)
    xs = (np.arange(w) * img.shape[1] / w).astype(np.int64)
    return img[ys][:, xs]


def _random_window(rng: np.random.Generator, img: np.ndarray, h: int, w: int) -> np.ndarray:
    """A random crop of ``img`` at a random scale, resized to h x w."""
    scale = rng.uniform(0.45, 1.0)
    ch = max(8, int(img.shape[0] * scale))
    cw = max(8, min(img.shape[1], int(ch * w / h)))
    y0 = rng.integers(0, img.shape[0] - ch + 1)
    x0 = rng.integers(0, img.shape[1] - cw + 1)
    out = _resize(img[y0 : y0 + ch, x0 : x0 + cw], h, w)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _scene(rng: np.random.Generator, h: int, w: int, table_y: int, scenes: list[str]) -> tuple[np.ndarray, str]:
    """Background photograph above a textured, tinted tabletop."""
    name = scenes[rng.integers(len(scenes))]
    frame = _random_window(rng, _photo(name), h, w).copy()
    table = _random_window(rng, _photo(TABLES[rng.integers(len(TABLES))]), h - table_y, w)
    tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
    frame[table_y:] = 0.35 * table.mean(axis=2, keepdims=True) * tint + 0.45 * tint
    return frame, name


def _profile_radius(shape: Shape, t: np.ndarray) -> np.ndarray:
    ts, rs = zip(*shape.profile, strict=True)
    return np.interp(t, ts, rs)


def _noise_texture(rng: np.random.Generator, h: int, w: int, grain: int) -> np.ndarray:
    """Blocky random texture (pasta pieces, rice grains) of a given grain."""
    small = rng.random(((h + grain - 1) // grain, (w + grain - 1) // grain)).astype(np.float32)
    return np.kron(small, np.ones((grain, grain), np.float32))[:h, :w]


@dataclass
class Sample:
    """What the renderer needs to draw one frame (drawn from the frame's rng)."""

    container: str
    transparency: str
    filling_type: str
    filling_level: int
    hand: bool


def draw_sample(rng: np.random.Generator, container: str, transparency: str, hand_prob: float) -> Sample:
    """Draw filling type, level and hand occlusion for one frame."""
    filling = ["none", "water", "pasta", "rice"][rng.integers(4)]
    level = 0 if filling == "none" else int(rng.choice([50, 90]))
    return Sample(container, transparency, filling, level, bool(rng.random() < hand_prob))


def label_of(sample: Sample) -> str:
    """C-CCM class: the level when it can be seen, ``unknown`` otherwise."""
    return LEVEL_CLASS[sample.filling_level] if sample.transparency == "transparent" else "unknown"


def _geometry(rng: np.random.Generator, shape: Shape, h: int, w: int, table_y: int) -> dict[str, Any]:
    scale = rng.uniform(0.9, 1.1) * h
    height = shape.height * scale
    base = table_y + rng.uniform(-0.02, 0.04) * h
    cx = w / 2 + rng.uniform(-0.18, 0.18) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (base - yy) / height
    radius = _profile_radius(shape, np.clip(t, 0, 1)) * scale
    u = (xx - cx) / np.maximum(radius, 1e-3)  # -1..1 across the body
    inside = (t >= 0) & (t <= 1) & (np.abs(u) <= 1)
    return {"t": t, "u": u, "inside": inside, "cx": cx, "base": base, "height": height,
            "scale": scale, "xx": xx, "yy": yy}


def _content_mask(geo: dict[str, Any], shape: Shape, level: int) -> np.ndarray:
    if level == 0:
        return np.zeros_like(geo["inside"])
    top = shape.bowl + (1.0 - shape.bowl) * level / 100.0
    return geo["inside"] & (geo["t"] >= shape.bowl + 0.02) & (geo["t"] <= top) & (np.abs(geo["u"]) < 0.9)


def _draw_content(rng: np.random.Generator, frame: np.ndarray, refracted: np.ndarray, geo: dict[str, Any],
                  shape: Shape, sample: Sample) -> np.ndarray:
    """Return the view through the container: refracted background + content."""
    view = refracted.copy()
    cmask = _content_mask(geo, shape, sample.filling_level)
    if not cmask.any():
        return view
    colour = np.array(FILL_COLOURS[sample.filling_type], np.float32) * rng.uniform(0.85, 1.1)
    h, w = cmask.shape
    if sample.filling_type == "water":
        view[cmask] = 0.4 * view[cmask] + 0.6 * colour
        top = shape.bowl + (1.0 - shape.bowl) * sample.filling_level / 100.0
        # the meniscus: a bright line at the water surface, visible against any background
        surface = cmask & (np.abs(geo["t"] - top) < 1.5 / geo["height"])
        view[surface] = 0.25 * view[surface] + 0.75
    else:
        grain = 2 if sample.filling_type == "rice" else 3
        tex = _noise_texture(rng, h, w, grain)[..., None]
        view[cmask] = (colour * (0.65 + 0.5 * tex))[cmask]
    return np.clip(view, 0, 1)


def _refract(frame: np.ndarray, geo: dict[str, Any], strength: float) -> np.ndarray:
    """Background seen through a curved wall: a horizontal lens-like shift."""
    shift = strength * geo["u"] * np.sqrt(np.clip(1 - geo["u"] ** 2, 0, 1)) * geo["scale"] * 0.05
    xs = np.clip(np.round(geo["xx"] - shift), 0, frame.shape[1] - 1).astype(np.int64)
    ys = geo["yy"].astype(np.int64)
    return frame[ys, xs]


def _draw_container(rng: np.random.Generator, frame: np.ndarray, geo: dict[str, Any], shape: Shape,
                    sample: Sample, refraction: float) -> np.ndarray:
    inside, u = geo["inside"], geo["u"]
    body = np.array(shape.colour, np.float32)
    shading = (0.55 + 0.45 * np.sqrt(np.clip(1 - u**2, 0, 1)))[..., None]
    if sample.transparency == "opaque":
        look = body * shading
    else:
        seen = _draw_content(rng, frame, _refract(frame, geo, refraction), geo=geo, shape=shape,
                             sample=sample)
        alpha = 0.85 if sample.transparency == "translucent" else 0.18
        look = (1 - alpha) * seen * (0.6 + 0.4 * body) + alpha * body * shading
        wall = (np.abs(u) > 0.86)[..., None]
        look = np.where(wall, 0.6 * look + 0.4 * body * 0.75, look)
    highlight = (np.abs(u + 0.45) < 0.09)[..., None] * rng.uniform(0.15, 0.45)
    look = np.clip(look + highlight, 0, 1)
    return np.where(inside[..., None], look, frame)


def _draw_shadow(rng: np.random.Generator, frame: np.ndarray, geo: dict[str, Any], w: int) -> None:
    dx = rng.uniform(-0.12, 0.12) * w
    rx, ry = 0.13 * geo["scale"], 0.025 * geo["scale"]
    ell = ((geo["xx"] - geo["cx"] - dx) / rx) ** 2 + ((geo["yy"] - geo["base"]) / ry) ** 2 <= 1
    frame[ell & ~geo["inside"]] *= 0.6


def _draw_hand(rng: np.random.Generator, frame: np.ndarray, geo: dict[str, Any], shape: Shape) -> np.ndarray:
    """A skin-coloured hand (palm ellipse + fingers) gripping the body."""
    side = 1 if rng.random() < 0.5 else -1
    t_mid = shape.bowl + (1 - shape.bowl) * rng.uniform(0.25, 0.7)
    cy = geo["base"] - t_mid * geo["height"]
    r = _profile_radius(shape, np.array([t_mid]))[0] * geo["scale"]
    cx = geo["cx"] + side * r * rng.uniform(0.6, 1.1)
    rx, ry = 0.07 * geo["scale"], 0.095 * geo["scale"]
    palm = ((geo["xx"] - cx) / rx) ** 2 + ((geo["yy"] - cy) / ry) ** 2 <= 1
    fingers = (np.abs(geo["yy"] - cy) < ry * 0.8) & (side * (geo["cx"] - geo["xx"]) < side * (geo["cx"] - cx) + 0.2 * r) \
        & (side * (geo["xx"] - geo["cx"]) > -0.4 * r) & ((np.round(geo["yy"] - cy) % 5) < 3.5)
    fingers &= np.abs(geo["xx"] - cx) < r + rx
    hand = palm | fingers
    skin = np.array([0.87, 0.67, 0.55], np.float32) * rng.uniform(0.6, 1.1)
    frame[hand] = skin * (0.85 + 0.15 * rng.random())
    return hand


def _illuminate(rng: np.random.Generator, frame: np.ndarray, noise: float) -> tuple[np.ndarray, float]:
    gain = rng.uniform(0.6, 1.25)
    cast = rng.uniform(0.88, 1.12, size=3).astype(np.float32)
    grad = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), frame.shape[1], dtype=np.float32)
    if rng.random() < 0.5:
        grad = grad[::-1]
    out = frame * gain * cast * grad[None, :, None]
    out = out + rng.normal(0.0, noise, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 1), float(gain)


def render_frame(
    seed: int, index: int, container: str, transparency: str, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render frame ``index``: returns (uint8 H x W x 3, uint8 mask, annotation)."""
    rng = np.random.default_rng([seed, index])
    h, w = params["height"], params["width"]
    shape = SHAPES[container]
    sample = draw_sample(rng, container, transparency, params["hand_probability"])
    table_y = int(h * rng.uniform(0.72, 0.85))
    frame, scene = _scene(rng, h, w, table_y, params.get("scenes", SCENES))
    geo = _geometry(rng, shape, h, w, table_y)
    _draw_shadow(rng, frame, geo, w)
    frame = _draw_container(rng, frame, geo, shape=shape, sample=sample, refraction=params["refraction"])
    hand = _draw_hand(rng, frame, geo, shape) if sample.hand else np.zeros((h, w), bool)
    frame, gain = _illuminate(rng, frame, params["noise"])
    full = geo["inside"]
    visible = full & ~hand
    ys, xs = np.nonzero(full)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    annotation = {
        "container": container, "transparency": transparency,
        "filling_type": sample.filling_type, "filling_level": sample.filling_level,
        "label": CLASSES.index(label_of(sample)), "class_name": label_of(sample),
        "occlusion": float(1.0 - visible.sum() / max(full.sum(), 1)), "hand": sample.hand,
        "background": scene, "illumination": round(gain, 4), "box": box,
    }
    return (frame * 255 + 0.5).astype(np.uint8), visible.astype(np.uint8), annotation


def _render_chunk(args: tuple[int, list[int], list[str], list[str], dict[str, Any]]):
    seed, indices, containers, transparencies, params = args
    out = [render_frame(seed, i, c, t, params) for i, c, t in zip(indices, containers, transparencies, strict=True)]
    return indices, out


def frame_plan(count: int, containers: dict[str, dict[str, Any]]) -> list[str]:
    """Container of each frame: round-robin, so every container gets count/8 frames."""
    names = sorted(containers)
    return [names[i % len(names)] for i in range(count)]


def synthesize_frames(
    out_dir: str, params: dict[str, Any], containers: dict[str, dict[str, Any]], workers: int = 1
) -> None:
    """Render ``params['frames']`` SynthCCM frames into a dataset folder.

    Frames are rendered in chunks by ``workers`` processes and written into
    memory-mapped arrays; the result does not depend on ``workers``.
    """
    import multiprocessing as mp

    import pandas as pd
    from tqdm import tqdm

    from fillrobust.data.store import dataset_writer

    unknown = sorted(set(containers) - set(SHAPES))
    if unknown:
        raise ValueError(f"data.containers: no SynthCCM shape for {unknown}; known: {sorted(SHAPES)}")
    count, h, w, seed = params["frames"], params["height"], params["width"], params["seed"]
    plan = frame_plan(count, containers)
    chunk = 64
    jobs = [(seed, list(range(s, min(s + chunk, count))), plan[s : s + chunk],
             [containers[c]["transparency"] for c in plan[s : s + chunk]], params)
            for s in range(0, count, chunk)]
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    with dataset_writer(out_dir, count, h, w, with_masks=True) as (images, masks, commit):
        ctx = mp.get_context("fork")
        with ctx.Pool(workers) if workers > 1 else _Serial() as pool:
            for indices, rendered in tqdm(pool.imap(_render_chunk, jobs), total=len(jobs),
                                          desc="render", mininterval=5):
                for i, (frame, mask, ann) in zip(indices, rendered, strict=True):
                    images[i], masks[i] = frame, mask
                    rows[i] = {"index": i, **ann}
        manifest = pd.DataFrame(rows)
        commit(manifest, {"name": "synth_ccm_frames", "classes": CLASSES, "kind": "frames",
                          "provenance": {"generator": "fillrobust.data.synthetic", "params": params,
                                         "containers": containers}})


class _Serial:
    """Stand-in for a process pool when one worker is asked for."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def imap(func: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        return map(func, jobs)
