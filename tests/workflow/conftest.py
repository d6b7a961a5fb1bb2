"""Workflow-test fixtures: the session's shared tiny run under its usual name."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def finished(tiny_run) -> Path:
    """The finished tiny run of the whole DAG (tests/conftest.py); read-only:
    a test that reruns jobs works on ``copy_workspace(finished, tmp_path / "ws")``."""
    return tiny_run
