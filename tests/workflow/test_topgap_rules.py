"""The Top-GAP rules (workflow/rules/topgap.smk) in the session's shared tiny run.

tiny.yaml: one member (k0.25, also the all-on ablation row) and the ST-FT
comparison on S1 and SynthSource: one training and two evaluations each, the tables.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_tables_figures_and_sidecar(finished):
    ws = finished
    for name in ("topgap_robustness", "topgap_sparsity_iou", "topgap_ablation"):
        for ext in ("csv", "md", "tex"):
            assert (ws / f"results/tables/{name}.{ext}").stat().st_size > 0, name
    for name in ("robustness", "sparsity_iou", "ablation", "cam_overlays"):
        assert (ws / f"results/figures/topgap_{name}.png").read_bytes()[:4] == b"\x89PNG", name
    table = pd.read_csv(ws / "results/tables/topgap_robustness.csv")
    pairs = set(zip(table["split"], table["model"], strict=True))
    assert pairs == {(sp, m) for sp in ("S1", "SynthSource") for m in ("k0.25", "ST-FT")}
    assert table.groupby("split")["selected_k"].sum().to_dict() == {"S1": 1, "SynthSource": 1}
    robust = table[table["split"] == "S1"].set_index("model")
    assert robust.loc["ST-FT", "method"] == "gradcam@layer2" and robust.loc["k0.25", "method"] == "cam"
    for column in ("fgsm_unchanged", "fgsm_correct", "pgd_unchanged", "pgd_correct", "clean"):
        assert robust[column].between(0, 100).all(), column
    sidecar = json.loads((ws / "models/S1/topgap/k0.25/seed0/model.json").read_text())
    assert sidecar["head"] == "topgap" and sidecar["k"] == 0.25
    assert sidecar["architecture"].startswith("topgap(") and sidecar["strategy"] == "TOPGAP"
    # Table 3's protocol: the backbone starts from the standard source model
    assert sidecar["parent"] == {"weights": "models/source/eps0/model.safetensors"}
    summary = json.loads((ws / "results/eval/S1/topgap/k0.25/seed0/summary.json").read_text())
    assert summary["n"] == 8 and summary["has_masks"]
    # SynthSource has no masks: sparsity, no IoU; its classes are SynthSource's
    source = json.loads((ws / "results/eval/SynthSource/topgap/k0.25/seed0/summary.json").read_text())
    assert not source["has_masks"] and source["sparsity"] >= 0
    classes = json.loads((ws / "models/SynthSource/topgap/k0.25/seed0/model.json").read_text())["classes"]
    assert classes == json.loads((ws / "data/synth_source/dataset.json").read_text())["classes"]
