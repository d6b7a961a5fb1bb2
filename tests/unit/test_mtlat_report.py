"""M-TLAT's Tables 1-3 (report/mtlat.py) from small real summary files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fillrobust.evaluate.corruptions import IMAGENET_C, MTLAT
from fillrobust.report.mtlat import PAPER_LABELING, PAPER_ROBUSTNESS, write_mtlat_tables

THREATS = ["pgd_linf", "pgd_ll", "cw_l2"]
ROBUSTNESS = ["STANDARD", "MIXUP", "M-TLAT"]
LABELING = ["STANDARD", "FGSM-AT", "TLAT"]


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture
def summaries(tmp_path):
    """STANDARD loses half its accuracy under every corruption; M-TLAT a tenth; MIXUP in between."""
    keep = {"STANDARD": 0.5, "MIXUP": 0.7, "M-TLAT": 0.9, "FGSM-AT": 0.8, "TLAT": 0.85}
    clean_acc = {"STANDARD": 0.80, "MIXUP": 0.82, "M-TLAT": 0.81, "FGSM-AT": 0.70, "TLAT": 0.75}
    threats, corruptions, clean = [], [], []
    for s in ROBUSTNESS:
        key = {"split": "S1", "strategy": s, "seed": 0}
        threats.append(_write(tmp_path / s / "threats.json", {
            **key, "clean_accuracy": 0.8, "threats": {t: {"R": keep[s] / 2, "n": 120 if t != "cw_l2" else 48,
                                                            **({"median_norm": 0.3, "n_success": 5}
                                                               if t == "cw_l2" else {})}
                                                        for t in THREATS}}))
        corruptions.append(_write(tmp_path / s / "corruptions.json", {
            **key, "clean_accuracy": 0.8, "per_corruption": {
                c: {"1": 0.8 * keep[s], "5": 0.8 * keep[s]} for c in IMAGENET_C + MTLAT}}))
    for s in dict.fromkeys(ROBUSTNESS + LABELING):
        clean.append(_write(tmp_path / s / "clean.json", {
            "split": "S1", "strategy": s, "seed": 0, "accuracy": clean_acc[s], "train_accuracy": 0.95,
            "converged": True}))
    return threats, corruptions, clean


def test_tables_hold_ours_and_the_papers_values_with_signs(tmp_path, summaries):
    threats, corruptions, clean = summaries
    params = {"decimals": 2, "reference": "STANDARD", "robustness": ROBUSTNESS, "labeling": LABELING,
              "threats": THREATS}
    out = write_mtlat_tables(params, threats, corruptions, clean, str(tmp_path / "t"), str(tmp_path / "f"))
    assert out == [str(tmp_path / "t/mtlat_robustness"), str(tmp_path / "t/mtlat_labeling")]
    robust = pd.read_csv(tmp_path / "t/mtlat_robustness.csv")
    ours = robust[robust["source"] == "ours"].set_index("strategy")
    assert list(ours.index) == ROBUSTNESS
    assert ours.loc["M-TLAT", "gaussian_noise"] == pytest.approx(0.9)
    assert ours.loc["M-TLAT", "mean ImageNet-C"] == pytest.approx(0.9)
    assert ours.loc["STANDARD", "cw_l2"] == pytest.approx(0.25)
    assert ours.loc["MIXUP", "clean"] == pytest.approx(82.0)  # the full test set's clean accuracy
    paper = robust[robust["source"] != "ours"].set_index("strategy")
    assert paper.loc["M-TLAT", "clean"] == pytest.approx(PAPER_ROBUSTNESS["M-TLAT"]["clean"])
    assert paper.loc["STANDARD", "jpeg_compression"] == pytest.approx(0.80)
    # Table 2b/2c: Mixup's colour and CW-l2 scores (the latter printed as 0.202)
    assert (paper.loc["MIXUP", "colour"], paper.loc["MIXUP", "cw_l2"]) == (0.78, 0.2)
    assert paper.loc["M-TLAT", "mean ImageNet-C"] == pytest.approx(9.68 / 15, abs=1e-2)
    md = (tmp_path / "t/mtlat_robustness.md").read_text()
    assert "0.90+" in md and "0.70+" in md  # + against the standard model, as the paper marks
    assert "0.45+" in md  # M-TLAT's cw_l2 R (0.9 / 2) beats the standard's 0.25
    assert "attacks on 120 test images per model (cw_l2 on 48)" in md.splitlines()[0]
    labeling = pd.read_csv(tmp_path / "t/mtlat_labeling.csv").set_index("strategy")
    assert list(labeling.index) == LABELING
    assert labeling.loc["TLAT", "paper"] == PAPER_LABELING["TLAT"]
    assert labeling.loc["FGSM-AT", "vs_standard"] == pytest.approx(-10.0)
    assert labeling.loc["TLAT", "paper_vs_standard"] == pytest.approx(69.4 - 73.3)
    for name in ("mtlat_robustness", "mtlat_labeling"):
        assert (tmp_path / f"f/{name}.png").stat().st_size > 0
        assert (tmp_path / f"t/{name}.tex").read_text().startswith("\\begin{table}")


def test_same_summaries_same_bytes(tmp_path, summaries):
    params = {"decimals": 2, "reference": "STANDARD", "robustness": ROBUSTNESS, "labeling": LABELING,
              "threats": THREATS}
    files = []
    for run in ("a", "b"):
        write_mtlat_tables(params, *summaries, str(tmp_path / run / "t"), str(tmp_path / run / "f"))
        files.append({p.name: p.read_bytes() for p in sorted((tmp_path / run).rglob("*.*"))})
    assert files[0] == files[1] and len(files[0]) == 8


def test_several_seeds_keep_each_seeds_rows_under_the_mean(tmp_path):
    """Two seeds: the mean row, then each seed's own (signed against the same seed's
    standard model), the paper's row with a blank seed; per_seed counts the seeds."""
    from fillrobust.report import claims as C

    threats, corruptions, clean = [], [], []
    keep = {("STANDARD", 0): 0.5, ("STANDARD", 1): 0.5, ("M-TLAT", 0): 0.9, ("M-TLAT", 1): 0.4}
    for (s, seed), k in keep.items():
        key = {"split": "S1", "strategy": s, "seed": seed}
        folder = tmp_path / s / f"seed{seed}"
        threats.append(_write(folder / "threats.json", {
            **key, "clean_accuracy": 0.8, "threats": {t: {"R": k} for t in THREATS}}))
        corruptions.append(_write(folder / "corruptions.json", {
            **key, "clean_accuracy": 0.8, "per_corruption": {c: {"1": 0.8 * k} for c in IMAGENET_C + MTLAT}}))
        clean.append(_write(folder / "clean.json", {**key, "accuracy": 0.8 + seed / 10, "train_accuracy": 0.95,
                                                    "converged": True}))
    params = {"decimals": 2, "reference": "STANDARD", "robustness": ["STANDARD", "M-TLAT"],
              "labeling": ["STANDARD", "M-TLAT"], "threats": THREATS}
    write_mtlat_tables(params, threats, corruptions, clean, str(tmp_path / "t"), str(tmp_path / "f"))
    robust = pd.read_csv(tmp_path / "t/mtlat_robustness.csv", dtype={"seed": str}, keep_default_na=False)
    rows = [(g, seed, source.split()[0]) for g, seed, source in zip(robust["strategy"], robust["seed"],
                                                                    robust["source"], strict=True)]
    assert rows[:4] == [("STANDARD", "mean", "ours"), ("STANDARD", "0", "ours"), ("STANDARD", "1", "ours"),
                        ("STANDARD", "", "paper")]
    mtlat = robust[(robust["strategy"] == "M-TLAT") & (robust["source"] == "ours")].set_index("seed")
    assert mtlat["mean ImageNet-C"].astype(float).to_dict() == pytest.approx({"mean": 0.65, "0": 0.9, "1": 0.4})
    assert mtlat["clean"].astype(float).to_dict() == pytest.approx({"mean": 85.0, "0": 80.0, "1": 90.0})
    md = (tmp_path / "t/mtlat_robustness.md").read_text()
    assert "0.90+" in md and "0.40-" in md  # each seed against the same seed's standard model
    labeling = pd.read_csv(tmp_path / "t/mtlat_labeling.csv", dtype={"seed": str})
    assert labeling["seed"].tolist() == ["mean", "0", "1", "mean", "0", "1"]
    claim = {"id": "t.mtlat", "paper": "P", "statement": "s", "paper_value": "v", "table": "mtlat_robustness",
             "where": {"source": "ours"}, "rule": "greater",
             "a": {"where": {"strategy": "M-TLAT"}, "column": "mean ImageNet-C", "per": "split"},
             "b": {"where": {"strategy": "STANDARD"}, "column": "mean ImageNet-C", "per": "split"}}
    row = C.claims_table([claim], C.read_tables([tmp_path / "t/mtlat_robustness.csv"])).iloc[0]
    assert row["holds"] == "yes" and row["per_seed"] == "1 of 2 seeds (not 1)"
