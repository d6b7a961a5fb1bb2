"""The claims table: each rule kind holding and failing, selection, n/a, validation, the real file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fillrobust.report import claims as C
from fillrobust.report.sensitivity import (
    fixed_vs_full,
    frozen_layers_table,
    read_selections,
    transfer_bars,
)
from fillrobust.report.tables import filling_per_container, write_table
from fillrobust.train.convergence import convergence

STRATEGIES = ["ST", "ST-FT", "AT-FT"]


def _claim(**keys) -> dict:
    base = {"id": "t.claim", "paper": "P", "statement": "s", "paper_value": "v", "table": "acc"}
    return {**base, **keys}


def _run(claim: dict, tables: dict[str, pd.DataFrame], known: list[str] | None = None) -> C.Result:
    C.validate_claim(claim)
    return C.evaluate_claim(claim, C.Context(tables, known))


@pytest.fixture
def acc() -> dict[str, pd.DataFrame]:
    """Overall accuracy per split and strategy: AT-FT > ST-FT > ST except ST on S3."""
    values = {"S1": (50.0, 60.0, 70.0), "S2": (30.0, 40.0, 45.0), "S3": (80.0, 60.0, 79.5)}
    rows = [{"split": s, "strategy": g, "seed": "0", "accuracy": v[i], "converged": True}
            for s, v in values.items() for i, g in enumerate(STRATEGIES)]
    return {"acc": pd.DataFrame(rows)}


def _sel(strategy, **kw) -> dict:
    return {"where": {"strategy": strategy}, "column": "accuracy", **kw}


# --------------------------------------------------------------------------- rule kinds


def test_greater_mean_over_splits_holds_and_fails(acc):
    held = _run(_claim(rule="greater", a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean")), acc)
    assert held.holds == "yes" and held.our_value == "64.83 vs 53.33 (AT-FT vs ST)"  # which side is which
    labelled = _claim(rule="greater", a=_sel("AT-FT", agg="mean", label="robust source"),
                      b={"where": {"strategy": "ST", "split": "S1"}, "column": "accuracy", "agg": "mean"})
    assert _run(labelled, acc).our_value.endswith("vs 50.00")  # no label for a side it cannot name
    several = _claim(rule="greater", a=_sel(["AT-FT", "ST-FT"], agg="min"), b=_sel("ST", agg="mean"))
    assert _run(several, acc).our_value.endswith("(AT-FT, ST-FT vs ST)")
    failed = _run(_claim(rule="greater", a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean"), margin=20), acc)
    assert failed.holds == "no" and failed.rule == "a > b + 20"


def test_at_least_per_split_needs_every_group(acc):
    per = _claim(rule="at_least", a=_sel("AT-FT", per="split"), b=_sel("ST-FT", per="split"))
    assert _run(per, acc).holds == "yes"
    against_st = _claim(rule="at_least", a=_sel("AT-FT", per="split"), b=_sel("ST", per="split"))
    result = _run(against_st, acc)
    assert result.holds == "no" and "S3: 79.50 vs 80.00" in result.our_value
    tolerant = dict(against_st, margin=-1)
    assert _run(tolerant, acc).holds == "yes"


def test_best_within_tolerance(acc):
    claim = _claim(rule="best", value={"column": "accuracy", "per": "split", "over": "strategy"}, item="AT-FT")
    strict = _run(claim, acc)
    assert strict.holds == "no" and "S3: AT-FT 79.50, best ST 80.00" in strict.our_value
    assert _run(dict(claim, tol=1.0), acc).holds == "yes"


def test_best_on_numeric_over_column():
    frame = pd.DataFrame({"split": ["S1"] * 3, "L": [0, 1, 2], "accuracy": [70.0, 75.0, 74.5]})
    claim = _claim(rule="best", value={"column": "accuracy", "per": "split", "over": "L"}, item=1)
    assert _run(claim, {"acc": frame}).holds == "yes"
    assert "L=2 74.50, best L=1 75.00" in _run(dict(claim, item=2), {"acc": frame}).our_value
    assert _run(dict(claim, item=2), {"acc": frame}).holds == "no"
    assert _run(dict(claim, item=2, tol=0.5), {"acc": frame}).holds == "yes"


def test_decreasing_and_increasing_trends():
    frame = pd.DataFrame({"split": ["S1"] * 4, "L": [1, 2, 3, 4], "accuracy": [80.0, 78.0, 78.5, 60.0]})
    value = {"column": "accuracy", "per": "split", "over": "L"}
    assert _run(_claim(rule="decreasing", value=value), {"acc": frame}).holds == "no"  # 78 -> 78.5
    assert _run(_claim(rule="decreasing", value=value, tol=1.0), {"acc": frame}).holds == "yes"
    assert _run(_claim(rule="decreasing", value=value, tol=1.0, min_change=25), {"acc": frame}).holds == "no"
    assert _run(_claim(rule="increasing", value=value, tol=1.0), {"acc": frame}).holds == "no"
    rising = frame.assign(accuracy=[1.0, 2.0, 3.0, 4.0])
    result = _run(_claim(rule="increasing", value=value), {"acc": rising})
    assert result.holds == "yes" and "1.00 -> 2.00 -> 3.00 -> 4.00 (L 1..4)" in result.our_value


def test_approx_against_number_and_selector():
    frame = pd.DataFrame({"model": ["mlp", "logreg"], "subspace": ["u1", "u1"], "median": [2.8, 2.49],
                          "paper_median": [2.5, 2.49]})
    value = {"where": {"subspace": "u1"}, "column": "median", "per": "model"}
    assert _run(_claim(rule="approx", value=value, target=2.5, tol=0.5), {"acc": frame}).holds == "yes"
    assert _run(_claim(rule="approx", value=value, target=2.5, tol=0.2), {"acc": frame}).holds == "no"
    target = {"where": {"subspace": "u1"}, "column": "paper_median", "per": "model"}
    assert _run(_claim(rule="approx", value=value, target=target, tol=0.1), {"acc": frame}).holds == "no"
    assert _run(_claim(rule="approx", value=value, target=target, tol=0.31), {"acc": frame}).holds == "yes"


def test_near_chance():
    frame = pd.DataFrame({"split": ["S1", "S2"], "trained_on": ["original"] * 2, "flipped": [27.0, 41.0]})
    value = {"where": {"trained_on": "original"}, "column": "flipped", "per": "split"}
    result = _run(_claim(rule="near_chance", value=value, classes=4, tol=10), {"acc": frame})
    assert result.holds == "no" and "S1: 27.00 vs chance 25.00" in result.our_value
    assert _run(_claim(rule="near_chance", value=value, classes=4, tol=16), {"acc": frame}).holds == "yes"


def test_ratio_at_least_with_first_and_last_after_sorting():
    frame = pd.DataFrame({"split": ["S1"] * 3, "subspace": [2, 0, 1], "median": [9.0, 3.0, 5.0]})
    high = {"column": "median", "per": "split", "agg": "last", "sort": "subspace"}
    low = {"column": "median", "per": "split", "agg": "first", "sort": "subspace"}
    assert _run(_claim(rule="ratio_at_least", a=high, b=low, k=3), {"acc": frame}).holds == "yes"
    failed = _run(_claim(rule="ratio_at_least", a=high, b=low, k=3.5), {"acc": frame})
    assert failed.holds == "no" and "9.00 / 3.00" in failed.our_value


def test_all_true_over_several_tables(acc):
    other = pd.DataFrame({"split": ["S1"], "L": [1], "converged": [False]})
    claim = _claim(rule="all_true", value={"column": "converged"})
    assert _run(claim, acc).holds == "yes"
    result = _run(dict(claim, table=["acc", "sweep"]), {**acc, "sweep": other})
    assert result.holds == "no" and "9/10 true" in result.our_value and "sweep[S1,1]" in result.our_value
    absent = _run(dict(claim, table=["acc", "sweep"]), acc)  # one table absent: checked on the others
    assert absent.holds == "yes" and "absent: sweep" in absent.our_value


def test_all_true_with_unknown_flag_is_na(acc):
    acc["acc"]["converged"] = acc["acc"]["converged"].astype(object)
    acc["acc"].loc[0, "converged"] = None
    assert _run(_claim(rule="all_true", value={"column": "converged"}), acc).holds == "n/a"


def test_checks_must_all_hold(acc):
    ok = {"rule": "greater", "a": _sel("AT-FT", agg="mean"), "b": _sel("ST", agg="mean")}
    bad = {"rule": "greater", "a": _sel("ST", agg="mean"), "b": _sel("AT-FT", agg="mean")}
    assert _run(_claim(checks=[ok]), acc).holds == "yes"
    both = _run(_claim(checks=[ok, bad]), acc)
    assert both.holds == "no" and " AND " in both.rule and " // " in both.our_value


# --------------------------------------------------------------------------- selection and n/a


def test_seed_mean_rows_are_used_when_present(acc):
    frame = acc["acc"]
    mean = frame.assign(seed="mean", accuracy=frame["accuracy"] + 100)
    tables = {"acc": pd.concat([frame, mean], ignore_index=True)}
    result = _run(_claim(rule="greater", a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean")), tables)
    assert "164.83 vs 153.33" in result.our_value
    seed0 = _claim(rule="greater", where={"seed": 0}, a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean"))
    assert "64.83 vs 53.33" in _run(seed0, tables).our_value


def test_each_seed_alone_when_the_tables_have_several(acc, tmp_path):
    """per_seed: the claim on each seed's rows; blank for one seed, seedless tables or a chosen seed."""
    frame = acc["acc"]
    seed1 = frame.assign(seed="1", accuracy=np.where(frame["strategy"] == "ST", 99.0, frame["accuracy"]))
    seed2 = frame.assign(seed="2")
    mean = frame.assign(seed="mean")  # the seed mean as the table writers add it
    tables = {"acc": pd.concat([frame, seed1, seed2, mean], ignore_index=True)}
    claim = _claim(rule="greater", a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean"))
    result = _run(claim, tables)
    assert result.holds == "yes" and result.per_seed == "2 of 3 seeds (not 1)"  # ST wins on seed 1 alone
    assert _run(claim, acc).per_seed == ""  # one seed
    assert _run(dict(claim, where={"seed": 0}), tables).per_seed == ""  # the claim picks its seed
    seedless = {"acc": tables["acc"], "other": pd.DataFrame({"strategy": ["ST"], "accuracy": [1.0]})}
    mixed = _claim(rule="greater", a=_sel("AT-FT", agg="mean"), b={**_sel("ST", agg="mean"), "table": "other"})
    assert _run(mixed, seedless).per_seed == ""  # a table of means only would repeat in every seed
    C.claims_table([dict(claim, margin=100)], tables).to_csv(tmp_path / "claims.csv", index=False)
    lines = C.summary_lines(tmp_path / "claims.csv")
    assert lines[1].endswith("(holds on 0 of 3 seeds (not 0, 1, 2))")


def test_where_range_and_list(acc):
    frame = pd.DataFrame({"L": [0, 1, 2, 3, 4], "split": "S1", "accuracy": [1.0, 5.0, 4.0, 3.0, 2.0]})
    claim = _claim(rule="decreasing", where={"L": {"min": 1, "max": 4}},
                   value={"column": "accuracy", "per": "split", "over": "L"})
    assert _run(claim, {"acc": frame}).holds == "yes"
    assert _run(dict(claim, where={}), {"acc": frame}).holds == "no"
    two = _claim(rule="greater", a=_sel(["AT-FT", "ST-FT"], agg="min"), b=_sel("ST", agg="min"))
    assert "40.00 vs 30.00" in _run(two, acc).our_value


def test_absent_table_empty_selection_and_blank_are_na(acc):
    absent = _run(_claim(table="sensitivity", rule="all_true", value={"column": "converged"}), acc)
    assert absent.holds == "n/a" and "not generated" in absent.note
    empty = _run(_claim(rule="greater", a=_sel("AT-AFT", agg="mean"), b=_sel("ST", agg="mean")), acc)
    assert empty.holds == "n/a" and "AT-AFT" in empty.note
    acc["acc"].loc[acc["acc"]["strategy"] == "ST", "accuracy"] = np.nan
    blank = _run(_claim(rule="greater", a=_sel("AT-FT", agg="max"), b=_sel("ST", agg="max")), acc)
    assert blank.holds == "n/a" and "blank" in blank.note


def test_split_pattern_tables_get_their_split():
    frames = {f"forgetting_{s}": pd.DataFrame({"trained_on": ["LP+HP", "LP only"], "hp": [60.0, v]})
              for s, v in (("S1", 10.0), ("S2", 55.0))}
    claim = _claim(table="forgetting_{split}", rule="greater", margin=10,
                   a={"where": {"trained_on": "LP+HP"}, "column": "hp", "per": "split"},
                   b={"where": {"trained_on": "LP only"}, "column": "hp", "per": "split"})
    result = _run(claim, frames)
    assert result.holds == "no" and "S1: 60.00 vs 10.00" in result.our_value and "S2:" in result.our_value


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("claim", "message"), [
    (_claim(rule="bigger", a={"column": "x"}, b={"column": "x"}), "rule 'bigger' unknown"),
    (_claim(rule="greater", a={"column": "x"}), "rule greater needs key 'b'"),
    (_claim(rule="greater", a={"column": "x"}, b={"where": {}}), "key 'b': missing key 'column'"),
    (_claim(rule="greater", a={"column": "x", "colour": 1}, b={"column": "x"}), "unknown key(s) ['colour']"),
    (_claim(rule="greater", a={"column": "x"}, b={"column": "x"}, tolerance=1), "unknown key(s) ['tolerance']"),
    (_claim(rule="best", value={"column": "x"}, item="A"), "needs 'value.over'"),
    (_claim(rule="greater", a={"column": "x", "agg": "last"}, b={"column": "x"}), "agg last needs key 'sort'"),
    (_claim(rule="greater", a={"column": "x", "agg": "avg"}, b={"column": "x"}), "agg 'avg' unknown"),
    (_claim(rule="all_true", value={"column": "x"}, where={"L": {"from": 1}}), "where.L: a range"),
    (_claim(rule="greater", a={"column": "x"}, b={"column": "x"}, margin="big"), "key 'margin' must be a number"),
    (_claim(checks=[]), "non-empty list"),
    (_claim(rule="ratio_at_least", a={"column": "x"}, b={"column": "x"}, k="2"), "key 'k' must be a number"),
    (_claim(rule="near_chance", value={"column": "x"}, classes=1, tol=5), "'classes' must be an integer >= 2"),
    ({"id": "t.claim", "paper": "P", "statement": "s", "rule": "all_true", "value": {"column": "x"}},
     "missing key 'paper_value'"),
])
def test_validation_errors_name_the_claim_and_key(claim, message):
    with pytest.raises(C.ClaimError) as err:
        C.validate_claim(claim)
    assert "claim 't.claim'" in str(err.value) and message in str(err.value)


def test_missing_column_and_unknown_table_are_errors(acc):
    claim = _claim(rule="greater", a={"column": "accuracy_top5", "agg": "mean"}, b=_sel("ST", agg="mean"))
    with pytest.raises(C.ClaimError, match=r"claim 't.claim', key 'a': column 'accuracy_top5' not in table acc"):
        _run(claim, acc)
    where = _claim(rule="greater", a=_sel("ST", agg="mean"), b=_sel("ST", agg="mean"), where={"arch": "r18"})
    with pytest.raises(C.ClaimError, match=r"column 'arch' \(in 'where'\) not in table acc"):
        _run(where, acc)
    typo = _claim(table="acc_typo", rule="all_true", value={"column": "converged"})
    with pytest.raises(C.ClaimError, match="table 'acc_typo' is not one the workflow writes"):
        _run(typo, acc, known=["acc", "prime_{sweep}"])
    assert _run(_claim(table="prime_depth", rule="all_true", value={"column": "c"}), acc,
                known=["acc", "prime_{sweep}"]).holds == "n/a"


def test_several_rows_without_agg_is_an_error(acc):
    with pytest.raises(C.ClaimError, match="3 rows per group; narrow 'where' or give 'agg'"):
        _run(_claim(rule="greater", a=_sel("AT-FT"), b=_sel("ST")), acc)


def test_load_claims_rejects_duplicates_and_bad_files(tmp_path):
    claim = _claim(rule="all_true", value={"column": "x"})
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [claim, claim]}))
    with pytest.raises(C.ClaimError, match="claim id 't.claim' appears twice"):
        C.load_claims(path)
    path.write_text("claims: {a: 1}\n")
    with pytest.raises(C.ClaimError, match="expected a mapping with a 'claims' list"):
        C.load_claims(path)
    # a second `margin:` would silently win (YAML keeps the last), turning a failure into a pass
    path.write_text("claims:\n  - id: t.x\n    margin: 1\n    margin: -50\n")
    with pytest.raises(C.ClaimError, match=r"claims.yaml:4: claims\[0\].margin is given twice"):
        C.load_claims(path)


def test_known_ref_and_inputs(tmp_path, root):
    known = ["filling_per_container", "prime_{sweep}", "forgetting_S1"]
    assert C.known_ref("prime_depth", known) and C.known_ref("forgetting_{split}", known)
    assert C.known_ref("forgetting_S3", known) and not C.known_ref("forgeting_{split}", known)
    assert C.known_ref("forgetting_{split}", ["forgetting_SynthSource"])  # SynthSource is a split too
    targets = ["results/tables/filling_per_container.csv", "results/tables/filling_per_container.md",
               "results/tables/claims.csv", "results/tables/forgetting_S1.csv", "results/figures/x.png",
               "results/tables/cross_dataset.csv"]
    inputs = C.claims_inputs(root / "workflow" / "claims.yaml", targets)
    # a table no rule writes is refused while Snakemake plans, before any output is deleted
    with pytest.raises(C.ClaimError, match=r"table\(s\) \[.*'filling_per_container'.*\] are not ones the workflow"):
        C.claims_inputs(root / "workflow" / "claims.yaml", targets, known=["cross_dataset"])
    assert inputs == ["results/tables/cross_dataset.csv", "results/tables/filling_per_container.csv",
                      "results/tables/forgetting_S1.csv"]
    assert C.table_patterns(["results/tables/prime_{sweep,depth|beta}.csv", "results/tables/a.md"]) == [
        "prime_{sweep}"]


# --------------------------------------------------------------------------- the real claims file


def test_repository_claims_file_is_valid_and_covers_the_issue(root):
    claims = C.load_claims(root / "workflow" / "claims.yaml")
    ids = {c["id"] for c in claims}
    assert {"icip.transfer_beats_st", "icip.atft_ge_stft", "icip.atft_best", "icip.frozen_L1", "icip.red_cup",
            "thesis.cross_flip_chance", "thesis.lowpass_keeps_accuracy", "thesis.dct_margins",
            "thesis.t1_margins", "thesis.t2_switch", "thesis.forgetting", "thesis.pgd_energy_low",
            "thesis.daprime_ge_st", "thesis.lp_corruptions", "run.study_converged",
            "run.topgap_converged", "run.mtlat_converged"} <= ids


def _write_eval(root: Path, split: str, strategy: str, correct: dict[str, list[bool]], train_acc: float) -> str:
    """A clean evaluation (predictions.parquet + summary.json) as rule ``evaluate`` writes it."""
    out = root / split / strategy / "seed0" / "clean"
    out.mkdir(parents=True)
    rows = [{"index": i, "container": c, "label": 0, "prediction": 0 if ok else 1, "correct": ok}
            for c, flags in correct.items() for i, ok in enumerate(flags)]
    pd.DataFrame(rows).to_parquet(out / "predictions.parquet")
    summary = {"strategy": strategy, "model": strategy, "split": split, "seed": 0,
               "accuracy": float(np.mean([r["correct"] for r in rows])), "train_accuracy": train_acc,
               "val_accuracy": 0.8, **convergence({"train_accuracy": train_acc}, {"converged_min_acc": 0.9})}
    (out / "summary.json").write_text(json.dumps(summary))
    return str(out / "predictions.parquet")


def test_claims_table_from_real_table_writers(tmp_path, root):
    """Tables written by the real writers, the repository's claims file, the CLI summary."""
    evals, tables = tmp_path / "eval", tmp_path / "tables"
    tables.mkdir()
    # S3: ST fails the red cup, transfer gets it; AT-FT best; ST-FT's train accuracy under the threshold.
    share = {"ST": (0.0, 0.5), "ST-FT": (0.95, 0.7), "AT-FT": (1.0, 0.8), "ST-AFT": (0.92, 0.6),
             "AT-AFT": (0.93, 0.6), "AT": (0.1, 0.5)}
    preds = []
    for strategy, (red, other) in share.items():
        correct = {"red_cup": [i < 20 * red for i in range(20)], "beer_cup": [i < 20 * other for i in range(20)]}
        preds.append(_write_eval(evals, "S3", strategy, correct, 0.85 if strategy == "ST-FT" else 0.97))
    write_table(filling_per_container(preds), tables / "filling_per_container", 2)
    frozen = [_write_eval(evals, "S3", f"ST-FT_L{L}", {"beer_cup": [i < 20 - 2 * L for i in range(20)]}, 0.95)
              for L in range(5)]
    write_table(frozen_layers_table(frozen), tables / "sensitivity_frozen_layers", 2)
    # NeurIPS 2020: the robust source's linear probe beats the standard one's; full fine-tuning loses 2 pp
    # of 20 correct; ST-FT_L4 12, ST-FT_L0 20 (above): the best robust probe (eps 1) beats it
    robust = {"AT-FT_eps0.5_L4": 11, "AT-FT_eps1_L4": 14, "AT-FT_eps0.5_L0": 18, "AT-FT_eps1_L0": 16}
    ends = [frozen[4], frozen[0]] + [_write_eval(evals, "S3", m, {"beer_cup": [i < n for i in range(20)]}, 0.95)
                                     for m, n in robust.items()]
    selection = tmp_path / "models/S3/selection/eps_source.json"
    selection.parent.mkdir(parents=True)
    selection.write_text(json.dumps({"selected_eps": 0.5}))
    chosen = {split: r["selected_eps"] for split, r in read_selections([str(selection)]).items()}
    fixed = fixed_vs_full(ends, chosen, {"ST-FT": 0.0, "AT-FT": "selected"})
    assert fixed[["source", "strategy", "eps_s", "selected"]].values.tolist() == [
        ["standard", "ST-FT", 0.0, False], ["robust", "AT-FT", 0.5, True], ["robust", "AT-FT", 1.0, False]]
    assert np.allclose(fixed["fixed_feature_L4"], [60, 55, 70]) and np.allclose(fixed["full_network_L0"], [100, 90, 80])
    assert fixed["converged"].all()  # run.sensitivity_converged reads it
    transfer_bars(fixed, str(tmp_path / "transfer.png"))  # NeurIPS Figs. 2-3: a bar per source and setting
    assert (tmp_path / "transfer.png").stat().st_size > 1000
    write_table(fixed, tables / "transfer_fixed_vs_full", 2)

    out = tmp_path / "claims"
    table = C.write_claims(root / "workflow" / "claims.yaml", sorted(map(str, tables.glob("*.csv"))), out,
                           known=["filling_per_container", "sensitivity_frozen_layers", "margins", "cross_dataset",
                                  "prime_per_container", "prime_{sweep}", "preprocessing_baselines",
                                  "sensitivity_eps_source", "synthetic_margins", "synthetic_transition",
                                  "topgap_robustness", "topgap_sparsity_iou", "topgap_ablation",
                                  "forgetting_S1", "adversarial_energy_S1",
                                  "mtlat_robustness", "mtlat_labeling", "transfer_fixed_vs_full"])
    holds = dict(zip(table["claim"], table["holds"], strict=True))
    assert holds["neurips.fixed_feature_robust"] == "yes" and holds["neurips.full_network_robust"] == "no"
    assert holds["icip.transfer_beats_st"] == "yes" and holds["icip.atft_ge_stft"] == "yes"
    assert holds["icip.atft_best"] == "yes" and holds["icip.red_cup"] == "yes"
    assert holds["icip.frozen_L1"] == "no"  # L=0 is 10 pp above L=1
    assert holds["run.study_converged"] == "no"
    assert "S3,ST-FT" in table.set_index("claim").loc["run.study_converged", "our_value"]
    assert holds["thesis.forgetting"] == "n/a" and holds["thesis.t2_switch"] == "n/a"
    assert list(table.columns) == ["paper", "claim", "statement", "paper_value", "our_value", "rule", "holds",
                                   "per_seed", "note"]
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[2].count("|") == md[3].count("|") == 10 and all(line.count("|") == 10 for line in md[2:])
    assert "\n".join(md).count("| n/a ") == int((table["holds"] == "n/a").sum())
    lines = C.summary_lines(out.with_suffix(".csv"))
    assert lines[0].startswith(f"Claims: {sum(v == 'yes' for v in holds.values())} of {len(holds)} hold")
    assert any("[no] icip.frozen_L1" in line for line in lines)
    assert not any("icip.red_cup" in line for line in lines)


def test_convergence_flag_threshold_and_unknown():
    assert convergence({"train_accuracy": 0.9}, {"converged_min_acc": 0.9}) == {
        "final_train_accuracy": 0.9, "converged_min_acc": 0.9, "converged": True}
    assert convergence({"train_accuracy": 0.552}, {"converged_min_acc": 0.9})["converged"] is False
    assert convergence({"train_accuracy": 0.552}, {"converged_min_acc": 0.5})["converged"] is True
    unknown = convergence({}, {})
    assert unknown["converged"] is False and unknown["final_train_accuracy"] is None
    assert convergence({"train_accuracy": float("nan")}, {})["converged"] is False


def test_training_sidecar_records_convergence(tmp_path, tiny_ccm):
    """A real (one-epoch) training run writes the flag its final train accuracy implies."""
    from fillrobust.data.splits import make_split
    from fillrobust.data.store import read_dataset
    from fillrobust.io.checkpoint import read_sidecar
    from fillrobust.train.run import run_training

    crops = tiny_ccm / "crops"
    split = make_split(read_dataset(crops).manifest, ["red_cup", "beer_cup", "green_glass", "wine_glass"],
                       ["champagne_flute"], 0.25, 0, "S1")
    split.to_parquet(tmp_path / "S1.parquet", index=False)
    params = {"init": "scratch", "lr": 0.05, "epochs": 1, "batch_size": 8, "momentum": 0.9,
              "weight_decay": 5e-4, "balanced_sampling": True, "channels_last": True, "converged_min_acc": 0.99}
    run_training(str(crops), str(tmp_path / "S1.parquet"), "ST", params, 0, str(tmp_path / "m.safetensors"),
                 "cpu", 1, "S1")
    info = read_sidecar(tmp_path / "m.safetensors")
    acc = info["final_metrics"]["train_accuracy"]
    assert info["final_train_accuracy"] == acc and info["converged_min_acc"] == 0.99
    assert info["converged"] is (acc >= 0.99)


def check_run_claims(ws: Path) -> pd.DataFrame:
    """What the pipeline's own claims table must show on a finished tiny workspace."""
    claims = C.load_claims(ws / "workflow" / "claims.yaml")
    table = pd.read_csv(ws / "results" / "tables" / "claims.csv", keep_default_na=False).set_index("claim")
    assert list(table.index) == [c["id"] for c in claims]  # every claim has its row, in order
    assert set(table["holds"]) <= {"yes", "no", "n/a"}
    na = table[table["holds"] == "n/a"]
    assert na["note"].str.startswith("not available").all() and (na["our_value"] == "").all()
    assert table.loc["thesis.lowpass_keeps_accuracy", "holds"] == "n/a"  # tiny.yaml trains no low-pass model
    for claim in ("icip.transfer_beats_st", "icip.atft_best", "thesis.daprime_ge_st", "run.study_converged",
                  "thesis.forgetting"):  # forgetting: its table is forgetting_SynthSource
        assert table.loc[claim, "holds"] in ("yes", "no"), (claim, table.loc[claim, "note"])
    lines = C.summary_lines(ws / "results" / "tables" / "claims.csv")
    assert len(lines) == 1 + int((table["holds"] != "yes").sum())
    return table


@pytest.mark.slow
def test_claims_table_of_the_tiny_run(tiny_run):
    """The claims rule of the real DAG: built from the run's own tables, every claim present."""
    check_run_claims(tiny_run)


def test_forgetting_claim_does_not_hold_on_a_constant_predictor(root):
    """The shipped thesis.forgetting claim: a model that answers one class for every HP image
    (a different one per phase, as measured on SynthCCM) drops and "recovers" by the other two
    checks alone; the majority-class check stops it, and a model that learned HP passes."""
    claim = next(c for c in C.load_claims(root / "workflow" / "claims.yaml") if c["id"] == "thesis.forgetting")
    phases = ["LP+HP", "LP only", "LP+HP again"]

    def table(hp: list[float]) -> dict[str, pd.DataFrame]:
        return {"forgetting_S1": pd.DataFrame({"trained_on": phases, "hp_accuracy": hp, "hp_majority": 38.07})}

    assert _run(claim, table([37.87, 24.07, 37.87]), known=["forgetting_S1"]).holds == "no"
    assert _run(claim, table([57.3, 10.0, 59.1]), known=["forgetting_S1"]).holds == "yes"
    # on SynthSource (the default's frequency.forgetting.splits) the same rule reads forgetting_SynthSource
    source = {"forgetting_SynthSource": table([22.4, 3.9, 27.9])["forgetting_S1"].assign(hp_majority=6.5)}
    result = _run(claim, source, known=["forgetting_SynthSource"])
    assert result.holds == "yes" and "SynthSource: 22.40 vs 6.50" in result.our_value


def test_a_hand_edited_cell_names_the_claim_table_and_column(acc):
    edited = {name: frame.astype({"accuracy": object}) for name, frame in acc.items()}
    first = next(iter(edited))
    edited[first].loc[edited[first].index[0], "accuracy"] = "8o.5"
    claim = _claim(rule="greater", a=_sel("AT-FT", agg="mean"), b=_sel("ST", agg="mean"))
    with pytest.raises(C.ClaimError, match=rf"\(table {first}\): column 'accuracy' holds a value that is not a number"):
        _run(claim, edited)


def test_fixed_vs_full_without_a_selection_is_not_robust(tmp_path):
    """A 'selected' source eps with no selection file to read is unknown, not robust: it
    must not enter the NeurIPS claims' best robust model."""
    paths = [_write_eval(tmp_path, "S1", m, {"beer_cup": [True, False]}, 0.95) for m in ("AT-FT_L4", "AT-FT_L0")]
    fixed = fixed_vs_full(paths, {}, {"AT-FT": "selected"})
    assert fixed["source"].tolist() == ["unknown"] and fixed["eps_s"].isna().all()
