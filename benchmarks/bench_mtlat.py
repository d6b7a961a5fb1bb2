"""M-TLAT benchmarks (issue 14).

1. One training step (forward, backward, SGD update) of each ``mixing``
   strategy against an ST step on the same batch: ResNet-18, 4 classes,
   batch 64 at 32 px, 1 thread, minimum over interleaved repetitions.
   Goal: M-TLAT <= 2.2x ST (one extra forward-backward, over half the batch).
2. AutoAttack (torchattacks' standard components) CPU seconds per image on
   the default's trained models, at the default's Square budget
   (``evaluate.threats.autoattack_linf``) and the standard 5000 queries, where
   ``models/S1/{ST,AT}/seed0`` and ``data/ccm`` exist in the working directory
   (after ``make reproduce``); skipped otherwise, since a random-initialised
   model is fooled at once and its cost says nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from fillrobust.config import load_params, strategy_params
from fillrobust.models.resnet import build_model
from fillrobust.train.loop import cross_entropy_step
from fillrobust.train.mixing import mixing_step

ROOT = Path(__file__).resolve().parents[1]
BATCH, SIDE, REPS = 64, 32, 5
STRATEGIES = ["MIXUP", "TLAT", "M-TLAT", "IAT", "FGSM-AT"]


def _step_timer(step: Callable, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run() -> None:
        loss, _ = step(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def _min_times(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    """Minimum wall time per function over interleaved repetitions (robust to load)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            tic = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - tic)
    return best


def bench_steps() -> None:
    config = load_params(ROOT / "params.yaml")
    torch.manual_seed(0)
    x = torch.rand(BATCH, 3, SIDE, SIDE).contiguous(memory_format=torch.channels_last)
    y = torch.arange(BATCH) % 4
    fns = {}
    for name in ["ST", *STRATEGIES]:
        model = build_model("resnet18", 4).to(memory_format=torch.channels_last).train()
        step = cross_entropy_step if name == "ST" else mixing_step(
            strategy_params(config, name)["mixing"], 4, seed=0)
        fns[name] = _step_timer(step, model, x, y)
    for fn in fns.values():  # warm-up
        fn()
    times = _min_times(fns, REPS)
    for name in STRATEGIES:
        goal = " (goal <= 2.2x)" if name == "M-TLAT" else ""
        print(f"{name} step / ST step: {times[name] / times['ST']:.2f}x "
              f"({times[name] * 1000:.0f} ms vs {times['ST'] * 1000:.0f} ms, batch {BATCH}){goal}")


def bench_autoattack(images: int = 12) -> None:
    from fillrobust.attacks.autoattack import autoattack
    from fillrobust.data.splits import indices
    from fillrobust.data.store import read_dataset
    from fillrobust.evaluate.clean import load_trained
    from fillrobust.evaluate.corruptions import benchmark_order
    from fillrobust.train.loop import to_batch

    cwd = Path.cwd()
    if not (cwd / "data/ccm").exists():
        print("AutoAttack per image: skipped (no data/ccm and models/S1 here; run after make reproduce)")
        return
    import pandas as pd

    ds = read_dataset(cwd / "data/ccm")
    order = benchmark_order(ds.manifest, indices(pd.read_parquet(cwd / "data/splits/S1.parquet"), "test"), 0)
    pos = order[:images]
    x = to_batch(ds.images, pos, torch.device("cpu"))
    y = torch.tensor(ds.manifest.set_index("index").loc[pos, "label"].to_numpy())
    queries = load_params(ROOT / "params.yaml")["evaluate"]["threats"]["autoattack_linf"]["params"]["square_queries"]
    runs = [("ST", "linf", 0.04, queries), ("AT", "linf", 0.04, queries), ("ST", "linf", 0.04, 5000),
            ("ST", "l2", 0.25 * 0.1429, queries)]
    for strategy, norm, eps, budget in runs:
        weights = cwd / f"models/S1/{strategy}/seed0/model.safetensors"
        if not weights.exists():
            print(f"AutoAttack {strategy}: skipped (no {weights})")
            continue
        model, _ = load_trained(str(weights), torch.device("cpu"))
        model = model.to(memory_format=torch.channels_last)  # as evaluate_threats
        cpu = time.process_time()  # CPU time: the shared machine's load does not inflate it
        adv = autoattack(model, x, y, eps, norm, seed=0, square_queries=budget)
        seconds = time.process_time() - cpu
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean()
            robust = (model(adv).argmax(1) == y).float().mean()
        print(f"AutoAttack {norm} eps {eps:.4g}, Square {budget} queries, S1 {strategy}: "
              f"{seconds / images:.2f} CPU s/image ({images} images; accuracy {100 * clean:.0f} % -> "
              f"{100 * robust:.0f} %)")


def main() -> None:
    torch.set_num_threads(1)
    bench_steps()
    bench_autoattack()


if __name__ == "__main__":
    main()
