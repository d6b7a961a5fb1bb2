"""Figures as PNG with fixed metadata, so the same data gives the same bytes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from fillrobust.data.store import atomic_write_bytes  # noqa: E402
from fillrobust.report.style import order_strategies, strategy_colour  # noqa: E402


def save_png(fig: plt.Figure, path: str | Path) -> None:
    """Save without timestamps or version strings, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def grouped_bars(table: pd.DataFrame, facet: str, x: str, hue: str, value: str, path: str | Path,
                 ylabel: str = "accuracy (%)", err: str | None = None) -> None:
    """One panel per ``facet`` value; bars of ``value`` by ``x``, one colour per ``hue``."""
    facets = sorted(table[facet].unique())
    fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets), 3.4), squeeze=False, sharey=True)
    hues = list(dict.fromkeys(table[hue]))
    # strategies in the papers' order and colours, the same in every figure (report/style.py)
    hues = order_strategies(hues) if hue == "strategy" else hues
    for ax, name in zip(axes[0], facets, strict=True):
        part = table[table[facet] == name]
        xs = list(dict.fromkeys(part[x]))
        width = 0.8 / max(len(hues), 1)
        for j, h in enumerate(hues):
            sub = part[part[hue] == h].set_index(x).reindex(xs)
            yerr = sub[err].fillna(0).to_numpy() if err and err in sub else None
            ax.bar([i + j * width for i in range(len(xs))], sub[value].to_numpy(), width, label=h, yerr=yerr,
                   color=strategy_colour(h) if hue == "strategy" else None)
        ax.set_xticks([i + width * (len(hues) - 1) / 2 for i in range(len(xs))])
        labels = [str(s).replace("_", "\n") for s in xs]
        # long ids (Top-GAP's ablation members) would run into each other: slant them
        slant = max((len(line) for lab in labels for line in lab.split("\n")), default=0) > 10
        ax.set_xticklabels(labels, fontsize=7, rotation=30 if slant else 0, ha="right" if slant else "center")
        ax.set_title(str(name))
        # accuracies on a fixed 0-100 % axis; ratios (R = A_adv / A_clean, around 1) on their own scale
        ax.set_ylim(*((0, 100) if "%" in ylabel else (0, None)))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    # beside the last panel, never over its bars (save_png keeps it: bbox_inches="tight")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_png(fig, path)
