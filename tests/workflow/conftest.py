"""Workflow-test fixtures: the session's shared tiny run under its usual name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow.workspace import copy_workspace


@pytest.fixture
def finished(tiny_run) -> Path:
    """The finished tiny run of the whole DAG (tests/conftest.py); read-only:
    a test that reruns jobs works on ``rerun_ws``."""
    return tiny_run


@pytest.fixture
def rerun_ws(tiny_run, tmp_path) -> Path:
    """A private copy of the finished tiny run (``tmp_path / "ws"``) for a test that reruns jobs."""
    return copy_workspace(tiny_run, tmp_path / "ws")
