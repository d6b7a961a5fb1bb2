"""The M-TLAT rules (workflow/rules/mtlat.smk) on tiny settings.

tests/data/tiny.yaml keeps M-TLAT's grid to STANDARD, M-TLAT (benchmarked) and
TLAT (Table 3) on S1, one epoch each. The finished workspace is the session's
shared tiny run of the whole DAG (tests/conftest.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.workflow.workspace import make_workspace, planned, planned_jobs

pytestmark = pytest.mark.slow


def test_mtlat_models_are_ordinary_strategy_jobs(tmp_path):
    jobs = planned(make_workspace(tmp_path / "ws"), "results/tables/mtlat_robustness.csv")
    trained = {(w["split"], w["strategy"]) for rule, w in jobs if rule == "train"}
    assert {("S1", "STANDARD"), ("S1", "M-TLAT"), ("S1", "TLAT")} <= trained
    assert not {s for split, s in trained if split != "S1"} & {"STANDARD", "M-TLAT", "TLAT"}
    for rule in ("evaluate_threats", "evaluate_corruptions"):
        assert {(w["split"], w["strategy"]) for r, w in jobs if r == rule} == {("S1", "STANDARD"), ("S1", "M-TLAT")}
    assert sum(rule == "table_mtlat" for rule, _ in jobs) == 1


def test_tables_hold_our_rows_and_the_papers(finished):
    robust = pd.read_csv(finished / "results/tables/mtlat_robustness.csv")
    ours = robust[robust["source"] == "ours"]
    assert list(ours["strategy"]) == ["STANDARD", "M-TLAT"]
    assert {"clean", "mean ImageNet-C", "mean M-TLAT", "pgd_ll", "cw_l2"} <= set(robust.columns)
    assert set(robust["source"]) == {"ours", "paper (ResNet-50, ImageNet-100)"}
    labeling = pd.read_csv(finished / "results/tables/mtlat_labeling.csv").set_index("strategy")
    assert labeling.loc["TLAT", "paper"] == 69.4 and labeling.loc["STANDARD", "paper"] == 73.3
    for name in ("mtlat_robustness", "mtlat_labeling"):
        assert (finished / f"results/figures/{name}.png").stat().st_size > 0
    claims = pd.read_csv(finished / "results/tables/claims.csv")
    assert {"mtlat.best_mean_corruption_R", "mtlat.tlat_clean_ge_fgsm"} <= set(claims["claim"])


def test_one_strategy_change_reruns_only_its_model_evaluations_and_tables(finished):
    jobs = planned_jobs(finished, override={"train": {"strategies": {"M-TLAT": {"mixing": {"eps_max": 0.02}}}}})
    assert {k: v for k, v in jobs.items() if k not in ("report", "all")} == {
        "train": 1, "evaluate_threats": 1, "evaluate_corruptions": 1, "table_mtlat": 1, "claims": 1}
