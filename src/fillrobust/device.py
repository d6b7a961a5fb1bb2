"""Device and determinism setup shared by every job."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch

from fillrobust.gpu_slots import claim_slot


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` fails clearly without a GPU.

    ``auto`` / ``cuda`` on a machine with several visible GPUs give this job
    one of its own (``fillrobust.gpu_slots``), not every job GPU 0; an explicit
    ``cuda:N`` is taken as given.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was asked for but no CUDA device is available")
    if name != "cuda":
        return torch.device(name)
    device = torch.device("cuda", claim_slot(torch.cuda.device_count()))
    torch.cuda.set_device(device)
    return device


def seed_everything(seed: int, threads: int | None = None, deterministic: bool = True) -> None:
    """Seed every RNG and make kernels deterministic.

    The thread count is fixed too: a different count can change the order of
    floating-point reductions and so the bytes of a checkpoint. A training may
    ask for ``deterministic=False`` (``train.*.deterministic``): the GPU path
    then lets cuDNN pick its fastest kernels (``cudnn.benchmark``), at the cost
    of run-to-run bit differences; CPU results are unaffected in practice.
    """
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str = "fp32") -> Any:
    """Mixed precision around a training step: ``fp32`` (default: no autocast, the
    bytes of every checkpoint stay as they were), ``bf16`` or ``fp16`` autocast on
    ``device`` (fp16 wants the gradient scaler of :func:`grad_scaler`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {sorted(PRECISIONS)}; got {precision!r}")
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def full_precision(x: torch.Tensor) -> Any:
    """An fp32 region inside an autocast step: attacks and margins compute their
    gradients and projections in fp32 (a bf16 sign or l2 norm of a small
    perturbation loses the perturbation)."""
    return torch.autocast(x.device.type, enabled=False)


def grad_scaler(device: torch.device, precision: str = "fp32") -> torch.amp.GradScaler:
    """Loss scaling for fp16 (its small exponent underflows gradients); a pass-through otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
