"""Real Snakemake runs of the whole DAG on tiny settings.

One finished workspace is built per session; the rerun tests dry-run on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow.workspace import (
    env,
    make_workspace,
    override_file,
    planned,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.slow

# What an ST setting reruns: the 3 ST trainings (each writes its clean
# evaluation too), their threat / corruption evaluations, and everything
# built on ST (the frequency study's flipped / low-pass variant trainings, ST
# margins, forgetting on SynthSource with ST's recipe, PGD spectra).
# (Top-GAP's GradCAM comparison is ST-FT, fine-tuned from the same source: untouched.)
TRAINED = {"train": 3, "evaluate_threats": 3, "evaluate_corruptions": 3,
           "table_filling": 1, "table_robustness": 1, "table_prime_per_container": 1,
           "table_preprocessing_baselines": 1, "train_variant": 1, "cross_dataset": 1, "margins": 2,
           "table_margins": 1, "forgetting": 1, "adversarial_energy": 1, "tables_frequency": 1, "claims": 1,
           "report": 1, "all": 1}
TABLES = {"table_filling": 1, "table_sensitivity": 1, "table_robustness": 1, "table_mtlat": 1, "table_prime_per_container": 1,
          "table_prime_sweep": 3, "table_preprocessing_baselines": 1, "cross_dataset": 1, "table_margins": 1,
          "tables_frequency": 1, "tables_topgap": 1, "claims": 1, "report": 1, "all": 1}


def test_lint_only_the_deliberate_venv_choice(root):
    """No lints except 'use conda': the project pins a venv instead."""
    proc = snakemake(root, "--lint", check=False)
    lints = {line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip().startswith("* ")}
    assert lints == {"* Specify a conda environment or container for each rule.:"}, lints


STRATEGIES = ["ST", "AT", "ST-FT", "ST-AFT", "AT-FT", "AT-AFT"]


def test_dry_run_plans_the_whole_dag(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    jobs = planned_jobs(ws)
    # train per split: ST, AT, ST-AFT, AT-AFT, SURROGATE + 5 frozen-stage sweep
    # members (ST-FT is the L=1 one) + 2 eps-sweep members (AT-FT is adopted
    # from them) + DA-PRIME, AT-DA-PRIME; on S1 the PRIME sweeps and baselines
    # (prime.sweep / prime.baselines in tiny.yaml) add 11 more. Each training
    # (and adoption) writes its clean evaluation; ST-FT's is ST-FT_L1's, relabelled.
    # SynthSource is a split of M-TLAT and Top-GAP in tiny.yaml (params/synthsource.yaml): its split
    # file, STANDARD, M-TLAT, TLAT, the surrogate and ST-FT (Top-GAP's comparison) trained on it (+5);
    # NeurIPS 2020's fixed-feature / full-network transfer from each robust source, on S1 (+4), and
    # the six fixed-feature / full-network models again at seed 1 (tiny.yaml: fixed_vs_full.seeds, +6)
    study = {"synthesize_ccm": 1, "crop_ccm": 1, "split": 4, "synthesize_source": 1, "contact_sheets": 1,
             "train_source": 3, "train": 3 * 14 + 5 - 8 + 3 + 5 + 4 + 6, "select_eps_source": 3, "adopt_selected": 3,
             "alias_clean": 3, "table_filling": 1, "table_sensitivity": 1}
    # the frozen-layer sweep runs on S1 only (-8 trainings); M-TLAT's tiny grid (tests/data/tiny.yaml):
    # STANDARD, M-TLAT and TLAT trained on S1 (+3), the first two benchmarked (+2, +2), one table;
    # the same on SynthSource, with its corrupted and transfer sets
    benchmark = {"corrupt_set": 4, "transfer_set": 4, "evaluate_threats": 3 * 6 + 2 + 2,
                 "evaluate_corruptions": 3 * 6 + 3 + 2 + 2,
                 "table_robustness": 1, "table_mtlat": 1}
    prime = {"table_prime_per_container": 1, "table_prime_sweep": 3, "table_preprocessing_baselines": 1,
             "prime_sheets": 1}
    frequency = {"derive_variant": 5, "derive_source_variant": 1, "train_variant": 1, "cross_dataset": 1, "margins": 3, "table_margins": 1,
                 "synthetic_margins": 1, "synthetic_transition_eps": 2, "synthetic_transition": 1, "forgetting": 1,
                 "adversarial_energy": 1,
                 "tables_frequency": 1}
    # Top-GAP's tiny grid: one TOPGAP member trained on S1 and SynthSource, it and ST-FT evaluated, one table job
    topgap = {"train_topgap": 2, "evaluate_topgap": 4, "tables_topgap": 1}
    assert jobs == {**study, **benchmark, **prime, **frequency, **topgap, "claims": 1, "report": 1, "all": 1}


def test_seeds_profile_trains_every_model_per_seed(root, tmp_path):
    """params/seeds3.yaml: each seed-keyed job three times; the source models, the
    frequency study's models and the MI-FGSM surrogate (the attacker, one per split) once."""
    ws = make_workspace(tmp_path / "ws")
    override = yaml.safe_load((root / "params" / "seeds3.yaml").read_text())
    one, three = planned_jobs(ws), planned_jobs(ws, override=override)
    for rule in ("train_topgap", "adopt_selected", "alias_clean", "evaluate_threats",
                 "evaluate_corruptions", "evaluate_topgap"):
        assert three[rule] == 3 * one[rule], rule
    for rule in ("train_source", "train_variant", "select_eps_source", "table_filling", "claims"):
        assert three[rule] == one[rule], rule
    trained = Counter((w["split"], w["strategy"]) for rule, w in planned(ws, override=override) if rule == "train")
    assert {k: n for k, n in trained.items() if n != 3} == {(s, "SURROGATE"): 1 for s in ("S1", "S2", "S3", "SynthSource")}
    # tiny.yaml trains the six fixed-vs-full models at seed 1 too, which seeds3.yaml's three seeds include
    assert sum(trained.values()) == three["train"] == 3 * (one["train"] - 6) - 2 * 4


def test_outputs(finished):
    table = pd.read_csv(finished / "results/tables/filling_per_container.csv")
    overall = table[table["container"] == "all"]
    assert len(overall) == 18 and set(overall["split"]) == {"S1", "S2", "S3"}
    assert set(overall["strategy"]) == set(STRATEGIES)
    s3 = set(table.loc[table["split"] == "S3", "container"])
    assert s3 == {"all", "red_cup", "green_glass", "beer_cup"}
    assert table["accuracy"].between(0, 100).all()
    md_rows = [r for r in (finished / "results/tables/filling_per_container.md").read_text().splitlines()
               if r.startswith("| S")]
    assert len(md_rows) == len(table)
    assert "\\begin{tabular}" in (finished / "results/tables/filling_per_container.tex").read_text()
    assert (finished / "results/figures/filling_per_container.png").read_bytes()[:4] == b"\x89PNG"
    preds = pd.read_parquet(finished / "results/eval/S1/ST/seed0/clean/predictions.parquet")
    assert {"index", "container", "label", "prediction", "threat", "severity", "norm"} <= set(preds.columns)
    sidecar = json.loads((finished / "models/S1/ST/seed0/model.json").read_text())
    assert sidecar["strategy"] == "ST" and sidecar["split"] == "S1" and len(sidecar["weights_sha256"]) == 64
    metrics = json.loads((finished / "results/metrics/filling.json").read_text())
    assert set(metrics) == {f"{s}/{g}/seed0" for s in ("S1", "S2", "S3") for g in STRATEGIES}


def test_sensitivity_outputs(finished):
    frozen = pd.read_csv(finished / "results/tables/sensitivity_frozen_layers.csv")
    # sensitivity.frozen_layers.splits: [S1] (params.yaml): the sweep on S1 only,
    # the study's ST-FT (= ST-FT_L1) still on every split.
    assert sorted(zip(frozen["split"], frozen["L"], strict=True)) == [("S1", L) for L in range(5)]
    assert frozen.loc[frozen["L"] == 1, "paper"].tolist() == [78.34]
    assert not (finished / "models/S2/ST-FT_L0").exists() and (finished / "models/S2/ST-FT_L1").is_dir()
    eps = pd.read_csv(finished / "results/tables/sensitivity_eps_source.csv")
    assert sorted(set(eps["eps_s"])) == [0.5, 1.0]
    assert (eps.groupby("split")["selected"].sum() == 1).all()  # one eps_s chosen per split
    for split, part in eps.groupby("split"):
        best = part.loc[part["accuracy"].idxmax()]
        chosen = part[part["selected"]].iloc[0]
        assert chosen["accuracy"] == best["accuracy"], split
        selection = json.loads((finished / f"models/{split}/selection/eps_source.json").read_text())
        assert selection["selected_eps"] == chosen["eps_s"]
        adopted = json.loads((finished / f"models/{split}/AT-FT/seed0/model.json").read_text())
        assert adopted["selected_from"] == f"AT-FT_eps{chosen['eps_s']:g}"
        at_aft = json.loads((finished / f"models/{split}/AT-AFT/seed0/model.json").read_text())
        assert at_aft["params"]["adversarial"]["eps"] == chosen["eps_s"]  # eps_t = eps_s
        assert at_aft["parent"]["eps"] == chosen["eps_s"]
    fixed = pd.read_csv(finished / "results/tables/transfer_fixed_vs_full.csv")
    assert set(fixed["split"]) == {"S1"} and fixed["fixed_feature_L4"].notna().all()
    assert fixed["full_network_L0"].notna().all()
    # NeurIPS 2020: the standard source (ST-FT) and each robust one of the eps_s grid (AT-FT)
    s1_eps = json.loads((finished / "models/S1/selection/eps_source.json").read_text())["selected_eps"]
    # two trials each (tiny.yaml: sensitivity.fixed_vs_full.seeds) and their mean, which the claims read
    assert (fixed.groupby("eps_s")["seed"].apply(list) == [["0", "1", "mean"]] * 3).all()
    means = fixed[fixed["seed"] == "mean"]
    assert means[["source", "strategy", "eps_s"]].values.tolist() == [["standard", "ST-FT", 0], ["robust", "AT-FT", 0.5],
                                                                       ["robust", "AT-FT", 1]]
    trials = fixed[fixed["seed"] != "mean"].groupby("eps_s")[["fixed_feature_L4", "full_network_L0"]].mean()
    assert np.allclose(means.set_index("eps_s")[trials.columns].loc[trials.index], trials, atol=0.01)  # 2 decimals
    assert means.set_index("eps_s")["selected"].to_dict() == {0: False, 0.5: s1_eps == 0.5, 1: s1_eps == 1}
    for seed in (0, 1):
        robust_l4 = json.loads((finished / f"models/S1/AT-FT_eps0.5_L4/seed{seed}/model.json").read_text())
        assert robust_l4["params"]["frozen_stages"] == 4 and robust_l4["parent"]["eps"] == 0.5
        assert robust_l4["seed"] == seed
    claims = pd.read_csv(finished / "results/tables/claims.csv").set_index("claim")
    assert "of 2 seeds" in claims.loc["neurips.fixed_feature_robust", "per_seed"]  # also judged per trial
    for name in ("sensitivity_frozen_layers", "sensitivity_eps_source", "transfer_fixed_vs_full"):
        assert (finished / f"results/figures/{name}.png").stat().st_size > 1000


def test_robustness_outputs(finished):
    """The perturbation benchmark: every study model, threat and corruption in the tables."""
    params = yaml.safe_load((finished / "params.yaml").read_text())
    evaluate, eps_scale = params["evaluate"], params["train"]["eps_scale"]
    threats, corruptions = list(evaluate["threats"]), evaluate["corruptions"]["names"]
    scores = pd.read_csv(finished / "results/tables/robustness_scores.csv")
    assert list(scores.columns) == ["split", "kind", "perturbation", "images", *STRATEGIES]
    minimal = {t for t, spec in evaluate["threats"].items() if spec["attack"] in ("deepfool", "sparsefool", "cw_l2")}
    norms = scores[scores["kind"] == "median norm"]
    assert set(norms["perturbation"]) == minimal and (norms["images"] <= norms.merge(
        scores[scores["kind"] == "attack"], on=["split", "perturbation"])["images_y"].to_numpy()).all()
    scores = scores[scores["kind"] != "median norm"]
    assert (scores.loc[scores["kind"] == "corruption", "images"] == evaluate["corruptions"]["images"]).all()
    for split, part in scores.groupby("split"):
        assert set(part["perturbation"]) == {"clean", "mean ImageNet-C", "mean M-TLAT", *threats, *corruptions}, split
    assert scores.loc[scores["kind"] == "clean", STRATEGIES].notna().all().all()
    values = scores[STRATEGIES].to_numpy().ravel()
    assert ((values >= 0) | pd.isna(values)).all()  # R is undefined (blank) where A_clean = 0
    severity = pd.read_csv(finished / "results/tables/corruption_severity.csv")
    assert (severity["corruption"] == "mean ImageNet-C").sum() == 3 * len(STRATEGIES)
    assert severity.loc[severity["strategy"] == "ST", "CE_norm"].round(6).eq(100).all()
    per_container = pd.read_csv(finished / "results/tables/robust_per_container.csv")
    assert set(per_container.loc[per_container["split"] == "S3", "container"]) == {"red_cup", "green_glass", "beer_cup"}
    assert list(per_container.columns) == ["split", "strategy", "container", "clean", *threats]
    preds = pd.read_parquet(finished / "results/eval/S2/AT-FT/seed0/threats/predictions.parquet")
    norm = preds.groupby("threat")["norm"].max()
    assert norm["pgd_linf"] <= 0.04 + 1e-6 and norm["fgsm"] <= 0.04 + 1e-6
    assert norm["pgd_l2"] <= evaluate["threats"]["pgd_l2"]["params"]["eps"] * eps_scale + 1e-5
    assert norm["mifgsm_0.08"] <= 0.08 + 0.5 / 255 + 1e-6  # transferred, stored as uint8
    counts = preds.groupby("threat").size()
    assert counts["clean"] == evaluate["images"] and counts["sparsefool"] == evaluate["threats"]["sparsefool"]["images"]
    summary = json.loads((finished / "results/eval/S2/AT-FT/seed0/threats/summary.json").read_text())
    deepfool = summary["threats"]["deepfool"]
    # the median norm is over successful attacks only (blank when none succeeded)
    assert deepfool["median_norm"] >= 0 if deepfool["n_success"] else pd.isna(deepfool["median_norm"])
    surrogate = json.loads((finished / "models/S2/SURROGATE/seed0/model.json").read_text())
    assert surrogate["architecture"] == "vgg11_bn_half"  # params.yaml; paper.yaml: vgg11_bn
    corrupted = json.loads((finished / "data/corrupted/S2/dataset.json").read_text())
    assert corrupted["count"] == evaluate["corruptions"]["images"] * (1 + len(corruptions) * 2)


def test_threat_and_bn_settings_rerun_only_their_evaluations(finished):
    override = {"evaluate": {"threats": {"fgsm": {"params": {"eps": 0.02}}}}}
    # the report (last job of `all`) shows every table and the params' hash: any change reruns it
    assert planned_jobs(finished, override=override) == {"evaluate_threats": 22, "table_robustness": 1, "table_mtlat": 1, "claims": 1,
                                                            "report": 1, "all": 1}
    override = {"evaluate": {"bn_adaptation": {"mode": "partial"}}}
    # the PRIME baselines table reads the corruption accuracies too
    assert planned_jobs(finished, override=override) == {"evaluate_corruptions": 25, "table_robustness": 1, "table_mtlat": 1,
                                                            "table_preprocessing_baselines": 1, "claims": 1,
                                                            "report": 1, "all": 1}


def test_unknown_threat_names_stop_before_any_job(tmp_path):
    ws = make_workspace(tmp_path / "ws", {"evaluate": {"threats": {"pgd_linf": {"params": {"eps": -1}},
                                                                   "x": {"attack": "pgdd"}},
                                          "corruptions": {"names": ["fogg"]}}})
    proc = snakemake(ws, check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "evaluate.threats.x" in message and "'pgd_linf'" in message
    assert "evaluate.threats.pgd_linf" in message and "[0.0, 1.0]" in message
    assert "evaluate.corruptions.names: unknown ['fogg']" in message
    assert not (ws / "data").exists() and not (ws / "logs").exists()


def test_jobs_stay_under_memory_budget(finished):
    """Snakemake's benchmark files record each job's peak RSS (MB)."""
    peaks = {str(p.relative_to(finished)): pd.read_csv(p, sep="\t")["max_rss"].max()
             for p in (finished / "logs/bench").rglob("*.tsv")}
    assert len(peaks) > 80
    assert max(peaks.values()) < 3000, peaks


def test_nothing_left_to_do(finished):
    assert planned_jobs(finished) == {}


def test_lr_change_reruns_training_and_downstream_only(finished):
    assert planned_jobs(finished, override={"train": {"strategies": {"ST": {"lr": 0.07}}}}) == TRAINED


def test_table_setting_reruns_only_the_table(finished):
    assert planned_jobs(finished, override={"tables": {"decimals": 3}}) == TABLES


def test_one_split_change_reruns_that_split_only(finished):
    with open(finished / "params.yaml") as handle:
        membership = yaml.safe_load(handle)["splits"]["membership"]["S2"]
    swapped = {"train": membership["train"][:-1] + ["wine_glass"],
               "test": [c for c in membership["test"] if c != "wine_glass"] + [membership["train"][-1]]}
    jobs = planned(finished, override={"splits": {"membership": {"S2": swapped}}})
    assert {w.get("split") for _, w in jobs} == {"S2", None}
    rules = {rule for rule, _ in jobs}
    assert rules == {"split", "train", "select_eps_source", "adopt_selected", "alias_clean",
                     "corrupt_set", "transfer_set", "evaluate_threats", "evaluate_corruptions",
                     "table_filling", "table_sensitivity", "table_robustness", "table_prime_per_container", "claims",
                     "report", "all"}


def test_source_eps_change_reruns_only_its_dependants(finished):
    """A new source training setting: robust sources and everything fine-tuned from them."""
    jobs = planned(finished, override={"source": {"adversarial": {"steps": 2}}})
    trained = {w["strategy"] for rule, w in jobs if rule == "train"}
    # AT reads the eps_s that the (rerun) sweep selects; ST and ST-* are untouched
    assert trained == {"AT-FT_eps0.5", "AT-FT_eps1", "AT-AFT", "AT", "AT-DA-PRIME",
                       "AT-FT_eps0.5_L4", "AT-FT_eps0.5_L0", "AT-FT_eps1_L4", "AT-FT_eps1_L0"}
    assert {w["eps"] for rule, w in jobs if rule == "train_source"} == {"0.5", "1"}
    assert not {"synthesize_ccm", "crop_ccm", "split", "synthesize_source"} & {r for r, _ in jobs}


def test_fixed_vs_full_seeds_train_only_the_neurips_models(finished):
    """More seeds for the fixed-feature / full-network models (the paper's three trials) train
    those models alone, on the frozen sweep's split, and rewrite only their table and after."""
    jobs = planned(finished, override={"sensitivity": {"fixed_vs_full": {"seeds": [1, 2]}}})
    trained = {(w["split"], w["strategy"], w["seed"]) for rule, w in jobs if rule == "train"}
    assert trained == {("S1", m, "2") for m in ("ST-FT_L4", "ST-FT_L0", "AT-FT_eps0.5_L4", "AT-FT_eps0.5_L0",
                                                "AT-FT_eps1_L4", "AT-FT_eps1_L0")}
    assert {rule for rule, _ in jobs} == {"train", "table_sensitivity", "claims", "report", "all"}


def test_standard_source_change_reruns_topgap(finished):
    """TOPGAP starts from the standard source model (Table 3's pretrained backbone): a new
    standard source retrains every Top-GAP member, on each Top-GAP split."""
    jobs = planned(finished, override={"source": {"train": {"lr": 0.04}}})
    assert {w["split"] for rule, w in jobs if rule == "train_topgap"} == {"S1", "SynthSource"}
    assert {w["eps"] for rule, w in jobs if rule == "train_source"} == {"0", "0.5", "1"}


def test_invalid_params_stop_before_any_job(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    bad = override_file(tmp_path, {"train": {"strategies": {"ST": {"lr": -1, "lrr": 2}}}})
    proc = snakemake(ws, "--configfile", bad, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "train.strategies.ST.lr" in message and "unknown key train.strategies.ST.lrr" in message
    assert not (ws / "data").exists() and not (ws / "models").exists() and not (ws / "logs").exists()


def test_changed_checkpoint_stops_the_run_and_deletes_nothing(rerun_ws):
    """Left to itself Snakemake would delete the evaluations of a changed checkpoint before
    its jobs refuse it; the workspace check stops it first (fillrobust.io.integrity)."""
    weights = rerun_ws / "models/S1/ST/seed0/model.safetensors"
    downstream = sorted((rerun_ws / "results/eval/S1/ST/seed0").rglob("*.json"))
    before = {p: p.read_bytes() for p in downstream}
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    proc = snakemake(rerun_ws, check=False)
    assert proc.returncode != 0
    assert "models/S1/ST/seed0/model.safetensors: sha256 does not match" in proc.stdout + proc.stderr
    assert len(before) >= 3 and {p: p.read_bytes() for p in downstream} == before


def test_duplicate_keys_and_whole_float_integers_stop_the_dry_run(tmp_path):
    """Snakemake's YAML keeps the last of two equal keys, and jsonschema takes epochs: 10.0 for
    an integer (the job's range() does not): both stop the dry run, naming where."""
    ws = make_workspace(tmp_path / "ws")
    with open(ws / "params.yaml", "a") as handle:
        handle.write("tables: {decimals: 3}\n")  # a second top-level `tables`
    lines = (ws / "params.yaml").read_text().count("\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  strategies:\n    ST:\n      lr: 0.1\n      lr: 0.2\n")
    proc = snakemake(ws, "-n", "--configfile", twice, check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "twice.yaml:5: train.strategies.ST.lr is given twice (first at line 4)" in message, message
    assert f"params.yaml:{lines}: tables is given twice" in message, message
    ws = make_workspace(tmp_path / "ws2")
    whole = override_file(tmp_path, {"train": {"strategies": {"ST": {"epochs": 10.0}}}})
    proc = snakemake(ws, "-n", "--configfile", whole, check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "train.strategies.ST.epochs: 10.0 is not of type 'integer'; write 10" in message, message
    assert not (ws / "data").exists() and not (ws / "logs").exists()


def test_tables_are_byte_identical_on_rerun(rerun_ws):
    figures = ["filling_per_container", "robustness_scores", "corruption_severity"]
    files = sorted((rerun_ws / "results/tables").iterdir()) + [rerun_ws / f"results/figures/{f}.png" for f in figures]
    before = {p.name: p.read_bytes() for p in files}
    snakemake(rerun_ws, "--forcerun", "table_filling", "table_robustness")
    assert {p.name: p.read_bytes() for p in files} == before


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_training_leaves_nothing_finished_and_rerun_is_identical(tmp_path):
    """SIGKILL the whole Snakemake process group mid-training, then rerun."""
    # The tiny run's quarter-width network trains an epoch of S1 in ~25 ms: 100 epochs leave
    # the kill (the log is polled every 0.2 s) seconds before the final save.
    ws = make_workspace(tmp_path / "ws", {"train": {"defaults": {"epochs": 100}}})
    target = "models/S1/ST/seed0/model.safetensors"
    snakemake(ws, target)
    reference = {p.name: p.read_bytes() for p in (ws / target).parent.iterdir()}
    for p in (ws / target).parent.iterdir():
        p.unlink()

    log = ws / "logs/train/S1/ST/seed0.log"
    log.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", target], cwd=ws, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "epoch=2" in log.read_text()):
        assert proc.poll() is None, "training finished before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "done in" not in log.read_text(), "the kill came after the training ended"
    assert not (ws / target).exists() and not (ws / target).with_suffix(".json").exists()

    snakemake(ws, "--unlock")  # the killed Snakemake left its lock, as after a power loss
    snakemake(ws, target, "--rerun-incomplete")
    rerun = {p.name: p.read_bytes() for p in (ws / target).parent.iterdir()}
    assert sorted(rerun) == ["model.json", "model.safetensors"]
    assert rerun["model.safetensors"] == reference["model.safetensors"]
    assert json.loads(rerun["model.json"])["weights_sha256"] == _sha(ws / target)
