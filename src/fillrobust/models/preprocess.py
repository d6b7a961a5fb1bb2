"""Fixed input preprocessing inside the model (thesis Tab. 5.1: LP, Gray).

A preprocessing is parameter-free and differentiable, and it sits in the
model before the normaliser, so it applies identically at training, clean
evaluation and attack time (attacks and corruptions act on the raw image).
It has no state-dict entries: a preprocessed model loads plain ResNet-18
weights and vice versa; the checkpoint sidecar's ``architecture`` names it
(``resnet18+lowpass``), so every loader that builds ``info['architecture']``
gets the same model.

- ``lowpass``: keep the top-left ``b x b`` block of the orthonormal 2-D DCT
  per channel (``fillrobust.data.frequency``), ``b = block_size_for(side)``:
  16 at 32 px as the thesis on CIFAR-10, the same share of the spectrum at
  other sizes. Float in, float out, no clipping (the thesis filters float
  images).
- ``gray``: ITU-R 601-2 luma repeated in the three channels.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

PREPROCESSINGS: tuple[str, ...] = ("none", "lowpass", "gray")

#: ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


@functools.lru_cache(maxsize=16)
def _lowpass_mask(height: int, width: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    from fillrobust.data.frequency import band_mask, block_size_for

    b = block_size_for(min(height, width))
    return torch.from_numpy(band_mask(height, width, b, "top_left")).to(device=device, dtype=dtype)


class LowPass(nn.Module):
    """DCT low-pass: ``IDCT(mask * DCT(x))`` with the top-left block kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from fillrobust.data.frequency import dct2, idct2

        mask = _lowpass_mask(x.shape[-2], x.shape[-1], x.dtype, str(x.device))
        return idct2(dct2(x) * mask)


class Gray(nn.Module):
    """Luma in three equal channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"gray preprocessing: expected 3 channels (RGB), got {x.shape[1]}")
        luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype)
        return torch.einsum("nchw,c->nhw", x, luma)[:, None].expand_as(x)


def build_preprocess(name: str) -> nn.Module:
    """The preprocessing module ``name`` (``none`` is the identity)."""
    if name == "none":
        return nn.Identity()
    if name == "lowpass":
        return LowPass()
    if name == "gray":
        return Gray()
    raise ValueError(f"preprocess: unknown name {name!r}; expected one of {list(PREPROCESSINGS)}")
