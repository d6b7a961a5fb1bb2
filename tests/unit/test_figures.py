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
