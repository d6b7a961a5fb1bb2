"""DCT utilities and frequency-derived datasets (thesis 4.3, App. A).

The DCT is the orthonormal 2-D DCT-II applied per channel over the two image
axes, written as matrix products ``D_H @ X @ D_W^T`` with cached DCT matrices,
so it runs batched on the device of its input (torch) or on numpy chunks.

Dataset variants (``derive_dataset``):

- ``flipped``: ``x' = IDCT(flip(DCT(x)))`` with one vertical and one horizontal
  flip of the coefficient array (thesis 4.3.1);
- ``lowpass`` / ``highpass``: keep the top-left / bottom-right ``b x b`` DCT block
  (thesis 4.3.2, b = 16 for 32 px CIFAR-10, scaled by ``block_size_for``);
- ``lp_hp``: union of the low- and high-pass versions (thesis 4.3.3);
- ``grayscale``: luma repeated in 3 channels.

Deviation forced by uint8 storage: the thesis filters float images (its code
works on ``x/255`` and normalises the result with the processed data's
statistics), where flipped or high-passed images take negative values. To keep
them representable in uint8 every linear filter ``T`` here is applied around a
constant ``center`` (default 127.5): ``x' = center + T(x - center)``. For the
low-pass this equals ``T(x)`` (the DC term lies in the block); for the others it
adds a fixed image-independent offset, so ``x'`` is still an invertible affine
function of ``x`` up to clipping to [0, 255] and rounding. The clipped share of
pixels is recorded in the dataset meta. Because of that quantisation, ``flip``
is an exact involution only on float images.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.data import store

VARIANTS = ("flipped", "lowpass", "highpass", "lp_hp", "grayscale")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
DEFAULT_PARAMS: dict[str, Any] = {
    "block_size": None,  # None -> block_size_for(min(H, W), base, base_side)
    "base": 16,
    "base_side": 32,
    "center": 127.5,
    "flip_scale": 1.0,  # contrast factor of the flipped image around center (< 1 clips less)
    "chunk_size": 1024,
}


# --------------------------------------------------------------------- DCT core


def dct_matrix_np(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (n x n, float64): ``DCT(v) = D @ v``."""
    if n < 1:
        raise ValueError(f"DCT size n must be >= 1, got {n}")
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    mat = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    mat[0] /= np.sqrt(2.0)
    return mat


@functools.lru_cache(maxsize=32)
def _dct_matrix_cached(n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.from_numpy(dct_matrix_np(n)).to(device=device, dtype=dtype)


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> torch.Tensor:
    """Cached orthonormal DCT-II matrix as a tensor on ``device``."""
    return _dct_matrix_cached(int(n), dtype, str(torch.device(device)))


def _check_float_tensor(x: torch.Tensor) -> None:
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor with >= 2 dims (..., H, W), got "
                         f"{x.dtype} {tuple(x.shape)}")


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two axes (batched, on x's device)."""
    _check_float_tensor(x)
    d_h = dct_matrix(x.shape[-2], x.dtype, x.device)
    d_w = dct_matrix(x.shape[-1], x.dtype, x.device)
    return d_h @ x @ d_w.T


def idct2(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of ``dct2`` (orthonormal DCT-III) over the last two axes."""
    _check_float_tensor(coeffs)
    d_h = dct_matrix(coeffs.shape[-2], coeffs.dtype, coeffs.device)
    d_w = dct_matrix(coeffs.shape[-1], coeffs.dtype, coeffs.device)
    return d_h.T @ coeffs @ d_w


def dct2_np(x: np.ndarray, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Orthonormal 2-D DCT-II of a float numpy array over ``axes`` (float64 out)."""
    return _apply_hw(np.asarray(x, dtype=np.float64), axes, inverse=False)


def idct2_np(coeffs: np.ndarray, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Inverse of ``dct2_np`` over ``axes``."""
    return _apply_hw(np.asarray(coeffs, dtype=np.float64), axes, inverse=True)


def _apply_hw(x: np.ndarray, axes: tuple[int, int], inverse: bool) -> np.ndarray:
    moved = np.moveaxis(x, axes, (-2, -1))
    d_h, d_w = dct_matrix_np(moved.shape[-2]), dct_matrix_np(moved.shape[-1])
    out = d_h.T @ moved @ d_w if inverse else d_h @ moved @ d_w.T
    return np.moveaxis(out, (-2, -1), axes)


# ------------------------------------------------------ spectral operations (float)


def _check_block(b: int, height: int, width: int) -> None:
    if not 1 <= b <= min(height, width):
        raise ValueError(f"block size b must be in [1, {min(height, width)}] for "
                         f"{height}x{width} images, got {b}")


def flip_float(x: np.ndarray, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Frequency flip ``IDCT(flip(DCT(x)))`` of float images (an exact involution)."""
    coeffs = dct2_np(x, axes)
    return idct2_np(np.flip(coeffs, axis=axes), axes)


def band_mask(height: int, width: int, b: int, corner: str) -> np.ndarray:
    """Boolean H x W mask of the ``b x b`` DCT block at ``corner`` ('top_left'|'bottom_right')."""
    _check_block(b, height, width)
    mask = np.zeros((height, width), dtype=bool)
    if corner == "top_left":
        mask[:b, :b] = True
    elif corner == "bottom_right":
        mask[height - b :, width - b :] = True
    else:
        raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")
    return mask


def _masked_float(x: np.ndarray, b: int, corner: str, axes: tuple[int, int]) -> np.ndarray:
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axes, (-2, -1))
    mask = band_mask(moved.shape[-2], moved.shape[-1], b, corner)
    out = idct2_np(dct2_np(moved) * mask)
    return np.moveaxis(out, (-2, -1), axes)


def lowpass_float(x: np.ndarray, b: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Keep only the top-left ``b x b`` DCT block of float images."""
    return _masked_float(x, b, "top_left", axes)


def highpass_float(x: np.ndarray, b: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Keep only the bottom-right ``b x b`` DCT block of float images."""
    return _masked_float(x, b, "bottom_right", axes)


def block_size_for(image_side: int, base: int = 16, base_side: int = 32) -> int:
    """Filter block size scaled with the image side: ``round(base * side / base_side)``.

    The thesis uses b = 16 on 32 px CIFAR-10; this keeps the same share of the
    spectrum for other sizes (clamped to [1, image_side]).
    """
    if image_side < 1 or base < 1 or base_side < 1:
        raise ValueError(f"image_side, base and base_side must be >= 1, got "
                         f"{image_side}, {base}, {base_side}")
    return int(min(image_side, max(1, round(base * image_side / base_side))))


# ----------------------------------------------------------- uint8 NHWC transforms


def _to_uint8(x: np.ndarray) -> tuple[np.ndarray, int]:
    clipped = int(np.count_nonzero((x < -0.5) | (x > 255.5)))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), clipped


def _centered(
    op: Callable[[np.ndarray], np.ndarray], center: float, scale: float = 1.0
) -> Callable:
    def apply(images: np.ndarray) -> tuple[np.ndarray, int]:
        x = images.astype(np.float64) - center
        return _to_uint8(scale * op(x) + center)

    return apply


def flip_uint8(
    images: np.ndarray, center: float = 127.5, scale: float = 1.0
) -> tuple[np.ndarray, int]:
    """Frequency-flip uint8 NHWC images: ``center + scale * F(x - center)``.

    Returns (uint8 images, clipped value count). On natural 32 px images about
    10 % of the values clip at ``scale`` 1; a smaller ``scale`` trades contrast
    (quantisation) for less clipping.
    """
    return _centered(lambda x: flip_float(x, axes=(1, 2)), center, scale)(images)


def lowpass_uint8(images: np.ndarray, b: int, center: float = 127.5) -> tuple[np.ndarray, int]:
    """Low-pass uint8 NHWC images (top-left b x b DCT block); returns (images, clipped)."""
    return _centered(lambda x: lowpass_float(x, b, axes=(1, 2)), center)(images)


def highpass_uint8(images: np.ndarray, b: int, center: float = 127.5) -> tuple[np.ndarray, int]:
    """High-pass uint8 NHWC images (bottom-right b x b DCT block); returns (images, clipped)."""
    return _centered(lambda x: highpass_float(x, b, axes=(1, 2)), center)(images)


def grayscale_uint8(images: np.ndarray) -> tuple[np.ndarray, int]:
    """BT.601 luma repeated in 3 channels; returns (images, 0)."""
    luma = images.astype(np.float64) @ np.asarray(LUMA_WEIGHTS)
    gray, clipped = _to_uint8(luma)
    return np.repeat(gray[..., None], 3, axis=-1), clipped


# ------------------------------------------------------------------ dataset level


def resolve_params(params: Mapping[str, Any] | None, image_side: int) -> dict[str, Any]:
    """Merge ``params`` with defaults, validate them and resolve the block size."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown frequency params {unknown}; valid: {sorted(DEFAULT_PARAMS)}")
    out = {**DEFAULT_PARAMS, **params}
    if out["block_size"] is None:
        out["block_size"] = block_size_for(image_side, out["base"], out["base_side"])
    if not 1 <= int(out["block_size"]) <= image_side:
        raise ValueError(f"block_size must be in [1, {image_side}], got {out['block_size']}")
    if int(out["chunk_size"]) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {out['chunk_size']}")
    if not 0.0 < float(out["flip_scale"]) <= 1.0:
        raise ValueError(f"flip_scale must be in (0, 1], got {out['flip_scale']}")
    if not 0.0 <= float(out["center"]) <= 255.0:
        raise ValueError(f"center must be in [0, 255], got {out['center']}")
    return out


def _variant_ops(variant: str, p: Mapping[str, Any]) -> list[tuple[str, Callable]]:
    b, c = int(p["block_size"]), float(p["center"])
    table: dict[str, list[tuple[str, Callable]]] = {
        "flipped": [("flipped", lambda x: flip_uint8(x, c, float(p["flip_scale"])))],
        "lowpass": [("lowpass", lambda x: lowpass_uint8(x, b, c))],
        "highpass": [("highpass", lambda x: highpass_uint8(x, b, c))],
        "lp_hp": [("lowpass", lambda x: lowpass_uint8(x, b, c)),
                  ("highpass", lambda x: highpass_uint8(x, b, c))],
        "grayscale": [("grayscale", grayscale_uint8)],
    }
    if variant not in table:
        raise ValueError(f"unknown dataset variant {variant!r}; valid: {list(VARIANTS)}")
    return table[variant]


def transform_images(
    images: np.ndarray, op: Callable, out: np.ndarray, chunk_size: int
) -> int:
    """Apply ``op`` chunk by chunk from ``images`` into ``out``; return clipped count."""
    clipped = 0
    for start in range(0, images.shape[0], chunk_size):
        stop = min(start + chunk_size, images.shape[0])
        out[start:stop], n_clip = op(np.asarray(images[start:stop]))
        clipped += n_clip
    return clipped


def derive_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    variant: str,
    params: Mapping[str, Any] | None = None,
) -> Path:
    """Write the frequency ``variant`` of the dataset in ``src_dir`` to ``out_dir``.

    Variants: flipped, lowpass, highpass, lp_hp, grayscale. Images are processed
    in chunks into a memory-mapped scratch file, so memory does not grow with N.
    The manifest is copied; ``lp_hp`` stacks the low-pass then the high-pass
    copy of every image and adds a ``variant`` column (``index`` keeps the
    source index so split files still select by it). Masks are copied except
    for ``flipped`` (they no longer match the image content). The meta records
    variant, block size, center, clipped share and the parent's content hash.
    """
    src = store.read_dataset(src_dir)
    height, width = src.images.shape[1:3]
    p = resolve_params(params, min(height, width))
    ops = _variant_ops(variant, p)
    n = len(src)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = out_dir.parent / f".{out_dir.name}.scratch-{uuid.uuid4().hex[:8]}.npy"
    try:
        out = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8,
                                        shape=(n * len(ops), height, width, 3))
        clipped = sum(
            transform_images(src.images, op, out[i * n : (i + 1) * n], int(p["chunk_size"]))
            for i, (_, op) in enumerate(ops)
        )
        out.flush()
        manifest, masks = _derived_manifest(src, ops, variant)
        meta = _derived_meta(src, variant, p, clipped, out.size)
        store.write_dataset(out_dir, out, manifest, meta, masks=masks)
        del out
    finally:
        scratch.unlink(missing_ok=True)
    return out_dir


def _derived_manifest(
    src: store.Dataset, ops: list[tuple[str, Callable]], variant: str
) -> tuple[pd.DataFrame, np.ndarray | None]:
    if len(ops) == 1:
        manifest = src.manifest.copy()
    else:
        parts = [src.manifest.assign(variant=name) for name, _ in ops]
        manifest = pd.concat(parts, ignore_index=True)
    masks = None
    if src.masks is not None and variant != "flipped":
        masks = np.concatenate([np.asarray(src.masks)] * len(ops), axis=0)
    return manifest, masks


def _derived_meta(
    src: store.Dataset, variant: str, p: Mapping[str, Any], clipped: int, size: int
) -> dict[str, Any]:
    meta = {k: v for k, v in src.meta.items()
            if k not in ("count", "image_size", "files", "content_hash")}
    meta.update(
        name=f"{src.meta.get('name', 'dataset')}-{variant}",
        variant=variant,
        block_size=int(p["block_size"]) if variant in ("lowpass", "highpass", "lp_hp") else None,
        center=float(p["center"]),
        flip_scale=float(p["flip_scale"]) if variant == "flipped" else None,
        clipped_fraction=clipped / max(size, 1),
        parent={"name": src.meta.get("name"), "content_hash": src.meta.get("content_hash"),
                "path": str(src.path)},
    )
    return meta
