"""Real Snakemake runs of the frequency-study rules (workflow/rules/frequency.smk) on tiny settings.

The finished workspace is the session's shared tiny run of the whole DAG
(tests/conftest.py), whose margins cover ST, AT and the flipped-trained ST.
"""

from __future__ import annotations

import pandas as pd
import pytest

from fillrobust.data.store import read_dataset
from tests.workflow.workspace import (
    make_workspace,
    override_file,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.slow

TARGET = "frequency_all"
FREQUENCY_JOBS = {"derive_variant": 5, "derive_source_variant": 1, "train_variant": 1, "cross_dataset": 1, "margins": 3,
                  "table_margins": 1, "synthetic_margins": 1, "synthetic_transition_eps": 2, "synthetic_transition": 1,
                  "forgetting": 1,
                  "adversarial_energy": 1, "tables_frequency": 1, "frequency_all": 1}


def test_dry_run_plans_the_frequency_jobs(tmp_path):
    jobs = planned_jobs(make_workspace(tmp_path / "ws"), TARGET)
    assert {k: v for k, v in jobs.items() if k in FREQUENCY_JOBS} == FREQUENCY_JOBS
    assert jobs["train"] == 4  # ST, AT and the two AT-FT sweep members AT's eps_s comes from


def test_derived_datasets_follow_the_contract(finished):
    base = read_dataset(finished / "data/ccm")
    for variant in ("flipped", "lowpass", "highpass", "lp_hp", "grayscale"):
        ds = read_dataset(finished / "data/derived" / variant, verify=True)
        assert ds.meta["variant"] == variant and ds.images.shape[1:] == base.images.shape[1:]
        assert len(ds) == (2 if variant == "lp_hp" else 1) * len(base)
    assert read_dataset(finished / "data/derived/lowpass").meta["block_size"] == 8  # 16 px: 16 * 16 / 32
    # the forgetting experiment's LP u HP copy of SynthSource (frequency.forgetting.splits)
    source = read_dataset(finished / "data/synth_source")
    lp_hp = read_dataset(finished / "data/synth_source_derived/lp_hp", verify=True)
    assert len(lp_hp) == 2 * len(source) and lp_hp.meta["parent"]["content_hash"] == source.meta["content_hash"]
    assert list(lp_hp.manifest["variant"].unique()) == ["lowpass", "highpass"]


def test_tables_and_figures(finished):
    cross = pd.read_csv(finished / "results/tables/cross_dataset.csv")
    assert list(cross["trained_on"]) == ["original", "flipped"]
    assert {"original", "flipped", "lowpass", "highpass", "lp_hp", "grayscale", "paper_flipped"} <= set(cross)
    margins = pd.read_csv(finished / "results/tables/margins.csv")
    assert set(margins["model"]) == {"ST", "AT", "ST_flipped"} and set(margins["data"]) == {"original", "flipped"}
    assert set(margins["basis"]) == {"dct", "random"} and set(margins["subspace"]) == {0, 1, 2, 3}
    synthetic = pd.read_csv(finished / "results/tables/synthetic_margins.csv")
    assert len(synthetic) == 8 and synthetic["paper_median"].notna().all()
    # forgetting runs on SynthSource (frequency.forgetting.splits), not on the C-CCM splits
    assert not (finished / "results/tables/forgetting_S1.csv").exists()
    forgetting = pd.read_csv(finished / "results/tables/forgetting_SynthSource.csv")
    assert list(forgetting["phase"].unique()) == [1, 2, 3]
    # the constant-prediction floor of the HP accuracies: the most frequent class's share of the test images
    labels = read_dataset(finished / "data/synth_source").manifest.set_index("index")["label"]
    test = pd.read_parquet(finished / "data/splits/SynthSource.parquet").query("role == 'test'")["index"]
    share = 100 * labels.loc[test].value_counts().max() / len(test)
    assert forgetting["hp_majority"].nunique() == 1 and forgetting["hp_majority"].iloc[0] == pytest.approx(share, abs=0.005)
    energy = pd.read_csv(finished / "results/tables/adversarial_energy_S1.csv")
    assert (energy["p95_norm"] > 0).all()
    for name in ("margins_dct", "margins_random", "margins_median_original", "synthetic_transition",
                 "forgetting_SynthSource", "adversarial_energy_S1"):
        assert (finished / f"results/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "\\begin{tabular}" in (finished / "results/tables/margins.tex").read_text()


def test_nothing_left_to_do(finished):
    assert planned_jobs(finished, TARGET) == {}


def test_margin_setting_reruns_only_the_margins(finished):
    jobs = planned_jobs(finished, TARGET, override={"margins": {"n_images": 3}})
    # ST, AT and ST_flipped; forgetting has its own image count (frequency.forgetting.n_images)
    assert jobs == {"margins": 3, "table_margins": 1, "frequency_all": 1}


def test_synthetic_setting_reruns_only_the_synthetic_rules(finished):
    jobs = planned_jobs(finished, TARGET, override={"synthetic": {"epochs": 3}})
    assert jobs == {"synthetic_margins": 1, "synthetic_transition_eps": 2, "synthetic_transition": 1,
                    "tables_frequency": 1, "frequency_all": 1}
    # One job per eps of the T2 sweep (tiny: 0 and 1): a new eps trains only its own model,
    # a new order only joins the parts again.
    joined = {"synthetic_transition": 1, "tables_frequency": 1, "frequency_all": 1}
    for eps_values, new in (([0.5], 1), ([0.0, 1.0, 0.5], 1), ([1.0, 0.0], 0)):
        jobs = planned_jobs(finished, TARGET, override={"synthetic": {"transition": {"eps_values": eps_values}}})
        assert jobs == ({"synthetic_transition_eps": new} if new else {}) | joined, eps_values


def test_transition_eps_values_that_share_a_job_name_are_refused(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    bad = override_file(tmp_path, {"synthetic": {"transition": {"eps_values": [0.1234567, 0.1234568]}}})
    proc = snakemake(ws, "-n", TARGET, "--configfile", bad, check=False)
    assert proc.returncode != 0
    assert "synthetic.transition.eps_values" in proc.stdout + proc.stderr
    assert "expected distinct ones" in proc.stdout + proc.stderr


def test_decimals_redo_only_the_table_jobs(finished):
    jobs = planned_jobs(finished, TARGET, override={"tables": {"decimals": 3}})
    assert jobs == {"cross_dataset": 1, "table_margins": 1, "tables_frequency": 1, "frequency_all": 1}


def test_tables_are_byte_identical_on_rerun(rerun_ws):
    names = ["results/tables/margins.csv", "results/figures/margins_dct.png", "results/tables/cross_dataset.csv"]
    before = {n: (rerun_ws / n).read_bytes() for n in names}
    snakemake(rerun_ws, TARGET, "--forcerun", "margins", "cross_dataset")
    assert {n: (rerun_ws / n).read_bytes() for n in names} == before
