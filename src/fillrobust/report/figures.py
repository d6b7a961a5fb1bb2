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


def _tick_labels(ax: plt.Axes, positions: list[float], names: list) -> None:
    """Ids at the group centres: wrapped at ``_`` when few and short, else slanted on one line
    (many groups, or long ids such as Top-GAP's ablation members, would run into each other)."""
    lines = [str(s).split("_") for s in names]
    slant = len(names) > 6 or max((len(w) for parts in lines for w in parts), default=0) > 10
    ax.set_xticks(positions)
    if slant:
        ax.set_xticklabels([" ".join(parts) for parts in lines], fontsize=7, rotation=35, ha="right",
                           rotation_mode="anchor")
    else:
        ax.set_xticklabels(["\n".join(parts) for parts in lines], fontsize=7)


def grouped_bars(table: pd.DataFrame, facet: str, x: str, hue: str, value: str, path: str | Path,
                 ylabel: str = "accuracy (%)", err: str | None = None) -> None:
    """One panel per ``facet`` value; bars of ``value`` by ``x``, one colour per ``hue``.

    Rows without a value are left out, so a group with none in a panel takes no room there
    (a true 0, e.g. R of an attack that always succeeds, is still drawn).
    """
    facets = sorted(table[facet].unique())
    table = table[table[value].notna()]
    groups = max((table[table[facet] == f][x].nunique() for f in facets), default=1)
    panel_width = max(4.2, 0.55 * groups + 1.2)
    fig, axes = plt.subplots(1, len(facets), figsize=(panel_width * len(facets), 3.4), squeeze=False,
                             sharey=True)
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
        _tick_labels(ax, [i + width * (len(hues) - 1) / 2 for i in range(len(xs))], xs)
        ax.set_title(str(name))
        # accuracies on a fixed 0-100 % axis; ratios (R = A_adv / A_clean, around 1) on their own scale
        ax.set_ylim(*((0, 100) if "%" in ylabel else (0, None)))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    # beside the last panel, never over its bars (save_png keeps it: bbox_inches="tight")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_png(fig, path)
