"""The M-TLAT rules (workflow/rules/mtlat.smk) on tiny settings.

tests/data/tiny.yaml keeps M-TLAT's grid to STANDARD, M-TLAT (benchmarked) and
TLAT (Table 3) on S1 and SynthSource (as params/synthsource.yaml), one epoch each. The finished workspace is the session's
shared tiny run of the whole DAG (tests/conftest.py).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.workflow.workspace import dry_run, make_workspace, planned, planned_jobs

pytestmark = pytest.mark.slow
SPLITS = ("S1", "SynthSource")  # tiny.yaml: as params/synthsource.yaml


def test_mtlat_models_are_ordinary_strategy_jobs(tmp_path):
    jobs = planned(make_workspace(tmp_path / "ws"), "results/tables/mtlat_robustness.csv")
    trained = {(w["split"], w["strategy"]) for rule, w in jobs if rule == "train"}
    models = {"STANDARD", "M-TLAT", "TLAT"}
    assert {(split, m) for split in SPLITS for m in models} <= trained
    assert not {s for split, s in trained if split not in SPLITS} & models
    for rule in ("evaluate_threats", "evaluate_corruptions"):
        assert {(w["split"], w["strategy"]) for r, w in jobs if r == rule} == {
            (split, m) for split in SPLITS for m in ("STANDARD", "M-TLAT")}
    assert sum(rule == "table_mtlat" for rule, _ in jobs) == 1


def test_synthsource_split_reads_synthsource(tmp_path):
    """The SynthSource split's jobs read data/synth_source (its split: train subset, val as test)."""
    targets = [f"results/eval/{split}/M-TLAT/seed0/{kind}/summary.json" for split in SPLITS
               for kind in ("threats", "corruptions")]
    out = dry_run(make_workspace(tmp_path / "ws"), "--forceall", *targets)
    inputs = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0].strip()
        found = re.search(r"^\s+input: (.*)$", block, re.MULTILINE)
        wild = re.search(r"wildcards: .*split=([A-Za-z0-9]+)", block)
        if found and wild:
            inputs[(rule, wild.group(1))] = found.group(1).split(", ")
    for rule in ("train", "split", "corrupt_set", "transfer_set", "evaluate_threats"):
        assert "data/synth_source" in inputs[(rule, "SynthSource")], rule
        assert "data/ccm" in inputs[(rule, "S1")] and "data/synth_source" not in inputs[(rule, "S1")], rule


def test_tables_hold_our_rows_and_the_papers(finished):
    robust = pd.read_csv(finished / "results/tables/mtlat_robustness.csv")
    ours = robust[robust["source"] == "ours"]
    for split in SPLITS:
        assert list(ours.loc[ours["split"] == split, "strategy"]) == ["STANDARD", "M-TLAT"], split
    assert {"clean", "mean ImageNet-C", "mean M-TLAT", "pgd_ll", "cw_l2"} <= set(robust.columns)
    assert set(robust["source"]) == {"ours", "paper (ResNet-50, ImageNet-100)"}
    labeling = pd.read_csv(finished / "results/tables/mtlat_labeling.csv").set_index(["split", "strategy"])
    for split in SPLITS:
        assert labeling.loc[(split, "TLAT"), "paper"] == 69.4 and labeling.loc[(split, "STANDARD"), "paper"] == 73.3
    for name in ("mtlat_robustness", "mtlat_labeling"):
        assert (finished / f"results/figures/{name}.png").stat().st_size > 0
    claims = pd.read_csv(finished / "results/tables/claims.csv")
    assert {"mtlat.best_mean_corruption_R", "mtlat.tlat_clean_ge_fgsm"} <= set(claims["claim"])


def test_one_strategy_change_reruns_only_its_model_evaluations_and_tables(finished):
    jobs = planned_jobs(finished, override={"train": {"strategies": {"M-TLAT": {"mixing": {"eps_max": 0.02}}}}})
    assert {k: v for k, v in jobs.items() if k not in ("report", "all")} == {
        "train": 2, "evaluate_threats": 2, "evaluate_corruptions": 2, "table_mtlat": 1, "claims": 1}
