"""PRIME data augmentation (Modas et al. 2021; thesis ch. 5, Algorithm 3, eq. 5.9, App. B.2).

An image ``x`` (float32, ``[0, 1]``) goes through ``width`` chains. At each of ``depth``
steps every chain draws uniformly from {Id, spectral, spatial, colour} (the identity gives
the stochastic depth of Alg. 3); every primitive clips to ``[0, 1]``. Chains are mixed with
Dirichlet(1) weights into ``x_tilde`` and the output is ``(1 - p) x + p x_tilde`` with
``p ~ Beta(mix_a, mix_b)`` (eq. 5.9, C-CCM variant). All randomness is per image.

Efficiency: at each depth step the (image, chain) rows are grouped by the primitive they
drew and each primitive runs once on its group only (index_select / index_copy); the
identity costs nothing. The official code instead runs every primitive on the whole
(batch x width) tensor and selects with masks.

Strength convention (my reading of the thesis): the thesis gives variances
(C-CCM: sigma_omega^2 = 0.01, sigma_gamma^2 = 0.001) and says the strength ``sigma`` is drawn
``U(0, sigma_max)`` with the maximum set to the selected value (Alg. 3, App. B.2). Hence the
params hold ``*_sigma2`` = sigma_max^2 and each call draws a std ``s ~ U(0, sqrt(sigma2))``
per image (so E[s^2] = sigma2 / 3). Official-code differences, noted not followed: the
spectral identity tap is at ``ceil(K/2)`` (off-centre; here the centre ``K//2`` as eq. 5.3),
strengths are drawn once per batch (here per image), the colour variance is drawn uniform
(here the std), the colour cut is also random, and chains use a random depth 1..m over the
three primitives without Id (here Id as in Alg. 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fillrobust.augment import _random
from fillrobust.augment.diffeo import random_diffeo, sample_diffeo_params, temperature_range

# The params and their checks live in fillrobust.augment.params (no torch), re-exported here.
from fillrobust.augment.params import (  # noqa: F401
    PRESETS,
    PRIME_CCM,
    PRIME_CIFAR,
    PRIME_IMAGENET,
    PRIMITIVES,
    resolve_prime_params,
)


def check_images(x: Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating tensor ``(N, C, H, W)``."""
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images: expected a float tensor (N, C, H, W) in [0, 1], got {shape}")


# ----------------------------------------------------------------------------- spectral


def sample_fir_taps(
    n: int, kernel: int, sigma_max: float, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Per-image FIR perturbations ``omega'`` ``(n, K, K)``: i.i.d. N(0, s^2), s ~ U(0, sigma_max)."""
    s = _random.rand((n,), generator, device) * sigma_max
    return _random.randn((n, kernel, kernel), generator, device) * s[:, None, None]


def spectral_filter(x: Tensor, taps: Tensor) -> Tensor:
    """``x * (delta + omega')`` per image (one filter shared by the channels), zero padding, clip.

    The identity tap is at the centre ``K // 2`` (eq. 5.3). One grouped convolution with
    the images as groups and the channels as the convolution batch.
    """
    n, k = x.shape[0], taps.shape[-1]
    weight = taps.clone()
    weight[:, k // 2, k // 2] += 1.0
    out = F.conv2d(x.transpose(0, 1), weight[:, None], padding=k // 2, groups=n)
    return out.transpose(0, 1).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- colour


def sample_color_params(
    n: int,
    channels: int,
    cut: int,
    band: int | None,
    sigma_max: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Per-image colour coefficients ``beta (n, C, Delta)`` and first frequency ``k0 (n,)``.

    ``beta ~ N(0, s^2)`` per image and channel, ``s ~ U(0, sigma_max)`` per image. Without a
    band all frequencies 1..cut are used (``k0 = 1``); with a band ``Delta`` consecutive
    frequencies start at ``k0 ~ U{1, ..., cut - Delta + 1}`` (thesis 5.3.1).
    """
    delta = cut if band is None else band
    s = _random.rand((n,), generator, device) * sigma_max
    beta = _random.randn((n, channels, delta), generator, device) * s[:, None, None]
    k0 = _random.randint(cut - delta + 1, (n,), generator, device) + 1
    return beta, k0


def color_transform(x: Tensor, beta: Tensor, k0: Tensor, reanchor: int = 32) -> Tensor:
    """``x + sum_j beta_j sin(pi (k0 + j) x)`` per image and channel, then clip (eq. 5.6).

    sin(k t) follows the recurrence ``s_{k+1} = 2 cos(t) s_k - s_{k-1}`` (two products per
    frequency instead of a sine); it is re-anchored with exact sines every ``reanchor`` terms
    to bound float32 error growth.
    """
    t = math.pi * x
    kk = k0.to(x.dtype)[:, None, None, None]
    two_cos = 2.0 * torch.cos(t)
    acc = x.clone()
    s_prev = s_cur = t  # replaced at j = 0
    for j in range(beta.shape[-1]):
        if j % reanchor == 0:
            s_prev, s_cur = torch.sin((kk + j - 1) * t), torch.sin((kk + j) * t)
        else:  # in place: s_prev becomes s_{k+1}
            s_prev, s_cur = s_cur, s_prev.neg_().addcmul_(two_cos, s_cur)
        acc.addcmul_(beta[:, :, j, None, None], s_cur)
    return acc.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- PRIME


class PRIME:
    """Batched PRIME augmentation; call as ``prime(x, generator) -> x_hat``.

    ``x``: float tensor ``(N, C, H, W)`` in ``[0, 1]`` on any device. Same generator state
    gives the same bytes on CPU. An image augmented alone and the same image inside a batch
    get different draws (the random streams are consumed batch-wise).

    Params (defaults: :data:`PRIME_CCM`; ``preset`` picks ``ccm``, ``cifar`` or ``imagenet``):
    ``width`` n and ``depth`` m (Alg. 3); ``mix_a``, ``mix_b``: Beta law of p (eq. 5.9);
    ``primitives``: subset of spectral/spatial/color (ablation, Tab. 5.5); ``identity``: Id
    in the uniform draw (Alg. 3; False = official op set); ``strength``: factor alpha on all
    strengths (Fig. 5.4: std maxima x alpha, T x alpha^2); ``spectral_kernel`` K_omega (odd),
    ``spectral_sigma2`` sigma_omega^2; ``spatial_cut_min``/``spatial_cut_max`` range of the
    cut c (K_tau is the max), ``spatial_concentration`` a of the Beta(a, a) laws of c and T
    (0.5 official, 1 uniform); ``color_cut`` K_gamma, ``color_band`` Delta (null = all),
    ``color_sigma2`` sigma_gamma^2. The temperature bounds use the image side n = min(H, W).
    """

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params = resolve_prime_params(params)
        p, a = self.params, self.params["strength"]
        self.spectral_max = a * math.sqrt(p["spectral_sigma2"])
        self.color_max = a * math.sqrt(p["color_sigma2"])
        self.temperature_scale = a * a  # displacement scales with sqrt(T)

    def apply_primitive(self, name: str, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Apply one freshly drawn ``name`` primitive to every image of ``x``."""
        p, n, dev = self.params, x.shape[0], x.device
        if name == "spectral":
            taps = sample_fir_taps(n, p["spectral_kernel"], self.spectral_max, generator, dev)
            return spectral_filter(x, taps)
        if name == "spatial":
            cut, temp = sample_diffeo_params(
                n,
                min(x.shape[2:]),
                p["spatial_cut_min"],
                cut_max=p["spatial_cut_max"],
                concentration=p["spatial_concentration"],
                generator=generator,
                device=dev,
            )
            return random_diffeo(
                x, cut, temp * self.temperature_scale, generator=generator, max_cut=p["spatial_cut_max"]
            )
        if name == "color":
            beta, k0 = sample_color_params(
                n, x.shape[1], p["color_cut"], band=p["color_band"], sigma_max=self.color_max,
                generator=generator, device=dev
            )
            return color_transform(x, beta, k0)
        raise ValueError(f"primitive: expected one of {list(PRIMITIVES)}, got {name!r}")

    def chains(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """The ``width`` augmented chains, ``(width, N, C, H, W)``, grouped per primitive."""
        p = self.params
        n, width, prims = x.shape[0], p["width"], p["primitives"]
        offset = 1 if p["identity"] else 0  # op code 0 is the identity
        ops = _random.randint(len(prims) + offset, (p["depth"], width * n), generator, x.device)
        out = x.repeat(width, 1, 1, 1)
        for step in ops:
            for code, name in enumerate(prims, start=offset):
                idx = (step == code).nonzero().squeeze(1)
                if idx.numel():
                    out.index_copy_(0, idx, self.apply_primitive(name, out[idx], generator))
        return out.view(width, *x.shape)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images(x)
        p, n = self.params, x.shape[0]
        chains = self.chains(x, generator)
        weights = _random.dirichlet_ones(n, p["width"], generator, x.device).to(x.dtype)
        x_tilde = torch.einsum("nw,wnchv->nchv", weights, chains)
        mix = _random.beta(p["mix_a"], p["mix_b"], n, generator, x.device).to(x.dtype)
        mix = mix[:, None, None, None]
        return ((1.0 - mix) * x + mix * x_tilde).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- JSD loss


def jsd_loss(
    logits_clean: Tensor, logits_aug1: Tensor, logits_aug2: Tensor, weight: float = 12.0
) -> Tensor:
    """Jensen-Shannon consistency term: ``weight * mean_i KL(p_i || M)``, M the mean of the p_i.

    The caller adds the cross-entropy on the clean logits (AugMix / PRIME, weight 12).
    KL is summed over classes and averaged over the batch.
    """
    logs = [F.log_softmax(z, dim=1) for z in (logits_clean, logits_aug1, logits_aug2)]
    mixture = torch.stack([lp.exp() for lp in logs]).mean(0).clamp(1e-7, 1.0).log()
    kl = [F.kl_div(mixture, lp, reduction="batchmean", log_target=True) for lp in logs]
    return weight * sum(kl) / 3.0


# ----------------------------------------------------------------------------- contact sheet


def _level_rows(x: Tensor, p: Mapping[str, Any], levels: list[float], seed: int) -> list[Tensor]:
    """Rows (spectral, spatial, colour, PRIME) of ``x``: the original, then each strength."""
    g, dev = torch.Generator().manual_seed(seed), x.device
    n, c, k = x.shape[0], x.shape[1], p["spectral_kernel"]
    full = PRIME({**p, "strength": 1.0})
    delta = p["color_band"] or p["color_cut"]
    cut = torch.full((n,), p["spatial_cut_max"], dtype=torch.long)
    t1, t2 = temperature_range(min(x.shape[2:]), cut)
    rows: list[list[Tensor]] = [[x] for _ in range(4)]
    for f in levels:
        taps = f * full.spectral_max * _random.randn((n, k, k), g, dev)
        rows[0].append(spectral_filter(x, taps))
        rows[1].append(random_diffeo(x, cut, t1 + f * (t2 - t1), generator=g))
        beta = f * full.color_max * _random.randn((n, c, delta), g, dev)
        k0 = _random.randint(p["color_cut"] - delta + 1, (n,), g, dev) + 1
        rows[2].append(color_transform(x, beta, k0))
        rows[3].append(PRIME({**p, "strength": f})(x, g))
    return [torch.cat(r, dim=3) for r in rows]


def contact_sheet(
    images: np.ndarray,
    params: Mapping[str, Any] | None,
    out_png: str | Path,
    seed: int = 0,
    levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
    tile: int = 96,
) -> Path:
    """Write a PNG grid of PRIME samples (thesis Figs. 5.6-5.8, B.1-B.3).

    For each image four rows (spectral, spatial, colour, full PRIME); columns: the original,
    then strength fractions ``levels`` of the maximum (spectral/colour: fixed std
    ``f * sigma_max``; spatial: cut = cut_max, ``T = T1 + f (T2 - T1)``; PRIME: ``strength=f``).
    ``images``: uint8 ``(N, H, W, 3)``. Tiles are upscaled (nearest) to about ``tile`` px.
    """
    from PIL import Image, ImageDraw

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    p = resolve_prime_params(params)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    rows = _level_rows(x, p, list(levels), seed)
    grid = torch.stack(rows, dim=1).flatten(0, 1)  # (N*4, C, H, W*(L+1))
    grid = torch.cat(list(grid), dim=1)  # (C, N*4*H, W*(L+1))
    scale = max(1, tile // x.shape[2])
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    label_w, tile_h = 60, x.shape[2] * scale
    img = Image.new("RGB", (arr.shape[1] + label_w, arr.shape[0]), "white")
    img.paste(Image.fromarray(arr), (label_w, 0))
    draw = ImageDraw.Draw(img)
    for r in range(len(rows) * x.shape[0]):
        draw.text(
            (4, r * tile_h + tile_h // 2),
            ("spectral", "spatial", "colour", "PRIME")[r % 4],
            fill="black",
        )
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(out_png)
    return out_png
