"""Table writers: a real 0 prints as 0, only missing values are blank."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fillrobust.report.tables import filling_per_container, overall_rows, percent, write_table


def _model(tmp_path, name: str, summary: dict) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    pred = pd.DataFrame({"container": ["a", "a", "b"], "correct": [False, False, False]})
    pred.to_parquet(folder / "predictions.parquet")
    return str(folder / "predictions.parquet")


def test_percent_keeps_zero_and_blanks_only_missing():
    assert percent(0.0) == 0.0 and percent(0.5) == 50.0
    assert np.isnan(percent(None))


def test_zero_accuracies_print_as_zero_not_blank(tmp_path):
    # The old `value or nan` turned a real train accuracy of 0.0 into a blank cell.
    paths = [
        _model(tmp_path, "zero", {"split": "S1", "strategy": "ST", "seed": 0, "accuracy": 0.0,
                                  "train_accuracy": 0.0, "val_accuracy": 0.0}),
        _model(tmp_path, "none", {"split": "S1", "strategy": "AT", "seed": 0, "accuracy": 0.0,
                                  "train_accuracy": 0.25, "val_accuracy": None}),
    ]
    overall = overall_rows(paths).set_index("model")
    assert overall.loc["ST", "train_accuracy"] == 0 and overall.loc["ST", "val_accuracy"] == 0
    assert np.isnan(overall.loc["AT", "val_accuracy"])
    table = filling_per_container(paths)
    write_table(table, tmp_path / "filling", 2)
    md = (tmp_path / "filling.md").read_text().splitlines()
    st_all = next(line for line in md if "| all " in line and "| ST " in line)
    cells = [c.strip() for c in st_all.strip("|").split("|")]
    header = [c.strip() for c in next(line for line in md if line.startswith("|")).strip("|").split("|")]
    # one seed, no stated paper number: those columns stay in the .csv, the reader's .md says so
    assert "accuracy_std" not in header and md[0] == "columns without a value left out: accuracy_std, paper, converged"
    row = dict(zip(header, cells, strict=True))
    assert row["accuracy"] == row["train_accuracy"] == row["val_accuracy"] == "0.00"
    at_all = next(line for line in md if "| all " in line and "| AT " in line)
    row = dict(zip(header, [c.strip() for c in at_all.strip("|").split("|")], strict=True))
    assert row["val_accuracy"] == "" and row["train_accuracy"] == "25.00"
    csv = pd.read_csv(tmp_path / "filling.csv", keep_default_na=False)
    st = csv[(csv["strategy"] == "ST") & (csv["container"] == "all")].iloc[0]
    assert str(st["train_accuracy"]) == "0.0" and str(st["val_accuracy"]) == "0.0"


def test_infinity_reads_as_text_in_md_and_tex_only(tmp_path):
    frame = pd.DataFrame({"eps": [0.5, 1.0], "exact_median_u2": [3.756, np.inf], "other": [np.nan, 2.0]})
    write_table(frame, tmp_path / "t", 2, inf_text="none")
    assert (tmp_path / "t.csv").read_text().splitlines()[2] == "1.0,inf,2.0"
    md = (tmp_path / "t.md").read_text()
    assert "| 3.76 " in md and "| none " in md and "inf" not in md
    assert "& none &" in (tmp_path / "t.tex").read_text()


def test_icip_whole_test_set_numbers_sit_beside_st_ft_and_at_ft():
    from fillrobust.report.reference import filling_reference

    assert [filling_reference(s, "all", "ST-FT") for s in ("S1", "S2", "S3")] == [78.34, 65.63, 82.32]
    assert [filling_reference(s, "all", "AT-FT") for s in ("S1", "S2", "S3")] == [80.97, 73.27, 88.23]
    assert filling_reference("S1", "all", "ST") is None  # the paper states no number for it


def test_tex_escapes_what_latex_would_misread(tmp_path):
    frame = pd.DataFrame({"train_accuracy": [99.5], "container": ["beer_cup"]})
    write_table(frame, tmp_path / "t", 2, caption="Accuracy (%) of eps_s & more")
    tex = (tmp_path / "t.tex").read_text()
    assert r"\caption{Accuracy (\%) of eps\_s \& more}" in tex
    assert r"train\_accuracy & container" in tex and r"beer\_cup" in tex


def test_containers_in_the_papers_order(tmp_path):
    """ICIP Fig. 6 shows S3's red cup, green glass, beer cup in that order (splits.membership),
    not by name; ``all`` first, containers the order does not name last."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"split": "S3", "strategy": "ST", "seed": 0}))
    pred = pd.DataFrame({"container": ["beer_cup", "green_glass", "red_cup", "extra"], "correct": [True] * 4})
    pred.to_parquet(folder / "predictions.parquet")
    path = [str(folder / "predictions.parquet")]
    ordered = filling_per_container(path, {"S3": ["red_cup", "green_glass", "beer_cup"]})
    assert ordered["container"].tolist() == ["all", "red_cup", "green_glass", "beer_cup", "extra"]
    assert filling_per_container(path)["container"].tolist() == ["all", "beer_cup", "extra", "green_glass", "red_cup"]
