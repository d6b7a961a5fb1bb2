"""Top-GAP study ids, params and tables (report/topgap.py) on small real files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fillrobust.config import load_params, validate
from fillrobust.report.topgap import member_params, members, topgap_checks, write_topgap_tables

SECTION = {"k_grid": [0.05, 0.25], "ablation_k": 0.05,
           "ablation": [{"fpn": True, "l1": True, "topgap": True}, {"fpn": True, "l1": False, "topgap": True},
                        {"fpn": False, "l1": False, "topgap": False}]}


def test_members_share_the_all_on_ablation_model_with_the_grid():
    ids = members(SECTION)
    assert list(ids) == ["k0.05", "k0.25", "fpn1-l10-top1", "fpn0-l10-top0"]
    assert ids["fpn1-l10-top1"] == {"k": 0.05, "fpn": True, "l1": False, "topgap": True}


def test_member_params_override_the_strategy_recipe():
    config = validate(load_params("params.yaml"))
    params = member_params(config, "fpn1-l11-top0", "S1")
    assert params["topgap"]["topgap"] is False and params["topgap"]["lambda"] == 1.0
    assert params["lr"] == config["train"]["strategies"]["TOPGAP"]["lr"]
    with pytest.raises(ValueError, match="unknown model"):
        member_params(config, "k0.99", "S1")


def test_checks_name_the_bad_key():
    config = validate(load_params("params.yaml"))
    config["topgap"]["strategy"] = "ST"
    config["topgap"]["evaluate"]["threats"]["pgd"]["params"]["steps"] = 0
    problems = topgap_checks(config)
    assert any(p.startswith("topgap.strategy: ST") for p in problems)
    assert any(p.startswith("topgap.evaluate.threats.pgd") for p in problems)


def _summary(method: str, k: float | None, clean: float, fgsm: float, sparsity: float, iou: float,
             n: int = 96) -> dict:
    return {"n": n, "method": method, "k": k, "clean_accuracy": clean, "sparsity": sparsity, "iou": iou,
            "iou_threshold": 0.5, "converged": True,
            "threats": {"fgsm": {"robust_unchanged": fgsm, "robust_correct": fgsm / 2},
                        "pgd": {"robust_unchanged": fgsm / 2, "robust_correct": fgsm / 4}}}


def test_tables_from_summaries(tmp_path):
    from fillrobust.data.store import write_dataset

    images = np.zeros((4, 8, 8, 3), np.uint8)
    manifest = pd.DataFrame({"index": range(4), "label": [0, 1, 2, 3], "container": ["a", "a", "b", "b"]})
    write_dataset(tmp_path / "ccm", images, manifest, {"name": "t", "classes": list("wxyz")},
                  np.ones((4, 8, 8), np.uint8))
    rows = {"k0.05": _summary("cam", 0.05, 0.7, 0.5, 0.1, 0.3), "k0.25": _summary("cam", 0.25, 0.8, 0.4, 0.2, 0.4),
            "fpn1-l10-top1": _summary("cam", 0.05, 0.6, 0.3, 0.3, 0.2),
            "ST": _summary("gradcam@layer2", None, 0.75, 0.1, 0.4, 0.25)}
    # SynthSource as a split: its own dataset (no masks), 6 classes
    source = pd.DataFrame({"index": range(6), "label": range(6), "container": list("uvwxyz")})
    write_dataset(tmp_path / "src", np.zeros((6, 8, 8, 3), np.uint8), source, {"name": "s", "classes": list("uvwxyz")})
    paths = []
    for split, models in (("S1", rows), ("SynthSource", {"k0.05": {**rows["k0.05"], "n": 616}})):
        for model, summary in models.items():
            folder = tmp_path / "results" / "eval" / split / "topgap" / model / "seed0"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(summary))
            np.savez(folder / "maps.npz", index=np.array([0, 5 if split != "S1" else 2]),
                     maps=np.zeros((2, 8, 8), np.uint8))
            paths.append(str(folder / "summary.json"))
    datasets = [f"S1={tmp_path / 'ccm'}", f"SynthSource={tmp_path / 'src'}"]
    with pytest.raises(ValueError, match="no dataset given for splits"):
        write_topgap_tables(paths, datasets[:1], str(tmp_path / "t0"), str(tmp_path / "f0"), ablation_k=0.05)
    with pytest.raises(ValueError, match="not SPLIT=DIR"):
        write_topgap_tables(paths, [str(tmp_path / "ccm")], str(tmp_path / "t0"), str(tmp_path / "f0"),
                            ablation_k=0.05)
    out = write_topgap_tables(paths, datasets, str(tmp_path / "tables"), str(tmp_path / "figures"), ablation_k=0.05)
    assert sorted(set(out["robustness"]["split"])) == ["S1", "SynthSource"]
    robust = out["robustness"].query("split == 'S1'").set_index("model")
    assert robust["selected_k"].to_dict() == {"k0.05": False, "k0.25": True, "fpn1-l10-top1": False, "ST": False}
    assert robust.loc["k0.25", "fgsm_unchanged"] == pytest.approx(40.0)
    assert robust.loc["k0.25", "paper_fgsm"] == 25.6 and robust.loc["ST", "paper_fgsm"] == 6.5
    # how many test images each row was measured on, per split (the paper: all)
    assert out["robustness"].groupby("split")["images"].unique().to_dict() == {"S1": [96], "SynthSource": [616]}
    assert set(out["sparsity_iou"]["images"]) == {96, 616}
    # the paper's Top-GAP numbers sit on the row each claim reads, not on every k or ablation member
    sparse = out["sparsity_iou"].query("split == 'S1'").set_index("model")
    assert sparse["paper_sparsity"].dropna().to_dict() == {"k0.05": 0.123, "ST": 0.387}
    assert set(sparse["paper_iou"].dropna().index) == {"k0.25", "ST"}
    ablation = out["ablation"].query("split == 'S1'")
    assert ablation["model"].tolist() == ["fpn1-l10-top1", "k0.05"]  # the all-on row is k at ablation_k
    assert ablation["paper_accuracy"].tolist() == [53.2, 80.3]
    for name in ("topgap_robustness", "topgap_sparsity_iou", "topgap_ablation"):
        assert (tmp_path / "tables" / f"{name}.csv").stat().st_size > 0
    for name in ("robustness", "sparsity_iou", "ablation", "cam_overlays"):
        assert (tmp_path / "figures" / f"topgap_{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "seed" not in pd.read_csv(tmp_path / "tables" / "topgap_robustness.csv").columns  # one seed


def test_several_seeds_keep_each_seeds_rows_under_the_mean(tmp_path):
    """With two seeds the robustness and sparsity tables hold the mean row and each seed's,
    and the claims evaluate a Top-GAP claim on each seed alone."""
    from fillrobust.data.store import write_dataset
    from fillrobust.report import claims as C

    write_dataset(tmp_path / "ccm", np.zeros((4, 8, 8, 3), np.uint8),
                  pd.DataFrame({"index": range(4), "label": [0, 1, 2, 3], "container": ["a", "a", "b", "b"]}),
                  {"name": "t", "classes": list("wxyz")}, np.ones((4, 8, 8), np.uint8))
    clean = {("k0.05", 0): 0.7, ("k0.05", 1): 0.5, ("ST", 0): 0.6, ("ST", 1): 0.6}  # Top-GAP wins on seed 0 only
    paths = []
    for (model, seed), acc in clean.items():
        method, k = ("cam", 0.05) if model.startswith("k") else ("gradcam@layer2", None)
        folder = tmp_path / "results" / "eval" / "S1" / "topgap" / model / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(_summary(method, k, acc, 0.5, 0.1 + seed, 0.3)))
        np.savez(folder / "maps.npz", index=np.array([0]), maps=np.zeros((1, 8, 8), np.uint8))
        paths.append(str(folder / "summary.json"))
    write_topgap_tables(paths, [f"S1={tmp_path / 'ccm'}"], str(tmp_path / "tables"), str(tmp_path / "figures"),
                        ablation_k=0.05)
    robust = pd.read_csv(tmp_path / "tables" / "topgap_robustness.csv", dtype={"seed": str})
    assert list(robust.columns[:3]) == ["split", "model", "seed"]
    assert list(zip(robust["model"], robust["seed"], strict=True)) == [("k0.05", "mean"), ("k0.05", "0"), ("k0.05", "1"),
                                                                       ("ST", "mean"), ("ST", "0"), ("ST", "1")]
    assert robust["clean"].tolist() == pytest.approx([60.0, 70.0, 50.0, 60.0, 60.0, 60.0])
    assert robust.loc[robust["model"] == "k0.05", "selected_k"].all()  # the model's selection on its seed rows
    assert robust["seeds"].tolist() == [2, 1, 1, 2, 1, 1]
    ablation = pd.read_csv(tmp_path / "tables" / "topgap_ablation.csv", dtype={"seed": str})
    assert ablation["seed"].tolist() == ["mean", "0", "1"] and ablation["model"].eq("k0.05").all()
    assert ablation["accuracy"].tolist() == pytest.approx([60.0, 70.0, 50.0])
    sparse = pd.read_csv(tmp_path / "tables" / "topgap_sparsity_iou.csv", dtype={"seed": str})
    assert sparse.set_index(["model", "seed"]).loc[("ST", "1"), "sparsity"] == pytest.approx(1.1)
    claim = {"id": "t.topgap", "paper": "P", "statement": "s", "paper_value": "v", "table": "topgap_robustness",
             "rule": "at_least", "a": {"where": {"kind": "Top-GAP"}, "column": "clean", "agg": "max"},
             "b": {"where": {"kind": "standard (GradCAM)"}, "column": "clean", "agg": "max"}}
    row = C.claims_table([claim], C.read_tables([tmp_path / "tables" / "topgap_robustness.csv"])).iloc[0]
    assert row["holds"] == "yes" and row["per_seed"] == "1 of 2 seeds (not 1)"
