"""Shared fixtures: the repository root and tiny datasets built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: one torch thread each, or they oversubscribe.
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``starts_first`` go to the front of the collection.

    Such a test spends most of its wall time waiting on daemons (the SLURM test: the plugin's
    status polls back off by 10 s a round), so it should overlap with tests that use the CPU.
    Left in collection order it ran last, one worker idle beside it: about a minute of a
    two-worker suite's tail. Order changes nothing a test checks.
    """
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)  # stable


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def params(root) -> dict:
    """The embedded default parameters (params.yaml), fresh per test module."""
    from fillrobust.config import load_params

    return load_params(root / "params.yaml")


@pytest.fixture(scope="session")
def tiny_ccm(tmp_path_factory) -> Path:
    """A tiny SynthCCM frames dataset and its crops (64 frames, 16 px crops)."""
    from fillrobust.config import load_params
    from fillrobust.data.crop import build_cropped_dataset
    from fillrobust.data.synthetic import synthesize_frames

    cfg = load_params(ROOT / "params.yaml", TINY)
    base = tmp_path_factory.mktemp("ccm")
    params = dict(cfg["data"]["synth_ccm"], frames=64)
    synthesize_frames(str(base / "frames"), params, cfg["data"]["containers"], workers=1)
    build_cropped_dataset(str(base / "frames"), str(base / "crops"), cfg["data"]["crop"])
    return base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> Path:
    """The whole DAG on tests/data/tiny.yaml, run once per test session (:func:`build_once`).

    Treat it as read-only (dry runs are fine); a test that runs jobs works on
    ``copy_workspace(tiny_run, tmp_path / "ws")``. Setting FILLROBUST_TINY_RUN
    to a finished tiny workspace skips the build.
    """
    from tests.workflow.workspace import build_once, make_workspace, snakemake

    if os.environ.get("FILLROBUST_TINY_RUN"):  # the edit loop: reuse a finished tiny run
        return Path(os.environ["FILLROBUST_TINY_RUN"])

    def build(ws: Path) -> None:
        make_workspace(ws)
        snakemake(ws, timeout=3600)  # the whole DAG: minutes, more on a loaded machine

    return build_once(tmp_path_factory, worker_id, "tiny_run", build)
