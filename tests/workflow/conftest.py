"""Workflow-test fixtures: the session's shared tiny run under its usual name, and its DVC record."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow.workspace import (
    BIN,
    build_once,
    copy_outputs,
    copy_workspace,
    make_workspace,
    run,
)


@pytest.fixture
def finished(tiny_run) -> Path:
    """The finished tiny run of the whole DAG (tests/conftest.py); read-only:
    a test that reruns jobs works on ``rerun_ws``."""
    return tiny_run


@pytest.fixture
def rerun_ws(tiny_run, tmp_path) -> Path:
    """A private copy of the finished tiny run (``tmp_path / "ws"``) for a test that reruns jobs."""
    return copy_workspace(tiny_run, tmp_path / "ws")


@pytest.fixture(scope="session")
def recorded_run(tiny_run, tmp_path_factory, worker_id) -> Path:
    """The finished tiny run as a git + DVC repository whose ``dvc repro`` is recorded and committed
    (its stages find nothing left to do; dvc.lock and the cache hold every output), built once per
    session for the tests that push it to a remote (:func:`build_once`). Read-only: such a test
    pushes from ``copy_workspace(recorded_run, tmp_path / "a")``."""
    def build(ws: Path) -> None:
        copy_outputs(tiny_run, make_workspace(ws, git=True))
        run(ws, BIN / "dvc", "repro")
        run(ws, "git", "add", "-A")
        run(ws, "git", "commit", "-qm", "reproduced")

    return build_once(tmp_path_factory, worker_id, "recorded_run", build)
