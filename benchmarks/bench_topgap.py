"""A TOPGAP training step against an ST step of the same backbone on the same batch.

Target (issue 15): a Top-GAP step (FPN head on the last 4 ResNet-18 maps,
Top-GAP pooling, l1 + CE) costs at most 1.5x an ST step (ResNet-18, GAP,
linear head, CE). Both run the project's own step functions (train.strategies)
with SGD, channels_last, on one thread, batch 64 at 32 px (the embedded
default), alternating in rounds so load changes hit both; prints the ratio of
medians. Also the ablation members' cost (no FPN, GAP pooling) and the
FLOPs of each forward.

    .venv/bin/python benchmarks/bench_topgap.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fillrobust.train.loop import cross_entropy_step
from fillrobust.train.strategies import prepare

TOPGAP = {"backbone": "resnet18", "levels": 4, "fpn": True, "width": 256, "topgap": True, "k": 0.05,
          "dropout": 0.0, "l1": True, "lambda": 1.0}


def _setup(topgap: dict | None):
    params = {"init": "scratch", "lr": 0.01} | ({"topgap": topgap} if topgap else {})
    prepared = prepare("TOPGAP" if topgap else "ST", params, num_classes=4, seed=0)
    model = prepared.model.to(memory_format=torch.channels_last).train()
    step = prepared.step if topgap else cross_entropy_step
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run(x: torch.Tensor, y: torch.Tensor) -> None:
        loss, _ = step(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, run


def _flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / len(x)


def main(rounds: int = 7, steps: int = 4) -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (64,), generator=gen)
    variants = {"ST": None, "TOPGAP": TOPGAP, "TOPGAP no-FPN": TOPGAP | {"fpn": False},
                "TOPGAP GAP": TOPGAP | {"topgap": False}}
    runs = {name: _setup(cfg) for name, cfg in variants.items()}
    for _, run in runs.values():  # warm-up
        run(x, y)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (_, run) in runs.items():
            tic = time.perf_counter()
            for _ in range(steps):
                run(x, y)
            times[name].append((time.perf_counter() - tic) / steps)
    base = statistics.median(times["ST"])
    for name, (model, _) in runs.items():
        median = statistics.median(times[name])
        print(f"{name:14s} step {median * 1000:7.1f} ms  {median / base:4.2f}x ST   "
              f"forward {_flops(model, x[:2]) / 1e6:6.1f} MFLOP/image")
    ratio = statistics.median(times["TOPGAP"]) / base
    print(f"TOPGAP / ST step: {ratio:.2f}x (target <= 1.5x): {'met' if ratio <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
