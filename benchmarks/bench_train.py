"""ST training throughput: our loop vs a bare PyTorch loop, and GFLOP/s vs matmul peak.

Both loops train the same model (ResNet-18, 4 classes, channels_last) on the
same uint8 data and batches in this one process, so the ratio is meaningful
even though absolute timings vary run to run.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fillrobust.models.resnet import build_model
from fillrobust.train.loop import TrainData, fit

N, SIDE, BATCH = 640, 32, 64


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 4).to(memory_format=torch.channels_last)


def _bare_loop(images: np.ndarray, labels: np.ndarray, epochs: int) -> float:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    tic = time.perf_counter()
    for _ in range(epochs):
        for start in range(0, N - BATCH + 1, BATCH):
            x = torch.from_numpy(images[start : start + BATCH]).permute(0, 3, 1, 2).float().div_(255)
            y = torch.from_numpy(labels[start : start + BATCH])
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * (N // BATCH) * BATCH / (time.perf_counter() - tic)


def _our_loop(images: np.ndarray, labels: np.ndarray, epochs: int) -> float:
    model = _model()
    data = TrainData(images, labels, np.arange(N), np.arange(0))
    hyper = {"epochs": epochs, "batch_size": BATCH, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
             "balanced_sampling": True}
    tic = time.perf_counter()
    fit(model, data, hyper, seed=0, device=torch.device("cpu"), log=lambda _: None)
    return epochs * (N // BATCH) * BATCH / (time.perf_counter() - tic)


def _step_flops() -> float:
    model = _model()
    x = torch.rand(BATCH, 3, SIDE, SIDE).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(BATCH, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def _matmul_peak() -> float:
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    a @ b
    reps, tic = 8, time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * 2048**3 / (time.perf_counter() - tic)


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, SIDE, SIDE, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, N).astype(np.int64)
    _bare_loop(images, labels, 1)  # warm-up (allocator, kernels)
    bare = max(_bare_loop(images, labels, 2) for _ in range(2))
    ours = max(_our_loop(images, labels, 2) for _ in range(2))
    peak = _matmul_peak()
    gflops = _step_flops() * ours / BATCH
    print(f"train step, ours vs bare PyTorch loop (ResNet-18, {SIDE}px, batch {BATCH}): "
          f"{ours:.0f} vs {bare:.0f} img/s, ratio {ours / bare:.3f} (goal >= 0.95)")
    print(f"training compute: {gflops / 1e9:.1f} GFLOP/s = {100 * gflops / peak:.1f} % of the "
          f"fp32 matmul peak measured now ({peak / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
