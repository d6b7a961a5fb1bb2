"""The shared bar chart (report/figures.py): readable ids, no room for groups without values."""

from __future__ import annotations

import math

import pandas as pd

from fillrobust.report import figures  # selects the Agg backend before pyplot loads
from fillrobust.report.figures import plt


def _labels(names: list[str]) -> list[tuple[str, float]]:
    fig, ax = plt.subplots()
    figures._tick_labels(ax, list(range(len(names))), names)
    out = [(t.get_text(), t.get_rotation()) for t in ax.get_xticklabels()]
    plt.close(fig)
    return out


def test_few_short_ids_wrap_and_long_or_many_ids_slant():
    assert _labels(["beer_cup", "all"]) == [("beer\ncup", 0.0), ("all", 0.0)]
    assert _labels(["k0.05", "fpn1-l10-top1"]) == [("k0.05", 35.0), ("fpn1-l10-top1", 35.0)]
    many = [f"pgd_{i}" for i in range(7)]
    assert [text for text, _ in _labels(many)] == [f"pgd {i}" for i in range(7)]


def test_groups_without_a_value_take_no_room(monkeypatch, tmp_path):
    shown = {}

    def keep(fig, path):
        shown["ticks"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        plt.close(fig)

    monkeypatch.setattr(figures, "save_png", keep)
    table = pd.DataFrame({"split": ["S1"] * 4, "perturbation": ["fgsm", "fgsm", "deepfool", "cw"],
                          "strategy": ["ST", "AT", "ST", "ST"], "R": [0.1, 0.2, 0.0, math.nan]})
    figures.grouped_bars(table, "split", "perturbation", hue="strategy", value="R", path=tmp_path / "f.png",
                         ylabel="R")
    assert shown["ticks"] == ["fgsm", "deepfool"]  # a true 0 is drawn, a blank is not


def test_paper_marks_zero_labels_and_colours(monkeypatch, tmp_path):
    shown = {}

    def keep(fig, path):
        ax = fig.axes[0]
        shown["texts"] = [t.get_text() for t in ax.texts]
        shown["marks"] = [list(c.get_offsets()[:, 1]) for c in ax.collections]
        shown["legend"] = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
        shown["colours"] = {p.get_label(): p.patches[0].get_facecolor() for p in ax.containers}
        shown["xlabel"] = ax.get_xlabel()
        plt.close(fig)

    monkeypatch.setattr(figures, "save_png", keep)
    table = pd.DataFrame({"split": ["S3"] * 4, "container": ["all", "all", "red_cup", "red_cup"],
                          "strategy": ["ST", "AT-FT", "ST", "AT-FT"], "accuracy": [51.0, 55.0, 0.0, 6.0],
                          "paper": [math.nan, 88.23, 0.005, 99.5]})
    figures.grouped_bars(table, "split", "container", hue="strategy", value="accuracy", path=tmp_path / "f.png",
                         paper="paper", xlabel="test container")
    assert shown["texts"] == ["0"]  # ST's 0 % on the red cup reads as 0, not as a missing bar
    assert [m for marks in shown["marks"] for m in marks] == [0.005, 88.23, 99.5]
    assert "paper" in shown["legend"] and shown["xlabel"] == "test container"
    assert shown["colours"]["ST"] != shown["colours"]["AT-FT"]
    # M-TLAT's models never take an ICIP strategy's colour
    from fillrobust.report.style import strategy_colour
    icip = {strategy_colour(s) for s in ("ST", "AT", "ST-FT", "ST-AFT", "AT-FT", "AT-AFT")}
    assert not icip & {strategy_colour(s) for s in ("STANDARD", "MIXUP", "TLAT", "IAT", "M-TLAT")}


def test_a_group_of_zeros_is_labelled_once_and_one_hue_over_strategies_keeps_their_colours(monkeypatch, tmp_path):
    shown = {}

    def keep(fig, path):
        ax = fig.axes[0]
        shown["texts"] = [t.get_text() for t in ax.texts]
        shown["colours"] = [p.get_facecolor() for p in ax.patches]
        plt.close(fig)

    monkeypatch.setattr(figures, "save_png", keep)
    table = pd.DataFrame({"split": ["S1"] * 4, "perturbation": ["deepfool", "deepfool", "fgsm", "fgsm"],
                          "strategy": ["ST", "AT", "ST", "AT"], "R": [0.0, 0.0, 0.0, 0.2]})
    figures.grouped_bars(table, "split", "perturbation", hue="strategy", value="R", path=tmp_path / "f.png",
                         ylabel="R")
    assert shown["texts"] == ["all 0", "0"]  # not "00": one label for deepfool, one for ST's fgsm
    labels = pd.DataFrame({"split": ["S1"] * 2, "strategy": ["STANDARD", "TLAT"], "source": ["ours"] * 2,
                           "accuracy": [61.0, 62.0]})
    figures.grouped_bars(labels, "split", "strategy", hue="source", value="accuracy", path=tmp_path / "g.png")
    assert shown["colours"][0] != shown["colours"][1]  # each strategy in its own colour
