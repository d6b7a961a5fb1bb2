"""The results report on a small real results tree: sections, claims links, stale files,
differences to the papers, deviations, wall times, convergence, metrics and plot data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from fillrobust.report import runinfo
from fillrobust.report.figures import save_png
from fillrobust.report.html import (
    SECTIONS,
    section_of,
    with_differences,
    write_report,
    write_results_report,
)
from fillrobust.report.metrics import write_metrics
from fillrobust.report.style import (
    STRATEGY_COLOURS,
    base_strategy,
    order_strategies,
    strategy_colour,
)
from fillrobust.report.tables import write_table

STRATEGIES = ["ST", "AT", "ST-FT", "ST-AFT", "AT-FT", "AT-AFT"]


def _png(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    save_png(fig, path)


@pytest.fixture
def results(tmp_path) -> Path:
    """results/{tables,figures} of a two-split run, with a claims table, one stale
    table, models with sidecars, benchmark files and a paper profile."""
    tables, figures = tmp_path / "results/tables", tmp_path / "results/figures"
    rows = [{"split": s, "container": c, "strategy": g, "seed": "0", "n": 4,
             "accuracy": 10.0 * i + (5 if s == "S2" else 0) + (20 if c == "all" else 0),
             "paper": 78.34 if (c == "all" and g == "ST-FT" and s == "S1") else None}
            for s in ("S1", "S2") for c in ("all", "red_cup") for i, g in enumerate(reversed(STRATEGIES))]
    write_table(pd.DataFrame(rows), tables / "filling_per_container", 2, caption="Accuracy per container")
    frozen = pd.DataFrame({"split": ["S1", "S1", "S2", "S2"], "L": [0, 1, 0, 1], "seed": ["0"] * 4,
                           "accuracy": [30.0, 40.0, 20.0, 25.0]})
    write_table(frozen, tables / "sensitivity_frozen_layers", 2)
    scores = pd.DataFrame({"split": ["S1"] * 4, "kind": ["clean", "attack", "corruption", "corruption"],
                           "perturbation": ["clean", "fgsm", "fog", "mean ImageNet-C"],
                           "ST": [50.0, 0.5, 0.9, 0.8], "AT": [40.0, 0.75, None, 0.7]})
    write_table(scores, tables / "robustness_scores", 2)
    severity = pd.DataFrame({"split": ["S1", "S1"], "strategy": ["ST", "AT"], "corruption": ["mean ImageNet-C", "mean ImageNet-C"],
                             "CE": [60.0, 66.0], "CE_norm": [100.0, 110.0]})
    write_table(severity, tables / "corruption_severity", 2)
    write_table(pd.DataFrame({"x": [1]}), tables / "mtlat_scores", 2)
    write_table(pd.DataFrame({"x": [1]}), tables / "old_leftover", 2)
    (tables / "mtlat_empty.csv").write_text("\n")  # a table with no columns at all is still shown
    claims = pd.DataFrame([
        {"paper": "ICIP 2021", "claim": "icip.a", "statement": "ST-FT beats ST", "paper_value": "78.34",
         "our_value": "40 vs 30", "rule": "a > b", "holds": "yes", "note": ""},
        {"paper": "Thesis", "claim": "thesis.b", "statement": "needs a table", "paper_value": "1",
         "our_value": "", "rule": "a > b", "holds": "n/a", "note": "not available"}])
    write_table(claims, tables / "claims", 2)
    claims_file = tmp_path / "claims.yaml"
    claims_file.write_text(yaml.safe_dump({"claims": [
        {"id": "icip.a", "paper": "ICIP 2021", "statement": "s", "paper_value": "v", "table": "filling_per_container",
         "rule": "greater", "a": {"column": "accuracy", "where": {"strategy": "ST-FT"}, "agg": "mean"},
         "b": {"column": "accuracy", "where": {"strategy": "ST"}, "agg": "mean"}},
        {"id": "thesis.b", "paper": "Thesis", "statement": "s", "paper_value": "v", "table": "forgetting_{split}",
         "rule": "greater", "a": {"column": "x", "agg": "mean"}, "b": {"column": "x", "agg": "mean"}}]}))
    for name in ("filling_per_container", "sensitivity_frozen_layers", "ccm_sheets/red_cup_000",
                 "ccm_sheets/red_cup_001", "unplaced"):
        _png(figures / f"{name}.png")
    for model, (acc, ok) in {"S1/ST/seed0": (0.95, True), "S1/AT/seed0": (0.4, False)}.items():
        (tmp_path / "models" / model).mkdir(parents=True)
        (tmp_path / "models" / model / "model.json").write_text(json.dumps({
            "strategy": model.split("/")[1], "final_train_accuracy": acc, "converged_min_acc": 0.9,
            "converged": ok, "git_revision": "abc123", "machine": {"cpu": "AMD EPYC"}}))
    (tmp_path / "models/S1/selection").mkdir(parents=True)
    (tmp_path / "models/S1/selection/model.json").write_text("{}")  # no training record: left out
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, secs in {"train/S1/ST/seed0.tsv": 12.5, "train/S1/AT/seed0.tsv": 30.0, "tables/claims.tsv": 0.5}.items():
        path = tmp_path / "logs/bench" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + f"{secs}\t0:00:{int(secs):02d}\t100.0\t0\t0\t0\t0\t0\t0\t{secs / 2}\n")
    (tmp_path / "paper.yaml").write_text("data: {crop: {size: 224}}\ntrain: {defaults: {epochs: 30}}\n"
                                         "threads: 8\n")
    return tmp_path


CONFIG = {"data": {"source": "synth", "crop": {"size": 32}}, "train": {"defaults": {"epochs": 2}},
          "threads": 1, "tables": {"decimals": 2}}


def _build(root: Path, inputs: list[str] | None = None) -> str:
    out = write_report(root / "results/report/index.html", root / "results/tables", root / "results/figures",
                       CONFIG, root / "claims.yaml", root / "paper.yaml", root / "models", root / "logs/bench",
                       inputs)
    return out.read_text()


def test_strategies_have_one_order_and_colour():
    assert order_strategies(["AT-AFT", "X", "ST", "AT-FT_eps0.5", "ST-FT_L1", "AT"]) == [
        "ST", "AT", "ST-FT_L1", "AT-FT_eps0.5", "AT-AFT", "X"]
    assert base_strategy("AT-DA-PRIME_m1") == "AT-DA-PRIME" and base_strategy("AT-FT") == "AT-FT"
    assert strategy_colour("ST-FT_L1") == STRATEGY_COLOURS["ST-FT"] and strategy_colour("none") is None
    assert len(set(STRATEGY_COLOURS.values())) == len(STRATEGY_COLOURS)


def test_every_table_and_figure_is_in_its_papers_section(results):
    page = _build(results)
    files = set(re.findall(r'data-file="([^"]+)"', page))
    assert files == {"tables/filling_per_container.csv", "tables/sensitivity_frozen_layers.csv",
                     "tables/robustness_scores.csv", "tables/corruption_severity.csv", "tables/mtlat_scores.csv",
                     "tables/old_leftover.csv", "tables/mtlat_empty.csv", "tables/claims.csv", "figures/filling_per_container.png",
                     "figures/sensitivity_frozen_layers.png", "figures/ccm_sheets/red_cup_000.png",
                     "figures/ccm_sheets/red_cup_001.png", "figures/unplaced.png"}
    order = [page.index(f'id="{anchor}"') for anchor in
             ("claims", "paper-icip", "table-sensitivity_frozen_layers",  # ICIP Fig. 5 before Fig. 6
              "table-filling_per_container", "figure-filling_per_container",
              "paper-thesis", "paper-mtlat", "paper-data",
              "figure-ccm_sheets--red_cup_000", "paper-other", "table-old_leftover", "deviations", "provenance")]
    assert order == sorted(order)
    assert "paper-topgap" not in page  # no Top-GAP table yet: no section
    assert section_of("topgap_ablation").paper == "Top-GAP" and section_of("prime_sheets/color").key == "thesis-prime"
    # the thesis in its own order: ch. 4 (and App. A), ch. 5, App. B
    keys = [s.key for s in SECTIONS]
    assert keys.index("thesis-frequency") < keys.index("thesis-prime") < keys.index("thesis-benchmark")


def test_the_scale_of_the_run_comes_before_any_number():
    from fillrobust.report.html import RunFiles, summary_block

    files = RunFiles(Path("t"), Path("f"), [], [], None)
    page = summary_block(files, {"data": {"source": "synth", "crop": {"size": 32}}, "source": {"kind": "synth"},
                                 "train": {"seeds": [0]}})
    assert "a CPU-scale stand-in: synthetic crops (SynthCCM) instead of CCM" in page and "1 seed(s)" in page
    paper = summary_block(files, {"data": {"source": "ccm", "crop": {"size": 224}}, "source": {"kind": "import"},
                                  "train": {"seeds": [0, 1, 2]}})
    assert "the papers&#x27; data and ImageNet source models, 224-px crops, 3 seed(s)" in paper
    trials = summary_block(files, {"data": {}, "source": {}, "train": {"seeds": [0]},
                                   "sensitivity": {"fixed_vs_full": {"seeds": [0, 1, 2]}}})
    assert "1 (0); fixed-vs-full transfer models also 1, 2" in trials  # the NeurIPS models' three trials


def test_page_is_self_contained(results):
    page = _build(results)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    embedded = {alt: mime for mime, alt in re.findall(r'<img src="data:(image/\w+);base64,[^"]+" alt="([^"]+)"', page)}
    assert len(re.findall(r'<img src="', page)) == 4  # the container's second sheet is linked, not embedded
    assert embedded == {"filling_per_container": "image/png", "sensitivity_frozen_layers": "image/png",
                      "unplaced": "image/png", "ccm_sheets/red_cup_000": "image/jpeg"}  # the photo as JPEG
    assert '<a href="../figures/ccm_sheets/red_cup_001.png"' in page
    assert '<a href="../tables/filling_per_container.md">md</a>' in page


def test_claims_first_with_links_to_their_evidence(results):
    page = _build(results)
    claims = page[page.index('id="claims-first"'):page.index('id="paper-icip"')]
    assert '<tr id="claim-icip.a">' in claims and '<a href="#table-filling_per_container">' in claims
    assert '<td class="yes">yes</td>' in claims and '<td class="na">n/a</td>' in claims
    assert "1 of 2 claims hold" in page


def test_stale_files_are_marked_from_the_rules_inputs(results):
    inputs = ["results/tables/filling_per_container.csv", "results/figures/ccm_sheets"]
    page = _build(results, [str(results / p) for p in inputs])
    stale = re.findall(r'<h4>(\w+) <span class="stale">', page)
    assert "filling_per_container" not in stale and "old_leftover" in stale
    # folder input: its figures are current, embedded or linked
    assert "figures/ccm_sheets/red_cup_000.png (embedded as JPEG; the file is PNG)</figcaption>" in page
    assert 'red_cup_001</a> <span class="stale">' not in page
    assert "figures/unplaced.png <span class=\"stale\">" in page
    assert 'class="stale"' not in _build(results)  # no inputs given: everything is current


def test_paper_numbers_sit_beside_ours_with_the_difference():
    frame = pd.DataFrame({"accuracy": [40.0, 50.0], "paper": [78.34, None],
                          "original": [36.0, 30.0], "paper_original": [90.0, 9.0], "paper_grayscale": [1.0, 2.0]})
    out = with_differences(frame)
    assert list(out.columns) == ["accuracy", "paper", "Δ accuracy − paper", "original", "paper_original",
                                 "Δ original − paper_original", "paper_grayscale"]
    assert out["Δ accuracy − paper"].iloc[0] == pytest.approx(-38.34) and pd.isna(out["Δ accuracy − paper"].iloc[1])


def test_deviations_come_from_the_params_used(results):
    table = runinfo.deviations(CONFIG, results / "paper.yaml")
    rows = {r.key: (r.kind, r._3, r.paper) for r in table.itertuples()}
    assert rows == {"data.crop.size": ("image size", "32", "224"), "train.defaults.epochs": ("epochs", "2", "30"),
                    "threads": ("inputs / machine", "1", "8")}
    assert list(table["kind"]) == ["image size", "epochs", "inputs / machine"]
    paper_run = runinfo.deviations({**CONFIG, "data": {"source": "synth", "crop": {"size": 224}},
                                    "train": {"defaults": {"epochs": 30}}, "threads": 8}, results / "paper.yaml")
    assert paper_run.empty
    (results / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        runinfo.deviations(CONFIG, results / "bad.yaml")


def test_wall_time_per_rule_family_and_convergence(results):
    times = runinfo.wall_times(results / "logs/bench").set_index("family")
    assert times.loc["train", "jobs"] == 2 and times.loc["train", "wall_s"] == 42.5
    assert times.loc["train", "longest_s"] == 30.0 and times.loc["total", "wall_s"] == 43.0
    models = runinfo.convergence(results / "models")
    assert models.set_index("model")["converged"].to_dict() == {"S1/AT/seed0": False, "S1/ST/seed0": True}
    assert models.set_index("model").loc["S1/AT/seed0", ["train_accuracy", "threshold"]].tolist() == [40.0, 90.0]
    assert set(models["cpu"]) == {"AMD EPYC"}  # which CPU trained each model (same bytes per kind of CPU)
    page = _build(results)
    assert "<b>1 of 2</b>" in page and "Not converged: S1/AT/seed0" in page
    assert re.search(r"params hash</td><td>[0-9a-f]{16}<", page)


def test_metrics_and_plot_data(results):
    write_metrics(results / "results/tables", results / "metrics", results / "plots")
    headline = json.loads((results / "metrics/headline.json").read_text())
    assert headline["icip_accuracy"]["S1"]["ST-FT"] == 50.0 and headline["icip_accuracy"]["S2"]["AT-AFT"] == 25.0
    assert headline["icip_accuracy"]["mean"]["AT-AFT"] == 22.5
    assert headline["claims"] == {"hold": 1, "fail": 0, "n/a": 1, "total": 2}
    assert "prime_accuracy" not in headline  # its table is not in this run
    robust = json.loads((results / "metrics/robustness.json").read_text())
    assert robust["S1"]["ST"] == {"clean": 50.0, "R_fgsm": 0.5, "R_mean_ImageNet-C": 0.8, "mCE": 100.0,
                                  "mean_CE": 60.0}  # single corruptions stay in the tables
    assert "R_fog" not in robust["S1"]["AT"] and robust["S1"]["AT"]["mCE"] == 110.0
    frozen = pd.read_csv(results / "plots/sensitivity_frozen_layers.csv")
    assert list(frozen.columns) == ["L", "S1", "S2"] and frozen["S2"].tolist() == [20.0, 25.0]
    bars = pd.read_csv(results / "plots/filling_per_container.csv")
    assert bars["bar"].tolist()[:2] == ["S1 red_cup ST", "S1 red_cup AT"] and len(bars) == 12
    assert (results / "plots/sensitivity_eps_source.csv").read_text() == "\n"  # absent table: empty, still written
    # the study's splits each get a column, blank where the sweep did not run (dvc.yaml names them)
    write_metrics(results / "results/tables", results / "metrics", results / "plots", splits=["S1", "S2", "S3"])
    frozen = pd.read_csv(results / "plots/sensitivity_frozen_layers.csv")
    assert list(frozen.columns) == ["L", "S1", "S2", "S3"] and frozen["S3"].isna().all()
    assert (results / "plots/sensitivity_frozen_layers.csv").read_text().splitlines()[1] == "0,30.0,20.0,NaN"


def test_one_call_writes_metrics_and_page_deterministically(results):
    args = dict(params=CONFIG, out=results / "r/index.html", tables=results / "results/tables",
                figures=results / "results/figures", metrics=results / "m", plots=results / "p")
    written = write_results_report(**args)
    assert {p.name for p in written} == {"headline.json", "robustness.json", "sensitivity_frozen_layers.csv",
                                         "sensitivity_eps_source.csv", "filling_per_container.csv", "index.html"}
    first = {p: p.read_bytes() for p in written if p.suffix != ".html"}
    write_results_report(**args)
    assert {p: p.read_bytes() for p in first} == first  # metrics and plot data: same tables, same bytes
    assert "No paper profile given" in (results / "r/index.html").read_text()
    # the page links every metrics and plot file, relative to itself
    page = (results / "r/index.html").read_text()
    assert '<a href="../m/headline.json">m/headline.json</a>' in page
    assert '<a href="../p/filling_per_container.csv">p/filling_per_container.csv</a>' in page


def test_a_table_without_a_column_it_needs_is_named(results):
    """A hand-edited table gave a bare KeyError / AttributeError; now the file and column are
    named, and the metrics of a damaged run are not half written."""
    tables = results / "results/tables"
    filling = pd.read_csv(tables / "filling_per_container.csv")
    filling.drop(columns=["container"]).to_csv(tables / "filling_per_container.csv", index=False)
    with pytest.raises(ValueError, match=r"filling_per_container.csv: no column 'container'; expected the columns"):
        write_metrics(tables, results / "m", results / "p")
    assert not (results / "m").exists() and not (results / "p").exists()
    claims = pd.read_csv(tables / "claims.csv")
    claims.drop(columns=["holds"]).to_csv(tables / "claims.csv", index=False)
    with pytest.raises(ValueError, match=r"claims.csv: no column 'holds'; expected the columns"):
        _build(results)
