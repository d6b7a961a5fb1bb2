"""AugMix baseline (Hendrycks et al. 2020), batched, with ``torchvision.transforms.v2.AugMix``'s numbers.

AugMix draws its operations per image: each image gets its own Beta and Dirichlet mixing
weights and its own ``width`` chains of random operations (PIL-style uint8 ops: shear,
translate, rotate, posterize, solarize, autocontrast, equalize; with ``all_ops`` also
brightness, colour, contrast, sharpness). torchvision applies one draw to a whole batch,
so it is called per image, which made AugMix half of an AugMix training's time.

Here the per-image draws are made exactly as ``v2.AugMix`` makes them image after image
(same global-RNG calls in the same order, from a forked RNG seeded from the caller's
generator), and then each chain step applies every distinct (operation, magnitude) once to
the images that drew it, with torchvision's functional ops. Those ops treat the images of a
batch independently, so the result is ``v2.AugMix`` applied image by image, byte for byte
(tests/unit/test_augmix.py), at a fraction of the calls. ``all_ops`` defaults to False as
in the original AugMix (brightness, colour, contrast and sharpness overlap with the -C
corruptions); torchvision's default is True.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# The params and their checks live in fillrobust.augment.params (no torch), re-exported here.
from fillrobust.augment.params import AUGMIX_DEFAULTS, resolve_augmix_params  # noqa: F401

# torchvision's AugMix: 10 magnitude bins, of which the first ``severity`` are drawn from.
_PARAMETER_MAX = 10

Magnitudes = Callable[[int, int, int], Tensor | None]

# (name, magnitude bins (num_bins, height, width) -> values or None, signed), in
# torchvision's order (v2.AugMix._PARTIAL_AUGMENTATION_SPACE, then the all_ops extras):
# the draw of an operation is an index into this order.
_PARTIAL_SPACE: tuple[tuple[str, Magnitudes, bool], ...] = (
    ("ShearX", lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    ("ShearY", lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    ("TranslateX", lambda n, h, w: torch.linspace(0.0, w / 3.0, n), True),
    ("TranslateY", lambda n, h, w: torch.linspace(0.0, h / 3.0, n), True),
    ("Rotate", lambda n, h, w: torch.linspace(0.0, 30.0, n), True),
    ("Posterize", lambda n, h, w: (4 - (torch.arange(n) / ((n - 1) / 4))).round().int(), False),
    ("Solarize", lambda n, h, w: torch.linspace(1.0, 0.0, n), False),
    ("AutoContrast", lambda n, h, w: None, False),
    ("Equalize", lambda n, h, w: None, False),
)
_ALL_OPS_EXTRA: tuple[tuple[str, Magnitudes, bool], ...] = (
    ("Brightness", lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    ("Color", lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    ("Contrast", lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    ("Sharpness", lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
)


# v2.AugMix's geometry: bilinear, zero fill, no scaling.
_BILINEAR = TF.InterpolationMode.BILINEAR
_AFFINE = {"interpolation": _BILINEAR, "fill": None, "scale": 1.0}
# The all_ops extras: factor 1 + magnitude.
_ADJUST = {"Brightness": TF.adjust_brightness, "Color": TF.adjust_saturation,
           "Contrast": TF.adjust_contrast, "Sharpness": TF.adjust_sharpness}


def apply_op(images: Tensor, name: str, magnitude: float) -> Tensor:
    """One AugMix operation on uint8 ``(..., 3, H, W)`` images, as torchvision's AugMix applies it."""
    if name in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(magnitude))  # torchvision's shear angle
        shear = [deg, 0.0] if name == "ShearX" else [0.0, deg]
        return TF.affine(images, angle=0.0, translate=[0, 0], shear=shear, center=[0, 0], **_AFFINE)
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return TF.affine(images, angle=0.0, translate=shift, shear=[0.0, 0.0], **_AFFINE)
    if name == "Rotate":
        return TF.rotate(images, angle=magnitude, interpolation=_BILINEAR, fill=None)
    if name == "Posterize":
        return TF.posterize(images, bits=int(magnitude))
    if name == "Solarize":
        return TF.solarize(images, threshold=255.0 * magnitude)
    if name == "AutoContrast":
        return TF.autocontrast(images)
    if name == "Equalize":
        return TF.equalize(images)
    if name in _ADJUST:
        return _ADJUST[name](images, 1.0 + magnitude)
    raise ValueError(f"AugMix: unknown operation {name!r}")


def _draw_chains(n: int, p: Mapping[str, Any], space: tuple[tuple[str, Magnitudes, bool], ...], height: int,
                 width: int) -> tuple[Tensor, Tensor, list[list[list[tuple[str, float]]]]]:
    """Per image, v2.AugMix's draws in its order: Beta weights, chain weights, chain ops.

    Returns ``m`` (n, 2), ``weights`` (n, width) and, per image and chain, the list of
    (operation, magnitude) steps. Uses the global RNG (the caller forks and seeds it).
    """
    alpha, chains, depth, severity = float(p["alpha"]), int(p["width"]), int(p["depth"]), int(p["severity"])
    # The bins as torchvision computes them per draw, computed once (same values).
    table = [(name, fn(_PARAMETER_MAX, height, width), signed) for name, fn, signed in space]
    ms, ws, ops = [], [], []
    for _ in range(n):
        m = torch._sample_dirichlet(torch.tensor([alpha, alpha]).expand(1, -1))
        w = torch._sample_dirichlet(torch.tensor([alpha] * chains).expand(1, -1)) * m[:, 1].reshape(1, -1)
        image_ops = []
        for _ in range(chains):
            steps = depth if depth > 0 else int(torch.randint(low=1, high=4, size=(1,)).item())
            chain = []
            for _ in range(steps):
                name, magnitudes, signed = table[int(torch.randint(len(table), ()))]
                magnitude = 0.0
                if magnitudes is not None:
                    magnitude = float(magnitudes[int(torch.randint(severity, ()))])
                    if signed and torch.rand(()) <= 0.5:
                        magnitude *= -1
                chain.append((name, magnitude))
            image_ops.append(chain)
        ms.append(m)
        ws.append(w)
        ops.append(image_ops)
    return torch.cat(ms), torch.cat(ws), ops


def _run_chain(batch: Tensor, steps: list[list[tuple[str, float]]]) -> Tensor:
    """Apply each image's chain (``steps[i]``) to ``batch``, one call per distinct op and step."""
    aug = batch.clone()
    for k in range(max(len(s) for s in steps)):
        groups: dict[tuple[str, float], list[int]] = {}
        for i, chain in enumerate(steps):
            if k < len(chain):
                groups.setdefault(chain[k], []).append(i)
        for (name, magnitude), members in groups.items():
            idx = torch.tensor(members)
            aug[idx] = apply_op(aug[idx], name, magnitude)
    return aug


def _seed_and_uint8(x: Tensor, generator: torch.Generator | None) -> tuple[int, Tensor]:
    """The seed of the forked RNG (one draw from ``generator``) and the images as uint8."""
    device = "cpu" if generator is None else generator.device
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
    return seed, (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


@contextmanager
def _seeded_global_rng(x: Tensor, seed: int) -> Iterator[None]:
    """A forked global RNG seeded with ``seed``: torchvision draws from the global RNG."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class AugMix:
    """Per-image AugMix, batched; call as ``augmix(x, generator)`` with float ``(N, 3, H, W)`` in [0, 1]."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = resolve_augmix_params(params)
        self.params = p
        self.space = _PARTIAL_SPACE + (_ALL_OPS_EXTRA if p["all_ops"] else ())

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        seed, x8 = _seed_and_uint8(x, generator)
        with _seeded_global_rng(x, seed):
            m, weights, ops = _draw_chains(len(x8), self.params, self.space, x8.shape[-2], x8.shape[-1])
        shape = (len(x8), 1, 1, 1)
        mix = m[:, 0].reshape(shape) * x8
        for c in range(int(self.params["width"])):
            aug = _run_chain(x8, [image_ops[c] for image_ops in ops])
            mix.add_(weights[:, c].reshape(shape) * aug)
        return mix.to(torch.uint8).to(device=x.device, dtype=x.dtype) / 255.0


def reference_augmix(x: Tensor, params: Mapping[str, Any] | None, generator: torch.Generator | None) -> Tensor:
    """torchvision's ``v2.AugMix`` called image by image: what :class:`AugMix` equals, slower.

    The tests compare the two byte for byte; ``bench_prime`` times them.
    """
    p = resolve_augmix_params(params)
    op = v2.AugMix(severity=p["severity"], mixture_width=p["width"], chain_depth=p["depth"],
                   alpha=p["alpha"], all_ops=p["all_ops"])
    seed, x8 = _seed_and_uint8(x, generator)
    with _seeded_global_rng(x, seed):
        out = torch.stack([op(img) for img in x8])
    return out.to(device=x.device, dtype=x.dtype) / 255.0
