"""Contact sheets of PRIME samples on C-CCM crops (thesis Figs. 5.6-5.8, B.1-B.3, 5.2).

One sheet per primitive: rows are smoothness levels (spectral kernel K_omega,
spatial cut K_tau, colour frequencies K_gamma), columns the original image then
increasing strength (fractions of the strategy's maximum: spectral / colour std
``f * sigma_max``, spatial temperature ``T1 + f (T2 - T1)`` between the bounds of
the cut). Each row uses one random draw scaled across its columns, so a row
shows one transform growing. ``prime.png`` shows full PRIME samples with the
strength factor alpha = f. Images: the first crop of each container (sorted by
name) in the dataset. Same inputs and seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fillrobust.augment import _random
from fillrobust.augment.diffeo import random_diffeo, temperature_range
from fillrobust.augment.prime import PRIME, color_transform, resolve_prime_params, spectral_filter
from fillrobust.data.store import atomic_dir, read_dataset
from fillrobust.report.figures import plt, save_png

GAP = 2  # white pixels between tiles


def pick_images(dataset_dir: str | Path, count: int) -> tuple[np.ndarray, list[str]]:
    """The first crop of each container, containers sorted by name, up to ``count``."""
    ds = read_dataset(dataset_dir)
    first = ds.manifest.sort_values("index").groupby("container", sort=True)["index"].first()
    first = first.iloc[:count]
    position = {idx: pos for pos, idx in enumerate(ds.manifest["index"].to_numpy())}
    rows = [position[i] for i in first.to_numpy()]
    return np.asarray(ds.images[rows]), list(first.index)


def _row(x: torch.Tensor, strengths: list[float], seed: int,
         transform: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> list[torch.Tensor]:
    """The original, then ``transform(x, f, g)`` per strength, each from the same seeded draw."""
    return [x] + [transform(x, f, torch.Generator().manual_seed(seed)) for f in strengths]


def primitive_rows(x: torch.Tensor, primitive: str, levels: list[int], strengths: list[float],
                   params: Mapping[str, Any], seed: int) -> list[list[torch.Tensor]]:
    """Rows (one per smoothness level) of tiles ``(N, 3, H, W)`` of one primitive."""
    p = resolve_prime_params(params)
    prime = PRIME(p)
    n, c, side = x.shape[0], x.shape[1], min(x.shape[2:])
    rows = []
    for i, level in enumerate(levels):
        row_seed = seed + 1000 * i
        if primitive == "spectral":
            def tf(im: torch.Tensor, f: float, g: torch.Generator, k: int = level) -> torch.Tensor:
                return spectral_filter(im, f * prime.spectral_max * _random.randn((n, k, k), g, im.device))
        elif primitive == "spatial":
            cut = torch.full((n,), level, dtype=torch.long)
            t1, t2 = temperature_range(side, cut)

            def tf(im: torch.Tensor, f: float, g: torch.Generator, cut: torch.Tensor = cut,
                   t1: torch.Tensor = t1, t2: torch.Tensor = t2) -> torch.Tensor:
                return random_diffeo(im, cut, t1 + f * (t2 - t1), generator=g, max_cut=int(cut.max()))
        elif primitive == "color":
            def tf(im: torch.Tensor, f: float, g: torch.Generator, k: int = level) -> torch.Tensor:
                beta = f * prime.color_max * _random.randn((n, c, k), g, im.device)
                return color_transform(im, beta, torch.ones(n, dtype=torch.long))
        else:
            raise ValueError(f"primitive: expected spectral, spatial or color, got {primitive!r}")
        rows.append(_row(x, strengths, row_seed, tf))
    return rows


def prime_rows(x: torch.Tensor, strengths: list[float], params: Mapping[str, Any], seed: int,
               samples: int = 2) -> list[list[torch.Tensor]]:
    """Rows of full PRIME samples: sample ``s`` at strength factor ``f`` per column."""
    p = resolve_prime_params(params)
    rows = []
    for s in range(samples):
        rows.append([x] + [PRIME({**p, "strength": f})(x, torch.Generator().manual_seed(seed + 7 * s))
                           for f in strengths])
    return rows


def mosaic(rows: list[list[torch.Tensor]]) -> np.ndarray:
    """Tiles ``rows[r][c]`` (N, 3, H, W) -> one uint8 image: per image a block of rows."""
    n, _, h, w = rows[0][0].shape
    n_rows, n_cols = len(rows), len(rows[0])
    out = np.full((n * n_rows * (h + GAP), n_cols * (w + GAP), 3), 255, dtype=np.uint8)
    for img in range(n):
        for r, row in enumerate(rows):
            for col, tiles in enumerate(row):
                tile = (tiles[img].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
                y, x = (img * n_rows + r) * (h + GAP), col * (w + GAP)
                out[y : y + h, x : x + w] = tile
    return out


def _plot(grid: np.ndarray, tile: tuple[int, int], row_labels: list[str], col_labels: list[str],
          title: str, path: Path) -> None:
    h, w = tile
    fig, ax = plt.subplots(figsize=(0.8 * len(col_labels), 0.8 * len(row_labels) + 0.4))  # ~0.8 in per tile
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([c * (w + GAP) + w / 2 for c in range(len(col_labels))])
    ax.set_xticklabels(col_labels, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([r * (h + GAP) + h / 2 for r in range(len(row_labels))])
    ax.set_yticklabels(row_labels, fontsize=6)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=8)
    save_png(fig, path)


SMOOTHNESS = {"spectral": ("spectral_kernels", "K_omega"), "spatial": ("spatial_cuts", "K_tau"),
              "color": ("color_cuts", "K_gamma")}


def write_prime_sheets(dataset_dir: str | Path, prime_params: Mapping[str, Any] | None,
                       sheet: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``spectral.png``, ``spatial.png``, ``color.png`` and ``prime.png`` into ``out_dir``.

    ``prime_params``: the PRIME params of the strategy (their maxima set the strengths);
    ``sheet``: ``images``, ``seed``, ``strengths`` and the smoothness levels per primitive.
    """
    images, containers = pick_images(dataset_dir, sheet["images"])
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    strengths = [float(f) for f in sheet["strengths"]]
    cols = ["original"] + [f"{f:g} x max" for f in strengths]
    tile = tuple(x.shape[2:])
    written = []
    with torch.no_grad(), atomic_dir(out_dir) as tmp:
        for primitive, (key, symbol) in SMOOTHNESS.items():
            levels = [int(v) for v in sheet[key]]
            rows = primitive_rows(x, primitive, levels, strengths=strengths, params=prime_params or {},
                                  seed=sheet["seed"])
            labels = [f"{c} {symbol}={v}" for c in containers for v in levels]
            _plot(mosaic(rows), tile, labels, col_labels=cols,
                  title=f"{primitive}: rows smoothness, columns strength",
                  path=tmp / f"{primitive}.png")
            written.append(Path(out_dir) / f"{primitive}.png")
        rows = prime_rows(x, strengths, prime_params or {}, sheet["seed"])
        labels = [f"{c} sample {s + 1}" for c in containers for s in range(len(rows))]
        cols_prime = ["original"] + [f"alpha={f:g}" for f in strengths]
        _plot(mosaic(rows), tile, labels, col_labels=cols_prime,
              title="PRIME samples (strength factor alpha)", path=tmp / "prime.png")
        written.append(Path(out_dir) / "prime.png")
    return written
