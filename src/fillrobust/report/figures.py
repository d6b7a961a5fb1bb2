"""Figures as PNG with fixed metadata, so the same data gives the same bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
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


#: Colours of a hue that is not a strategy (a measure, ours vs paper): matplotlib's Set2,
#: so such bars never borrow a strategy's colour (report/style.py uses tab10).
OTHER_HUES = ("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3")


def _bar_colours(hue: str, name: str, index: int, x: str, xs: list) -> str | list | None:
    """A strategy's own colour (the hue's, or each bar's when the bars are strategies); else the
    hue's colour from the non-strategy palette."""
    other = OTHER_HUES[index % len(OTHER_HUES)]
    if hue == "strategy":
        return strategy_colour(name)
    return [strategy_colour(s) or other for s in xs] if x == "strategy" else other


def _mark_zeros(ax: plt.Axes, groups: dict[int, list[tuple[float, float]]]) -> None:
    """A true 0 draws no visible bar: say so, so it does not read as a missing value; a group
    whose bars are all 0 gets one "all 0" instead of a row of digits."""
    for bars in groups.values():
        zeros = [pos for pos, val in bars if val == 0]
        if zeros and len(zeros) == len(bars) > 1:
            ax.annotate("all 0", (sum(zeros) / len(zeros), 0), xytext=(0, 1), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6)
            continue
        for pos in zeros:
            ax.annotate("0", (pos, 0), xytext=(0, 1), textcoords="offset points", ha="center",
                        va="bottom", fontsize=6)


def grouped_bars(table: pd.DataFrame, facet: str, x: str, hue: str, value: str, path: str | Path,
                 ylabel: str = "accuracy (%)", err: str | None = None, paper: str | None = None,
                 xlabel: str | None = None, facets: Sequence[str] | None = None, sharey: bool = True,
                 empty: str = "no values") -> None:
    """One panel per ``facet`` value (sorted, or in ``facets``' order); bars of ``value`` by
    ``x``, one colour per ``hue``.

    Rows without a value are left out, so a group with none in a panel takes no room there
    (a true 0, e.g. R of an attack that always succeeds, is drawn and labelled "0"); a panel
    with no value at all says ``empty``, and so does the one panel of an empty table. With
    ``paper``, that column's values are drawn as black marks on their bars. ``sharey=False``
    gives each panel its own scale (panels in different units).
    """
    facets = list(facets) if facets is not None else sorted(table[facet].unique())
    facets = facets or [""]
    table = table[table[value].notna()]
    groups = max((table[table[facet] == f][x].nunique() for f in facets), default=1)
    panel_width = max(4.2, 0.55 * groups + 1.2)
    fig, axes = plt.subplots(1, len(facets), figsize=(panel_width * len(facets), 3.4), squeeze=False,
                             sharey=sharey)
    hues = list(dict.fromkeys(table[hue]))
    # strategies in the papers' order and colours, the same in every figure (report/style.py)
    hues = order_strategies(hues) if hue == "strategy" else hues
    for ax, name in zip(axes[0], facets, strict=True):
        part = table[table[facet] == name]
        if part.empty:
            ax.text(0.5, 0.5, empty, ha="center", va="center", fontsize=8, transform=ax.transAxes)
            if not sharey:
                ax.set_yticks([])
        xs = list(dict.fromkeys(part[x]))
        width = 0.8 / max(len(hues), 1)
        drawn: dict[int, list[tuple[float, float]]] = {}  # group -> (position, value) of its bars
        for j, h in enumerate(hues):
            sub = part[part[hue] == h].set_index(x).reindex(xs)
            yerr = sub[err].fillna(0).to_numpy() if err and err in sub else None
            pos = [i + j * width for i in range(len(xs))]
            ax.bar(pos, sub[value].to_numpy(), width, label=h, yerr=yerr, color=_bar_colours(hue, h, j, x, xs))
            for i, (p, v) in enumerate(zip(pos, sub[value].tolist(), strict=True)):
                if v == v:  # not NaN: a bar was drawn
                    drawn.setdefault(i, []).append((p, v))
            if paper and paper in sub and sub[paper].notna().any():
                stated = sub[paper].notna().to_numpy()
                ax.scatter([p for p, k in zip(pos, stated, strict=True) if k], sub[paper][stated], marker="_", s=80,
                           color="black", linewidths=2, zorder=3,
                           label="paper" if "paper" not in ax.get_legend_handles_labels()[1] else None)
        _mark_zeros(ax, drawn)
        _tick_labels(ax, [i + width * (len(hues) - 1) / 2 for i in range(len(xs))], xs)
        ax.set_title(str(name))
        ax.set_xlabel(xlabel if xlabel is not None else x, fontsize=8)
        # accuracies on a fixed 0-100 % axis; ratios (R = A_adv / A_clean, around 1) on their own scale
        ax.set_ylim(*((0, 105) if "%" in ylabel else (0, None)))  # 105: a paper mark at 99.5 stays visible
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[0] if not sharey else axes[0][:1]:
        ax.set_ylabel(ylabel)
    # beside the last panel, never over its bars (save_png keeps it: bbox_inches="tight");
    # the paper mark of any panel is in it
    handles = {}
    for ax in axes[0]:
        handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0))
    save_png(fig, path)
