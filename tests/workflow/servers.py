"""Helpers for tests that start real servers (sshd, SLURM) from Debian's packages."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable


def _apt_install(packages: tuple[str, ...]) -> subprocess.CompletedProcess:
    # Waits for dpkg's lock: the SSH and SLURM tests may install at the same time on two xdist workers.
    return subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                           "-o", "DPkg::Lock::Timeout=300", *packages],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def ensure_packages(packages: tuple[str, ...], missing: Callable[[], list[str]]) -> str | None:
    """apt-get install ``packages`` when ``missing()`` names anything (root only); a reason to skip, or None."""
    if not missing():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{', '.join(missing())} not installed and cannot apt-get install {' '.join(packages)} (needs root)"
    done = _apt_install(packages)
    if done.returncode != 0:  # package lists absent on a fresh machine
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        done = _apt_install(packages)
    if done.returncode != 0 or missing():
        return f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-300:]}"
    return None


def free_port() -> int:
    """A TCP port on localhost that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
