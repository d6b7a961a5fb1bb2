"""Building a corrupted set on both cores vs a single-process loop (issue 4 goal: >= 1.7x).

Same images, same corruptions and severities, same bytes (checked); the
reference is a plain loop calling the corruption of each image in this
process. Both sides are warmed up first (numba compiles glass_blur once per
process, ~2 s, which a real build pays once per worker).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fillrobust.evaluate.corruptions import (
    CORRUPTIONS,
    corrupt_batch,
    corrupt_image,
    image_seed,
    warm_up,
)


def main() -> None:
    """Print images/s of the parallel build and of the serial loop, and their ratio."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    names, severities = list(CORRUPTIONS), [1, 3, 5]

    def serial() -> list[np.ndarray]:
        out = []
        for name in names:
            for severity in severities:
                cid = CORRUPTIONS.index(name)
                out.append(np.stack([corrupt_image(x, name, severity, image_seed(0, cid, severity, i))
                                     for i, x in enumerate(images)]))
        return out

    serial()  # warm-up in this process
    tic = time.perf_counter()
    reference = serial()
    t_serial = time.perf_counter() - tic
    with ProcessPoolExecutor(max_workers=2, initializer=warm_up) as pool:
        list(pool.map(time.sleep, [0.5, 0.5]))  # both workers started and warm
        tic = time.perf_counter()
        parallel = corrupt_batch(images, names, severities, seed=0, executor=pool)
        t_parallel = time.perf_counter() - tic
    assert all(np.array_equal(a, b[2]) for a, b in zip(reference, parallel, strict=True)), "bytes differ"
    count = len(images) * len(names) * len(severities)
    print(f"corrupted set, {count} images of 32 px, {os.cpu_count()} cores: serial loop "
          f"{count / t_serial:.0f} img/s, 2 workers {count / t_parallel:.0f} img/s, "
          f"ratio {t_serial / t_parallel:.2f} (goal >= 1.7; same bytes)")


if __name__ == "__main__":
    main()
