"""One GPU per job on a machine with several.

On a cluster the scheduler gives each job its GPU: SLURM (``--gpus=1``, which
the SLURM profile asks for from a rule's ``gpu`` resource) sets
``CUDA_VISIBLE_DEVICES`` so a job sees one device and ``cuda:0`` is its own.

Locally, ``snakemake --resources gpu=N`` caps how many GPU jobs run at once,
but Snakemake's local executor does not say *which* GPU a job may use. Each
job then claims a free slot itself: an exclusive, non-blocking ``flock`` on
one lock file per visible GPU in a machine-wide folder. The lock is the
kernel's, tied to the process, so it is released when the job exits, however
it exits (SIGKILL included), and never needs cleaning up. Lock files are
named by the GPU's id in ``CUDA_VISIBLE_DEVICES`` when that is set (else its
index), so jobs started with different masks never take the same GPU twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
import time
from pathlib import Path

LOCK_DIR_ENV = "FILLROBUST_GPU_LOCKS"

# lock folder -> (slot index, open descriptor holding the lock) for this process
_HELD: dict[Path, tuple[int, int]] = {}


def lock_dir() -> Path:
    """The folder of GPU lock files: ``$FILLROBUST_GPU_LOCKS``, else one per user in the temp folder."""
    folder = os.environ.get(LOCK_DIR_ENV)
    return Path(folder) if folder else Path(tempfile.gettempdir()) / f"fillrobust-gpu-slots-{os.getuid()}"


def visible_ids(count: int) -> list[str]:
    """The ids of the ``count`` GPUs this process sees (``CUDA_VISIBLE_DEVICES`` entries, else indices)."""
    mask = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [x.strip() for x in mask.split(",") if x.strip()] if mask else []
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking: who holds it
    return fd


def claim_slot(count: int, folder: Path | None = None, timeout: float | None = None, poll: float = 0.5) -> int:
    """Index (0 .. count-1) of a GPU no other job on this machine holds; held until this process exits.

    With one GPU or none there is nothing to share out: 0, no lock. A second
    call in the same process returns the same slot. When every GPU is held
    (more GPU jobs than GPUs: run Snakemake with ``--resources gpu=N``) it
    waits for one to be freed, at most ``timeout`` seconds (None: no limit).
    """
    if count <= 1:
        return 0
    folder = (folder or lock_dir()).resolve()
    if folder in _HELD:
        return _HELD[folder][0]
    folder.mkdir(parents=True, exist_ok=True)
    names = [re.sub(r"[^A-Za-z0-9_.-]", "_", i) for i in visible_ids(count)]
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        for slot, name in enumerate(names):
            fd = _try_lock(folder / f"gpu-{name}.lock")
            if fd is not None:
                _HELD[folder] = (slot, fd)
                return slot
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"all {count} GPUs stayed held by other jobs for {timeout} s (locks in {folder}); "
                               f"run Snakemake with --resources gpu={count}")
        if not told:
            print(f"waiting for one of {count} GPUs to be freed (locks in {folder})", file=sys.stderr)
            told = True
        time.sleep(poll)
