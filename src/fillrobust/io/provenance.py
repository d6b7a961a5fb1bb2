"""Provenance: who/what/when produced an artefact, recorded next to it."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository (not fillrobust.config's: no validation code here)

PACKAGES = ("torch", "torchvision", "numpy", "pandas", "timm", "snakemake", "dvc")


def git_revision(root: Path = ROOT) -> str:
    """Current git commit (with ``+dirty`` when the tree has changes), or ``unknown``."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """Where an artefact was computed: CPU model and the instruction set torch dispatched to.

    On CPU the same seed gives the same bytes only on the same kind of CPU:
    oneDNN and MKL pick their kernels by instruction set (AVX2, AVX-512, AMX),
    and a different kernel rounds differently. Without torch loaded (the report)
    the capability is left out rather than imported for.
    """
    info = {"cpu": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_hash(*subpackages: str) -> str:
    """Hash of the source files of the named ``fillrobust`` subpackages/modules.

    Rules pass it as a param, so editing the code a step runs reruns that step
    (and only the steps whose code changed).
    """
    base = ROOT / "src" / "fillrobust"
    digest = hashlib.sha256()
    for name in sorted(subpackages):
        path = base / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            digest.update(str(file.relative_to(base)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
