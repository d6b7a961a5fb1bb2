"""glibc malloc settings for the jobs: keep freed memory instead of handing it back to the kernel.

A training step frees and re-allocates the same few megabytes of activations and
gradients every step. glibc serves blocks above its adaptive mmap threshold with
fresh pages and trims the top of the heap back to the kernel once enough of it
is free, so the next step page-faults on that memory again and the kernel zeroes
every page: about 1,800 faults (7 MB) per step of ``resnet18_half`` at batch 64,
32 px. Fixed thresholds (which also turn glibc's adaptation off) keep that memory
in the process: about 11 % more images/s in a bare training loop and 1-5 % in
the pipeline's jobs on an AMD EPYC (``benchmarks/bench_train.py`` prints the
ratio), with the same bytes (``tests/unit/test_allocator.py``): the allocator
never touches the arithmetic. The cost: up to ``TRIM_THRESHOLD`` of freed heap
stays with a job until it ends.

``FILLROBUST_MALLOPT=0`` leaves glibc's adaptive thresholds; so does malloc
tuning of the user's own in the environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc.*`` in ``GLIBC_TUNABLES``). glibc
reads those variables when a process starts, so with the fork server a job has
the server's: set them together with ``FILLROBUST_FORKSERVER=0``. Elsewhere than
glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB (the most mallopt documents; older glibc refuses more) come
# from the heap: a batch of 224-px activations is larger and stays mmap'ed, where a
# step's compute dwarfs the faults. Up to 256 MiB of free heap top is kept.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
_USER_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_SWITCHES = ("FILLROBUST_MALLOPT", "GLIBC_TUNABLES", *_USER_TUNING)


def _users_own_tuning() -> bool:
    return any(k in os.environ for k in _USER_TUNING) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def untuned_environ() -> dict[str, str]:
    """This environment without any malloc tuning or opt-out: a child started with it (and
    calling ``keep_freed_memory``) gets the jobs' fixed thresholds; add ``FILLROBUST_MALLOPT=0``
    for glibc's adaptive ones (the benchmark's and the test's two sides)."""
    return {k: v for k, v in os.environ.items() if k not in _SWITCHES}


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when they were set."""
    if os.environ.get("FILLROBUST_MALLOPT", "1") == "0" or _users_own_tuning():
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # 1 on success, 0 on a value glibc refuses; both are tried either way.
    results = [mallopt(_M_MMAP_THRESHOLD, mmap_threshold), mallopt(_M_TRIM_THRESHOLD, trim_threshold)]
    return all(r == 1 for r in results)
