"""Real-CCM path through the DAG: fixture videos -> ingest -> split -> training."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.unit.ccm_fixture import make_ccm_fixture
from tests.workflow.workspace import make_workspace, planned, snakemake

pytestmark = pytest.mark.slow

FIXTURE_SPLIT = {  # the fixture has CCM containers 1-6 only
    "train": ["red_cup", "small_white_cup", "small_transparent_cup", "green_glass"],
    "test": ["wine_glass", "champagne_flute"],
}


def test_ccm_fixture_to_training(tmp_path):
    fixture = make_ccm_fixture(tmp_path / "CCM", n_videos=6, frames=24)
    ccm = {"root": str(fixture.root), "views": [1, 2], "box_source": "annotation",
           "boxes_csv": "annotations/boxes.csv",
           "sampling": {"frames_per_video": 4, "before_handover": 8, "after_handover": 4}}
    ws = make_workspace(tmp_path / "ws", {
        "data": {"source": "ccm", "ccm": ccm},
        "splits": {"membership": {"S1": FIXTURE_SPLIT}},
        "study": {"splits": ["S1"], "strategies": ["ST"]},
    })
    target = "models/S1/ST/seed0/model.safetensors"
    jobs = {rule for rule, _ in planned(ws, target)}
    assert jobs == {"ingest_ccm", "split", "train"}
    snakemake(ws, target, "results/figures/ccm_sheets")
    manifest = pd.read_parquet(ws / "data/ccm/manifest.parquet")
    assert len(manifest) == 6 * 2 * 4  # videos x views x frames per video
    assert set(manifest["container"]) == set(FIXTURE_SPLIT["train"] + FIXTURE_SPLIT["test"])
    assert {"source_video", "frame", "view", "box", "filling_level", "transparency"} <= set(manifest.columns)
    assert (ws / target).exists()
    assert any((ws / "results/figures/ccm_sheets").glob("*.png"))

    # Rejecting frames by hand: only C-CCM and what follows rerun.
    rejected = tmp_path / "rejected.csv"
    first = manifest.iloc[0]
    rejected.write_text(f"source_video,frame,view\n{first['source_video']},{first['frame']},{first['view']}\n")
    override = tmp_path / "rejected.yaml"
    override.write_text(f"data: {{ccm: {{rejected_csv: {rejected}}}}}\n")
    assert {rule for rule, _ in planned(ws, target, "--configfile", override)} == {"ingest_ccm", "split", "train"}
    snakemake(ws, target, "--configfile", override)
    assert len(pd.read_parquet(ws / "data/ccm/manifest.parquet")) == len(manifest) - 1
