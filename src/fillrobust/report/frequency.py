"""Figures of the frequency study (thesis Figs. 4.3, 4.4, 4.7, 4.8, 4.10, 4.12)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from fillrobust.report.figures import plt, save_png


def margin_panels(summary: pd.DataFrame, basis: str, path: str | Path) -> None:
    """Figs. 4.3 (``dct``) / 4.4 (``random``): one panel per (split, data) row and
    model column; median margin per subspace (low to high frequency) with the
    5th-95th percentile band; the title carries the accuracy on the measured images."""
    part = summary[summary["basis"] == basis]
    rows = list(dict.fromkeys(zip(part["split"], part["data"], strict=True)))
    models = list(dict.fromkeys(part["model"]))
    fig, axes = plt.subplots(max(len(rows), 1), max(len(models), 1), squeeze=False,
                             figsize=(3.0 * max(len(models), 1), 2.4 * max(len(rows), 1)), sharey=True)
    for i, (split, data) in enumerate(rows):
        for j, model in enumerate(models):
            ax = axes[i][j]
            sel = part[(part["split"] == split) & (part["data"] == data) & (part["model"] == model)]
            if sel.empty:
                ax.set_axis_off()
                continue
            sel = sel.sort_values("subspace")
            ax.fill_between(sel["subspace"], sel["p5"], sel["p95"], alpha=0.25)
            ax.plot(sel["subspace"], sel["median"], lw=2)
            ax.set_title(f"{model} on {data} [{split}] ({sel['accuracy'].iloc[0]:.1f} %)", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == len(rows) - 1:
                ax.set_xlabel("DCT subspace (low -> high freq.)" if basis == "dct"
                              else "random subspace (no frequency order)", fontsize=7)
        axes[i][0].set_ylabel("margin (l2)", fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


@contextmanager
def _subspace_axes(path: str | Path, ylabel: str, legend: bool = True) -> Iterator[plt.Axes]:
    """Axes for lines over the DCT subspaces; after the caller has drawn them: labels, grid,
    legend (if ``legend``), saved to ``path``."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    yield ax
    ax.set_xlabel("DCT subspace (low -> high freq.)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)
    save_png(fig, path)


def median_lines(summary: pd.DataFrame, basis: str, data: str, path: str | Path) -> None:
    """Fig. 4.7: median margin per subspace of every model on one data variant."""
    part = summary[(summary["basis"] == basis) & (summary["data"] == data)]
    with _subspace_axes(path, f"median margin on {data}", legend=len(part) > 0) as ax:
        for (split, model), sel in part.groupby(["split", "model"], sort=False):
            sel = sel.sort_values("subspace")
            ax.plot(sel["subspace"], sel["median"], marker="o", ms=3,
                    label=f"{model} [{split}] ({sel['accuracy'].iloc[0]:.1f} %)")


def forgetting_figure(table: pd.DataFrame, path: str | Path) -> None:
    """Fig. 4.8: median margin of LP test images after each phase (left), and the LP / HP test
    accuracy per phase (right; what the claim tests), the thesis' as black marks."""
    fig, (ax, acc) = plt.subplots(1, 2, figsize=(9.0, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    phases = table.drop_duplicates("phase").sort_values("phase")
    # the thesis' Fig. 4.8 colours: blue LP+HP, red after forgetting HP, green after recovering it
    colours = ("#1f77b4", "#d62728", "#2ca02c")
    for i, ((_, name), sel) in enumerate(table.groupby(["phase", "trained_on"], sort=True)):
        ax.plot(sel["subspace"], sel["median_margin"], marker="o", ms=3, label=f"after {name}",
                color=colours[i % len(colours)])
    ax.set_xlabel("DCT subspace (low -> high freq.)")
    ax.set_ylabel("median margin, l2 (LP test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    xs = np.arange(len(phases))
    for offset, data, colour in ((-0.2, "lp", "#8da0cb"), (0.2, "hp", "#fc8d62")):
        acc.bar(xs + offset, phases[f"{data}_accuracy"], 0.4, color=colour, label=f"{data.upper()} test images")
        stated = phases.get(f"paper_{data}_accuracy")
        if stated is not None and stated.notna().any():
            acc.scatter(xs + offset, stated, marker="_", s=150, color="black", linewidths=2, zorder=3,
                        label="thesis (CIFAR-10)" if data == "lp" else None)
    acc.set_xticks(xs)
    acc.set_xticklabels([f"{p}: {t}" for p, t in zip(phases["phase"], phases["trained_on"], strict=True)], fontsize=7)
    acc.set_xlabel("training phase")
    acc.set_ylabel("accuracy (%)")
    acc.set_ylim(0, 105)
    acc.grid(axis="y", alpha=0.3)
    acc.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside, not over a mark
    fig.tight_layout()
    save_png(fig, path)


def energy_figure(table: pd.DataFrame, path: str | Path) -> None:
    """Fig. 4.12: 95th percentile of the PGD perturbation norm per DCT block, per epoch."""
    with _subspace_axes(path, "95th pct. of ||P delta||") as ax:
        epochs = sorted(table["epoch"].unique())
        colours = plt.cm.viridis(np.linspace(0, 1, max(len(epochs), 2)))
        for colour, epoch in zip(colours, epochs, strict=False):
            sel = table[table["epoch"] == epoch].sort_values("subspace")
            ax.plot(sel["subspace"], sel["p95_norm"], color=colour, label=f"epoch {epoch}")


def transition_figure(table: pd.DataFrame, path: str | Path) -> None:
    """Fig. 4.10: median margin along u1 and u2 vs eps on T2, with the test accuracy."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for sub in ("u1", "u2"):
        ax.plot(table["eps"], table[f"median_{sub}"], marker="o", label=f"median margin along {sub}")
    ax.axvline(0.5, color="grey", ls=":", lw=1, label="thesis: switch near eps 0.5")
    ax.set_xlabel("eps (T2)")
    ax.set_ylabel("median margin (l2)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(table["eps"], 100 * table["test_acc"], "k--", lw=1, label="test accuracy")
    twin.set_ylabel("test accuracy (%)")
    twin.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center right")
    save_png(fig, path)


CAPTIONS = {
    "synthetic_margins": "Margins on T1 (eps=5, sigma=1) along u1, span(u1)^perp, S_orth, S_rand "
                         "(thesis Table 4.1: MLP, Table A.1: logistic regression; paper_*: the thesis' values); "
                         "p5 / median / p95: subspace DeepFool, as the thesis (an upper bound on a curved "
                         "boundary); exact_*: the exact margin along u1 (line search)",
    "synthetic_transition": "T2 eps sweep: margins along u1 and u2 (thesis Fig. 4.10; subspace DeepFool; "
                            "exact_median_*: the exact margin by line search; none: most test points do "
                            "not change their prediction within 2 rho along that direction)",
    "forgetting": "Forgetting (thesis 4.3.3, Fig. 4.8): LP+HP -> LP only -> LP+HP; accuracy (%) on LP / HP "
                  "test images (paper_*: DenseNet-121 on CIFAR-10) and median DCT margins of LP test images",
    "adversarial_energy": "l2 norm of PGD perturbations per DCT-diagonal block during adversarial training "
                          "(thesis Fig. 4.12: 95th percentile)",
}
FIGURES = {"synthetic_transition": transition_figure, "forgetting": forgetting_figure,
           "adversarial_energy": energy_figure}


def write_frequency_table(frame: pd.DataFrame, name: str, tables: str | Path, figures: str | Path,
                          decimals: int) -> None:
    """Table ``tables/<name>.{csv,md,tex}`` (and ``figures/<name>.png`` where the thesis
    has a figure) of one result; the kind is the name up to ``_<split>``."""
    from fillrobust.report.tables import write_table

    kind = next((k for k in CAPTIONS if name == k or name.startswith(f"{k}_")), None)
    if kind is None:
        raise ValueError(f"{name}: not a frequency result (expected one of {sorted(CAPTIONS)}[_<split>])")
    write_table(frame, Path(tables) / name, decimals, caption=CAPTIONS[kind], inf_text="none")
    if kind in FIGURES:
        FIGURES[kind](frame, Path(figures) / f"{name}.png")


def write_frequency_tables(results: list[str], tables: str | Path, figures: str | Path,
                           decimals: int) -> list[str]:
    """:func:`write_frequency_table` for every result parquet (named by its stem); returns the names."""
    names = []
    for path in results:
        names.append(Path(path).stem)
        write_frequency_table(pd.read_parquet(path), names[-1], tables, figures, decimals)
    return names


def write_margin_tables(margins: list[str], tables: str | Path, figures: str | Path,
                        decimals: int) -> pd.DataFrame:
    """The margin summary table of every model's margins parquet and its three figures."""
    from fillrobust.evaluate.frequency_study import margin_summary_table
    from fillrobust.report.tables import write_table

    summary = margin_summary_table([pd.read_parquet(p) for p in margins])
    write_table(summary, Path(tables) / "margins", decimals,
                caption="Margins (l2) of test images per subspace: 5th percentile, median, 95th "
                        "percentile (thesis Figs. 4.3, 4.4, 4.7)")
    margin_panels(summary, "dct", Path(figures) / "margins_dct.png")
    margin_panels(summary, "random", Path(figures) / "margins_random.png")
    median_lines(summary, "dct", "original", Path(figures) / "margins_median_original.png")
    return summary


def write_cross_dataset(models: list[tuple[str, str, str]], datasets: dict[str, str], splits: dict[str, str],
                        params: dict, out: str | Path, device: str = "auto",
                        threads: int | None = None) -> pd.DataFrame:
    """Evaluate every (split, variant, weights) model on every dataset variant
    (:func:`~fillrobust.evaluate.frequency_study.cross_dataset`) and write the table."""
    from fillrobust.evaluate.frequency_study import cross_dataset
    from fillrobust.report.tables import write_table

    table = cross_dataset(models, datasets, splits, params, device=device, threads=threads)
    write_table(table, out, params["decimals"],
                caption="Test accuracy (%): rows trained on a variant, columns tested on one "
                        "(thesis Tables A.3-A.5; paper_*: ResNet-18 on CIFAR-10, Table A.4)")
    return table
