"""Shared fixtures: the repository root and tiny datasets built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


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
