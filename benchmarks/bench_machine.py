"""Where this machine stands against the brief's reference figures for the machine class.

The brief measured, on 2 cores: an fp32 matmul peak of ~157 GFLOP/s (2 threads) and
torchvision ResNet-18 training at ~230 images/s at 32 px and ~124 at 64 px (channels_last,
batch 64), and says machines of the class differ by up to 1.7x. This benchmark repeats those
three measurements here, in the same conditions, and prints each against the brief's figure:
a ratio under 1 / 1.7 = 0.59 is slower than the class's slow end. The default's work is
32-px training, so that line predicts ``make reproduce`` best (docs/status.md, "Slow end of
the class"). Each figure is the best of ``REPEATS`` timed windows, the slowest printed beside
it: on a shared machine the same figure moves by up to 1.6x within an hour (measured on the
Zen 3, docs/status.md), so run it beside the timing it is to explain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torchvision

from fillrobust.allocator import keep_freed_memory

#: The brief's figures ("The machine": measured CPU figures), all at 2 threads.
BRIEF_MATMUL_GFLOPS = 157.0
BRIEF_RESNET18_IMAGES_PER_S = {32: 230.0, 64: 124.0}
CLASS_SPREAD = 1.7
BATCH, REPEATS, WINDOW_S = 64, 3, 4.0


def _rates(step: Callable[[], None], work: float) -> tuple[float, float]:
    """``work`` per second of ``step`` in ``REPEATS`` windows of about ``WINDOW_S``: (best, slowest)."""
    for _ in range(2):  # warm-up: oneDNN creates its kernels on the first calls
        step()
    rates = []
    for _ in range(REPEATS):
        calls, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < WINDOW_S:
            step()
            calls += 1
        rates.append(calls * work / (time.perf_counter() - tic))
    return max(rates), min(rates)


def matmul_gflops(side: int = 2048) -> tuple[float, float]:
    """fp32 ``a @ b`` of two ``side``-square matrices, GFLOP/s: (best, slowest window)."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    best, slowest = _rates(lambda: a @ b, 2 * side**3)
    return best / 1e9, slowest / 1e9


def resnet18_images_per_s(side: int) -> tuple[float, float]:
    """Training images/s of torchvision's ResNet-18 (4 classes, SGD, channels_last, batch 64):
    (best, slowest window)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(BATCH, 3, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (BATCH,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return _rates(step, BATCH)


def _line(what: str, rates: tuple[float, float], brief: float, unit: str) -> str:
    best, slowest = rates
    ratio = best / brief
    verdict = "within the class" if ratio >= 1 / CLASS_SPREAD else f"past the class's {CLASS_SPREAD}x slow end"
    return (f"{what}: {best:.0f} {unit} (slowest window {slowest:.0f}) vs the brief's {brief:.0f}: "
            f"{ratio:.2f}x, {1 / ratio:.2f}x slower ({verdict})")


def main() -> None:
    keep_freed_memory()  # as every pipeline job (fillrobust.cli)
    torch.set_num_threads(2)
    print(_line("fp32 matmul 2048^2, 2 threads", matmul_gflops(), BRIEF_MATMUL_GFLOPS, "GFLOP/s"), flush=True)
    for side, brief in BRIEF_RESNET18_IMAGES_PER_S.items():
        print(_line(f"ResNet-18 training at {side} px, 2 threads", resnet18_images_per_s(side), brief, "img/s"),
              flush=True)


if __name__ == "__main__":
    main()
