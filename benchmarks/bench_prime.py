"""PRIME and AugMix cost: grouped application vs the per-draw references, and training overhead.

1. ``ours / reference`` time to augment one batch (64 images, 32x32 and 64x64, C-CCM preset).
   The reference reproduces the official ``GeneralizedPRIMEModule`` strategy: at every depth
   step EVERY primitive runs on the whole repeated (width x batch) tensor and masks select the
   drawn one. It uses the same per-image primitives as ours, so only the strategy differs.
   Goal <= 0.5.
2. AugMix: ``batched / per-image`` time to augment one batch (64 images, 32x32): ours applies
   each distinct operation of a chain step once to the images that drew it; the reference is
   torchvision's ``v2.AugMix`` image by image (the former path). Same bytes (tests/unit/test_augmix.py).
3. ``DA-PRIME epoch / ST epoch`` on CPU: torchvision ResNet-18 (4 classes), 640 synthetic
   32x32 images, batch 64, SGD. Goal <= 1.3 (thesis 5.5.4 reports 1.2x on GPU).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision

from fillrobust.augment import _random
from fillrobust.augment.augmix import AugMix, reference_augmix
from fillrobust.augment.prime import PRIME


def reference_prime(prime: PRIME, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Official-style PRIME: all primitives on all rows at every step, selection by masks."""
    p = prime.params
    n, width, prims = x.shape[0], p["width"], p["primitives"]
    offset = 1 if p["identity"] else 0
    ops = _random.randint(len(prims) + offset, (p["depth"], width * n), generator, x.device)
    out = x.repeat(width, 1, 1, 1)
    for step in ops:
        masks = F.one_hot(step, len(prims) + offset).float()[:, :, None, None, None]
        new = out * masks[:, 0] if offset else torch.zeros_like(out)
        for code, name in enumerate(prims, start=offset):
            new = new + masks[:, code] * prime.apply_primitive(name, out, generator)
        out = new
    chains = out.view(width, *x.shape)
    weights = _random.dirichlet_ones(n, width, generator, x.device)
    x_tilde = torch.einsum("nw,wnchv->nchv", weights, chains)
    mix = _random.beta(p["mix_a"], p["mix_b"], n, generator, x.device)[:, None, None, None]
    return ((1.0 - mix) * x + mix * x_tilde).clamp(0.0, 1.0)


def _median_times(fns: list[Callable[[], object]], repeats: int) -> list[tuple[float, float]]:
    """Median (wall, process CPU) time of each function, interleaved so load hits all alike.

    CPU time is reported too because it is less sensitive to other jobs on a shared machine.
    """
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[i].append((time.perf_counter() - w0, time.process_time() - c0))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def _batch_ratio(label: str, ours: Callable, reference: Callable, side: int, repeats: int,
                 names: tuple[str, str] = ("ours", "reference"), goal: str = "") -> float:
    """Print and return ours / reference (wall) augmenting one batch of 64 ``side`` x ``side`` images."""
    x = torch.rand(64, 3, side, side, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    (t_ours, c_ours), (t_ref, c_ref) = _median_times([lambda: ours(x, g), lambda: reference(x, g)], repeats)
    print(
        f"{label} 64x3x{side}x{side}: {names[0]} {t_ours * 1e3:.1f} ms, {names[1]} {t_ref * 1e3:.1f} ms, "
        f"ratio {t_ours / t_ref:.2f} (cpu-time ratio {c_ours / c_ref:.2f}{goal})"
    )
    return t_ours / t_ref


def bench_augment(side: int, repeats: int = 7) -> float:
    """PRIME (C-CCM preset), grouped vs the official masked strategy: ours / reference."""
    prime = PRIME()
    return _batch_ratio("prime augment (C-CCM preset)", prime, lambda x, g: reference_prime(prime, x, g),
                        side, repeats, goal="; goal <= 0.5")


def bench_augmix(side: int = 32, repeats: int = 7) -> float:
    """AugMix, batched vs torchvision's v2.AugMix image by image: batched / per-image."""
    return _batch_ratio("augmix", AugMix(), lambda x, g: reference_augmix(x, None, g), side, repeats,
                        names=("batched", "per-image (torchvision)"))


def bench_epoch(repeats: int = 3) -> float:
    """Print and return the time of a DA-PRIME epoch over an ST epoch (wall)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(640, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 4, (640,), generator=gen)
    model = torchvision.models.resnet18(num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    prime, g = PRIME(), torch.Generator().manual_seed(2)

    def epoch(augment: bool) -> None:
        model.train()
        for i in range(0, 640, 64):
            x, y = images[i : i + 64], labels[i : i + 64]
            if augment:
                x = prime(x, g)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    epoch(False)  # warm-up
    (st, st_cpu), (da, da_cpu) = _median_times([lambda: epoch(False), lambda: epoch(True)], repeats)
    print(
        f"resnet18 epoch 640x3x32x32 b64: ST {st:.2f} s, DA-PRIME {da:.2f} s, "
        f"ratio {da / st:.2f} (cpu-time ratio {da_cpu / st_cpu:.2f}; goal <= 1.3)"
    )
    return da / st


def main() -> None:
    """Run the PRIME benchmarks (2 CPU threads) and print the ratios."""
    torch.set_num_threads(2)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"bench_prime: 2 threads, load average {load:.1f} on {cores} cores")
    if load > cores:
        print("  warning: oversubscribed machine; OpenMP barrier waits inflate many-small-op code")
    bench_augment(32)
    bench_augment(64)
    bench_augmix(32)
    bench_epoch()


if __name__ == "__main__":
    main()
