"""Real Snakemake runs of the PRIME rules (workflow/rules/prime.smk) on tiny settings.

The finished workspace is the session's shared tiny run of the whole DAG
(tests/conftest.py); tests that rerun jobs work on a private copy of it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.workflow.workspace import (
    make_workspace,
    planned,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.slow

TABLES = ["prime_per_container", "prime_depth", "prime_beta", "prime_ablation", "preprocessing_baselines"]


def test_tables_and_models(finished):
    ws = finished
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (ws / f"results/tables/{name}.{ext}").stat().st_size > 0, name
    per = pd.read_csv(ws / "results/tables/prime_per_container.csv")
    # tiny.yaml: prime.strategies (DA-PRIME, AT-DA-PRIME) beside prime.compare (ST, ST-FT, AT-FT)
    assert set(per["strategy"]) == {"ST", "ST-FT", "AT-FT", "DA-PRIME", "AT-DA-PRIME"}
    assert set(per["split"]) == {"S1", "S2", "S3"}
    assert {"champagne_flute", "beer_cup", "cocktail_glass", "all"} == set(per.loc[per["split"] == "S1", "container"])
    depth = pd.read_csv(ws / "results/tables/prime_depth.csv")
    # m swept with p ~ Beta(1, 1); m = 3 at Beta(1, 1) is the Beta sweep's member too
    assert depth[["m", "a", "b", "model"]].values.tolist() == [[1, 1.0, 1.0, "DA-PRIME_m1_b1-1"],
                                                                 [3, 1.0, 1.0, "DA-PRIME_b1-1"]]
    assert depth["paper"].tolist()[0] == 82.69
    ablation = pd.read_csv(ws / "results/tables/prime_ablation.csv")
    assert ablation["model"].tolist() == ["DA-PRIME", "DA-PRIME_no-spatial"]
    base = pd.read_csv(ws / "results/tables/preprocessing_baselines.csv")
    assert base["strategy"].tolist() == ["ST", "LP", "AUGMIX-LP", "DA-PRIME"]
    assert base["accuracy"].between(0, 100).all()
    # prime.baselines.corruptions: every baseline meets the corrupted test set
    assert base["corruption_accuracy"].between(0, 100).all()
    lp = json.loads((ws / "models/S1/LP/seed0/model.json").read_text())
    # LP filters the training images only (preprocess_at: train): the model itself is plain
    assert lp["architecture"] == lp["params"]["arch"] and lp["params"]["preprocess"] == "lowpass"  # no "+lowpass"
    member = json.loads((ws / "models/S1/DA-PRIME_m1_b1-1/seed0/model.json").read_text())
    assert member["params"]["augment"]["params"] == {"width": 3, "depth": 1, "mix_a": 1.0, "mix_b": 1.0}
    ablated = json.loads((ws / "models/S1/DA-PRIME_no-spatial/seed0/model.json").read_text())
    assert ablated["params"]["augment"]["params"]["primitives"] == ["spectral", "color"]
    sheets = sorted(p.name for p in (ws / "results/figures/prime_sheets").glob("*.png"))
    assert sheets == ["color.png", "prime.png", "spatial.png", "spectral.png"]
    for name in ("prime_per_container", "prime_depth", "prime_beta", "prime_ablation"):
        assert (ws / f"results/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_nothing_left_and_rerun_is_byte_identical(finished, rerun_ws):
    assert planned_jobs(finished, "prime_all") == {}
    assert planned_jobs(finished, "prime_train", "prime_evaluate", "prime_tables") == {}  # the per-stage targets
    files = [rerun_ws / f"results/tables/{n}.{e}" for n in TABLES for e in ("csv", "md", "tex")]
    files += sorted((rerun_ws / "results/figures/prime_sheets").glob("*.png"))
    before = {p: p.read_bytes() for p in files}
    snakemake(rerun_ws, "prime_all", "--forcerun", "table_prime_sweep", "table_preprocessing_baselines",
              "table_prime_per_container", "prime_sheets")
    assert {p: p.read_bytes() for p in before} == before


def test_new_beta_cell_trains_only_that_member(finished):
    jobs = planned(finished, "prime_all", override={"prime": {"sweep": {"beta": {"values": [[5, 1], [1, 1], [6, 2]]}}}})
    assert {(r, w.get("strategy")) for r, w in jobs if r == "train"} == {("train", "DA-PRIME_b6-2")}
    assert {r for r, _ in jobs} == {"train", "table_prime_sweep", "prime_all"}
    assert [w["sweep"] for r, w in jobs if r == "table_prime_sweep"] == ["beta"]


def test_sheet_setting_reruns_only_the_sheets(finished):
    override = {"prime": {"sheets": {"seed": 1}}}
    assert planned_jobs(finished, "prime_all", override=override) == {"prime_sheets": 1, "prime_all": 1}


def test_prime_trainings_in_the_tiny_dag(tmp_path):
    """How much the PRIME rules add on tests/data/tiny.yaml (dry run of a fresh workspace)."""
    ws = make_workspace(tmp_path / "ws")
    jobs = planned(ws, "prime_all")
    trained = {(w["split"], w["strategy"]) for r, w in jobs if r == "train"}
    ours = {t for t in trained if t[1].split("_")[0] in ("DA-PRIME", "AT-DA-PRIME", "LP", "AUGMIX-LP")}
    # tiny: DA-PRIME and AT-DA-PRIME per split, 3 S1 sweep members, LP and AUGMIX-LP on S1
    assert len(ours) == 3 + 3 + 3 + 2, sorted(ours)
    rules = [r for r, _ in jobs]
    assert "evaluate_clean" not in rules  # every training writes its own clean evaluation
    assert rules.count("table_prime_sweep") == 3 and rules.count("prime_sheets") == 1
    assert rules.count("table_prime_per_container") == rules.count("table_preprocessing_baselines") == 1
