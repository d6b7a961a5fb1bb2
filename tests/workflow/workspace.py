"""Throw-away copies of the project in which tests run real Snakemake and DVC."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from fillrobust.config import deep_merge, load_params

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["Snakefile", "dvc.yaml", ".dvcignore", "workflow", "src", "pyproject.toml", "params"]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """The test's environment with the venv's tools first on PATH."""
    out = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    out.pop("SNAKEMAKE_PROFILE", None)
    return out


def make_workspace(path: Path, *overrides: dict, git: bool = False) -> Path:
    """Copy the project to ``path`` with params.yaml = defaults + tiny + overrides."""
    path.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, path / name)
    params = load_params(ROOT / "params.yaml", ROOT / "tests" / "data" / "tiny.yaml")
    for extra in overrides:
        params = deep_merge(params, extra)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return init_git(path) if git else path


def init_git(path: Path) -> Path:
    """Make ``path`` a git + DVC repository with everything but outputs committed."""
    run(path, "git", "init", "-q", "-b", "main")
    run(path, "git", "config", "user.email", "test@fillrobust")
    run(path, "git", "config", "user.name", "test")
    (path / ".gitignore").write_text("/.snakemake/\n/logs/\n__pycache__/\n")
    run(path, BIN / "dvc", "init", "-q")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "workspace")
    return path


def _shared_dir(tmp_path_factory, worker_id: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (the basetemp's parent)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def build_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], None]) -> Path:
    """``shared/<name>/ws`` built by ``build`` once per test session, whichever xdist worker asks first.

    The first worker builds it under a file lock, the others wait and reuse it. A failed build is
    recorded so the other workers fail at once instead of building again.
    """
    shared = _shared_dir(tmp_path_factory, worker_id)
    ws, status = shared / name / "ws", shared / f"{name}.status"
    with FileLock(str(shared / f"{name}.lock")):
        if not status.exists():
            try:
                build(ws)
            except BaseException as err:
                status.write_text(f"failed: {err}")
                raise
            status.write_text("ok")
    if status.read_text() != "ok":
        pytest.fail(f"the shared {name} failed in another worker: {status.read_text()[:4000]}")
    return ws


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of a finished workspace that a test may run jobs in.

    ``copy2`` and ``copytree``'s ``copystat`` keep every file's and folder's
    modification time, and ``.snakemake/`` (params / code provenance) comes
    along, so Snakemake sees the copy exactly as finished as the original.
    """
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("locks", "incomplete"))
    return dst


def copy_outputs(src: Path, dst: Path) -> Path:
    """Copy a finished workspace's outputs and Snakemake records into the project copy ``dst``."""
    for name in (".snakemake", "logs", "data", "models", "results"):
        if (src / name).exists():
            copy_workspace(src / name, dst / name)
    return dst


def override_file(tmp_path: Path, data: dict) -> Path:
    """A --configfile holding ``data`` (merged over the workspace's params.yaml)."""
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(cwd: Path, *cmd, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in ``cwd``; on failure show its output in the assertion."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def snakemake(cwd: Path, *args, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run Snakemake from the venv in ``cwd`` on 2 cores."""
    return run(cwd, sys.executable, "-m", "snakemake", "--cores", "2", *args, check=check, timeout=timeout)


def dry_run(cwd: Path, *args, override: dict | None = None) -> str:
    """Stdout of a dry run; ``override`` (if given) goes in a temporary --configfile."""
    if override is None:
        return snakemake(cwd, "-n", *args).stdout
    with tempfile.TemporaryDirectory() as tmp:
        return snakemake(cwd, "-n", *args, "--configfile", override_file(Path(tmp), override)).stdout


def planned_jobs(cwd: Path, *args, override: dict | None = None) -> dict[str, int]:
    """Rule -> job count that a dry run plans (empty when nothing is to do); see :func:`dry_run`."""
    out = dry_run(cwd, *args, override=override)
    stats = out.split("Job stats:", 1)
    if len(stats) < 2:
        return {}
    jobs = {}
    for line in stats[1].splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            jobs[match.group(1)] = int(match.group(2))
    return jobs


def planned(cwd: Path, *args, override: dict | None = None) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run plans; see :func:`dry_run`."""
    out = dry_run(cwd, *args, override=override)
    jobs = []
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0].strip()
        match = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        wildcards = dict(kv.split("=", 1) for kv in match.group(1).split(", ")) if match else {}
        jobs.append((rule, wildcards))
    return jobs
