"""PRIME on C-CCM (thesis 5.5): per-container comparison, sensitivity sweeps, baselines.

Every table reads the clean-evaluation summaries ``{eval_root}/{split}/{model}/seed{seed}/clean/summary.json``
(``accuracy`` on the test containers, ``val_accuracy`` on the seen-container
validation carve-out) and shows the thesis' number beside ours where the text
states one. The thesis reports "validation accuracy" on C-CCM for the sweeps
(Tab. 5.7, Fig. 5.9): the values match its test-container accuracies, so they
are compared with our ``accuracy`` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fillrobust.data.atomic import read_json_object
from fillrobust.report.figures import plt, save_png
from fillrobust.report.style import strategy_colour
from fillrobust.report.tables import _seed_means
from fillrobust.report.tables import percent as _pct

# Thesis Tab. 5.7: accuracy (%) vs depth m at width 3, p ~ U(0, 1).
DEPTH = {("S1", 1): 82.69, ("S1", 2): 83.16, ("S1", 3): 84.93,
         ("S2", 1): 73.42, ("S2", 2): 70.95, ("S2", 3): 68.92,
         ("S3", 1): 67.91, ("S3", 2): 65.90, ("S3", 3): 75.03}

# Thesis Fig. 5.9, only the best cell per split is stated in the text; the Beta sweep runs at
# each split's best depth of Tab. 5.7 (m = 3 / 1 / 3), so a cell is (split, m, a, b).
BETA = {("S1", 3, 5.0, 1.0): 86.73, ("S2", 1, 5.0, 1.0): 75.66, ("S3", 3, 6.0, 2.0): 84.21}

# Thesis Tab. 5.5 (ImageNet-100, ResNet-18, no JSD): kept primitives -> (IN-100-C, IN-100 clean) (%).
ABLATION = {"spectral+spatial+color": (68.8, 87.1), "spectral+spatial": (64.5, 87.7),
            "spectral+color": (67.5, 87.1), "spatial+color": (63.3, 86.2),
            "spectral": (64.1, 87.3), "spatial": (53.8, 87.0), "color": (59.9, 86.9)}

# Thesis Tab. 5.1 (CIFAR-10, ResNet-18, 30 epochs, no JSD): (clean, mean corruption) (%). The
# table has no PRIME column: DA-PRIME's cells stay blank (Tab. 5.2's PRIME, 94.2 / 89.8, is
# another recipe, with the JSD loss, and is not shown beside it).
BASELINES = {"ST": (94.4, 72.5), "LP": (91.1, 79.8), "GRAY": (92.4, 66.2), "AUGMIX": (94.1, 82.8),
             "AUGMIX-LP": (94.1, 83.4)}

SWEEP_COLUMNS = {"depth": ["m", "a", "b"], "beta": ["a", "b", "m"], "ablation": ["primitives", "dropped"]}


def summary_path(eval_root: str | Path, split: str, model: str, seed: int | str, kind: str = "clean") -> Path:
    """Where the evaluation of (split, model, seed) writes its summary."""
    return Path(eval_root) / split / model / f"seed{seed}" / kind / "summary.json"


def _read(path: Path) -> dict[str, Any]:
    return read_json_object(path, "evaluation summary")


def sweep_table(rows: list[dict[str, Any]], sweep: str, splits: list[str], seeds: list[int],
                eval_root: str | Path) -> pd.DataFrame:
    """One row per (split, setting, seed) of ``sweep`` (depth | beta | ablation); seed means added."""
    if sweep not in SWEEP_COLUMNS:
        raise ValueError(f"sweep: expected one of {list(SWEEP_COLUMNS)}, got {sweep!r}")
    keys = SWEEP_COLUMNS[sweep]
    records = []
    for row in (r for r in rows if r["sweep"] == sweep):
        for split in splits:
            for seed in seeds:
                s = _read(summary_path(eval_root, split, row["model"], seed))
                records.append({"split": split, **{k: row[k] for k in keys}, "model": row["model"],
                                "seed": str(seed), "accuracy": _pct(s["accuracy"]),
                                "val_accuracy": _pct(s.get("val_accuracy")),
                                "train_accuracy": _pct(s.get("train_accuracy")),
                                "converged": s.get("converged")})
    table = pd.DataFrame(records)
    means = _seed_means(table, keys=("split", *keys, "model"))
    table = pd.concat([table, means], ignore_index=True) if len(means) else table
    if sweep == "depth":
        table["paper"] = [DEPTH.get((s, int(m))) if a == b == 1 else None
                          for s, m, a, b in zip(table["split"], table["m"], table["a"], table["b"], strict=True)]
    elif sweep == "beta":
        table["paper"] = [BETA.get((s, int(m), float(a), float(b))) for s, m, a, b in
                          zip(table["split"], table["m"], table["a"], table["b"], strict=True)]
    else:
        table["paper_in100_c"] = [ABLATION.get(p, (None, None))[0] for p in table["primitives"]]
        table["paper_in100"] = [ABLATION.get(p, (None, None))[1] for p in table["primitives"]]
    order = ["split", *keys, "model", "seed", "accuracy", "accuracy_std"]
    order += [c for c in table.columns if c.startswith("paper")]
    order += ["val_accuracy", "train_accuracy", "converged"]
    table = table.reindex(columns=order)
    rank = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in rows if r["sweep"] == sweep))}
    table["_rank"] = table["model"].map(rank)  # the configured order of the settings
    table = table.sort_values(["split", "_rank", "seed"], kind="stable").drop(columns="_rank")
    return table.reset_index(drop=True)


def baselines_table(strategies: list[str], splits: list[str], seeds: list[int], eval_root: str | Path,
                    corruptions: bool, preprocess: dict[str, str] | None = None) -> pd.DataFrame:
    """Clean (and, where evaluated, mean corruption) accuracy of the Tab. 5.1 baselines.

    ``preprocess``: strategy -> how its preprocessing is applied (``config.preprocess_label``:
    ``lowpass (train only)`` or ``lowpass (in model)``), shown in a ``preprocess`` column.

    ``corruption_accuracy`` comes from ``.../corruptions/summary.json`` (mean over
    corruptions and severities) when ``corruptions`` is set and the file exists; blank otherwise.
    """
    records = []
    for split in splits:
        for strategy in strategies:
            for seed in seeds:
                s = _read(summary_path(eval_root, split, strategy, seed))
                cpath = summary_path(eval_root, split, strategy, seed, "corruptions")
                corr = _read(cpath).get("accuracy") if corruptions and cpath.exists() else None
                paper = BASELINES.get(strategy, (None, None))
                records.append({"split": split, "strategy": strategy, "seed": str(seed),
                                "accuracy": _pct(s["accuracy"]), "corruption_accuracy": _pct(corr),
                                "val_accuracy": _pct(s.get("val_accuracy")), "converged": s.get("converged"),
                                "paper_c10_clean": paper[0], "paper_c10_corruption": paper[1]})
    table = pd.DataFrame(records)
    means = _seed_means(table, keys=("split", "strategy"),
                        numeric=("accuracy", "corruption_accuracy", "val_accuracy"))
    if len(means):
        means["paper_c10_clean"] = [BASELINES.get(s, (None, None))[0] for s in means["strategy"]]
        means["paper_c10_corruption"] = [BASELINES.get(s, (None, None))[1] for s in means["strategy"]]
        table = pd.concat([table, means], ignore_index=True)
    rank = {s: i for i, s in enumerate(strategies)}
    table = table.reindex(columns=["split", "strategy", "seed", "accuracy", "accuracy_std",
                                   "corruption_accuracy", "paper_c10_clean", "paper_c10_corruption",
                                   "val_accuracy", "converged"])
    table["_rank"] = table["strategy"].map(rank)
    table = table.sort_values(["split", "_rank", "seed"], kind="stable").drop(columns="_rank")
    if preprocess is not None:
        table.insert(2, "preprocess", table["strategy"].map(preprocess).fillna("none"))
    return table.reset_index(drop=True)


def setting_label(table: pd.DataFrame, sweep: str) -> pd.Series:
    """Short x labels of a sweep's settings: ``m=2``, ``Beta(5,1)``, ``no spatial``."""
    if sweep == "depth":
        return "m=" + table["m"].astype(int).astype(str)
    if sweep == "beta":
        return [f"Beta({a:g},{b:g})" for a, b in zip(table["a"], table["b"], strict=True)]
    return ["full" if d == "none" else "no " + d.replace("+", ", ") for d in table["dropped"]]


def paper_markers(part: pd.DataFrame, sweep: str) -> pd.Series | None:
    """The thesis' values to mark on a sweep's C-CCM accuracy axis, or None.

    Only C-CCM accuracies of the same setting (``paper``: depth, Beta); the
    ablation's thesis numbers are ImageNet-100 corruption accuracies, another
    dataset and metric, so they stay in the table and are not plotted.
    """
    if sweep == "ablation" or "paper" not in part or not part["paper"].notna().any():
        return None
    return part["paper"]


def sweep_figure(table: pd.DataFrame, sweep: str, path: str | Path) -> None:
    """Bars of test accuracy per setting, one panel per split, the thesis' C-CCM value as a marker."""
    shown = table[table["seed"] == "mean"] if (table["seed"] == "mean").any() else table
    splits = list(dict.fromkeys(shown["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(3.6 * len(splits), 3.2), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits, strict=True):
        part = shown[shown["split"] == split]
        labels = list(setting_label(part, sweep))
        xs = range(len(labels))
        colour = strategy_colour(part["model"].iloc[0]) if "model" in part else None  # DA-PRIME's
        ax.bar(xs, part["accuracy"].to_numpy(), 0.6, label="ours (test containers)", color=colour)
        paper = paper_markers(part, sweep)
        if paper is not None:
            ax.plot(xs, paper.to_numpy(dtype=float), "k_", markersize=18, mew=2,
                    label="thesis (C-CCM; its 'validation' containers are our test containers)")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7, rotation=30)
        ax.set_title(str(split))
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside, never over a bar
    save_png(fig, path)


SWEEP_CAPTIONS = {
    "depth": "PRIME depth m at width 3 (thesis Tab. 5.7): test-container accuracy (%)",
    "beta": "PRIME mixing p ~ Beta(a, b) (thesis Fig. 5.9; the thesis states the best cell per split)",
    "ablation": "PRIME primitives ablation (thesis Tab. 5.5 on ImageNet-100: paper_in100_c is its "
                "corruption accuracy, paper_in100 its clean accuracy; another dataset and metric, "
                "so the figure shows our C-CCM accuracy only)",
}


def write_prime_table(predictions: list[str], out: str | Path, figure: str | Path, decimals: int,
                      container_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Per-container accuracy of the PRIME strategies beside ST, ST-FT, AT-FT (thesis Fig. 5.10)."""
    from fillrobust.report.tables import write_filling_table

    return write_filling_table(predictions, out, figure, decimals, container_order=container_order,
                               caption="Filling-level accuracy (%) per test container: DA-PRIME and "
                                       "AT-DA-PRIME beside ST, ST-FT, AT-FT (thesis Fig. 5.10)")


def write_sweep_table(params: dict[str, Any], sweep: str, eval_root: str | Path, out: str | Path,
                      figure: str | Path) -> pd.DataFrame:
    """One PRIME sensitivity sweep (``params``: rows, splits, seeds, decimals): table and figure."""
    from fillrobust.report.tables import write_table

    table = sweep_table(params["rows"], sweep, params["splits"], params["seeds"], eval_root)
    write_table(table, out, params["decimals"], caption=SWEEP_CAPTIONS[sweep])
    sweep_figure(table, sweep, figure)
    return table


def write_baselines_table(params: dict[str, Any], eval_root: str | Path, out: str | Path) -> pd.DataFrame:
    """The preprocessing and augmentation baselines of thesis Tab. 5.1 (``params``: strategies,
    splits, seeds, corruptions, decimals and optionally preprocess)."""
    from fillrobust.report.tables import write_table

    table = baselines_table(params["strategies"], params["splits"], params["seeds"], eval_root,
                            corruptions=params["corruptions"], preprocess=params.get("preprocess"))
    write_table(table, out, params["decimals"],
                caption="Preprocessing and augmentation baselines (thesis Tab. 5.1): clean and mean "
                        "common-corruption accuracy (%); paper_c10_*: thesis Tab. 5.1, ResNet-18 on CIFAR-10, "
                        "30 epochs, no JSD (no PRIME column there: DA-PRIME's are blank)")
    return table
