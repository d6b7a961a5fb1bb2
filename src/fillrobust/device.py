"""Device and determinism setup shared by every job."""

from __future__ import annotations

import os
import random

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


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed every RNG and make CPU kernels deterministic.

    The thread count is fixed too: a different count can change the order of
    floating-point reductions and so the bytes of a checkpoint.
    """
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
