"""Sensitivity analyses of ICIP 2021 (Fig. 5) and fixed-feature vs full-network transfer."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fillrobust.data.atomic import read_json_object
from fillrobust.report.figures import save_png
from fillrobust.report.reference import EPS_BEST, FROZEN_L1
from fillrobust.report.tables import all_converged, overall_rows
from fillrobust.strategy_ids import SWEEP_EPS, SWEEP_FROZEN, sweep_parts


def frozen_layers_table(prediction_paths: list[str]) -> pd.DataFrame:
    """Test accuracy per split and number of frozen stages L (paper: L=1 values)."""
    table = overall_rows(prediction_paths)
    table["L"] = table["model"].str.split(SWEEP_FROZEN).str[-1].astype(int)
    table["paper"] = [FROZEN_L1.get(s) if L == 1 else None for s, L in zip(table["split"], table["L"], strict=True)]
    cols = ["split", "L", "seed", "accuracy", "accuracy_std", "paper", "train_accuracy", "val_accuracy",
            "converged"]
    return table.reindex(columns=cols).sort_values(["split", "L", "seed"], kind="stable").reset_index(drop=True)


def eps_source_table(prediction_paths: list[str], chosen: dict[str, float]) -> pd.DataFrame:
    """AT-FT test accuracy per split and eps_s, the pipeline's choice (``chosen``: split ->
    selected eps_s, ``selected_eps``) and the paper's."""
    table = overall_rows(prediction_paths)
    table["eps_s"] = table["model"].str.split(SWEEP_EPS).str[-1].astype(float)
    table["selected"] = [chosen.get(s) == e for s, e in zip(table["split"], table["eps_s"], strict=True)]
    table["paper_best_eps"] = [EPS_BEST[s][0] if s in EPS_BEST else None for s in table["split"]]
    table["paper"] = [EPS_BEST[s][1] if s in EPS_BEST and EPS_BEST[s][0] == e else None
                      for s, e in zip(table["split"], table["eps_s"], strict=True)]
    cols = ["split", "eps_s", "seed", "accuracy", "accuracy_std", "selected", "paper_best_eps", "paper",
            "train_accuracy", "val_accuracy", "converged"]
    return table.reindex(columns=cols).sort_values(["split", "eps_s", "seed"], kind="stable").reset_index(drop=True)


def read_selections(selection_paths: list[str]) -> dict[str, dict]:
    """The eps_s selection record of each split (``models/<split>/selection/eps_source.json``)."""
    return {Path(path).parent.parent.name: read_json_object(path, "eps selection file", ["selected_eps"])
            for path in selection_paths}


def _fixed_full_id(model: str) -> tuple[str, float | None, int]:
    """``AT-FT_eps1_L4`` -> (``AT-FT``, 1.0, 4); ``ST-FT_L0`` -> (``ST-FT``, None, 0)."""
    strategy, eps, frozen = sweep_parts(model)
    return strategy, float(eps) if eps is not None else None, int(frozen)


def fixed_vs_full(prediction_paths: list[str], chosen: dict[str, float],
                  source_eps: dict[str, float | str] | None = None) -> pd.DataFrame:
    """NeurIPS 2020's two transfer settings side by side, per split and source model: L=4
    (fixed-feature, a linear head on frozen features) and L=0 (full-network fine-tuning).

    A model id names its source eps (``AT-FT_eps1_L4``) or takes its strategy's from
    ``source_eps`` (``ST-FT_L4``: ``train.strategies.ST-FT.source_eps``; not named: 0;
    ``"selected"``: ``chosen``, split -> selected eps_s). ``source`` is ``standard`` at eps_s 0,
    ``robust`` above, ``unknown`` without a selection to read; ``selected`` marks the eps_s
    the ICIP selection (the eps_s sweep, ``sensitivity.eps_source``) picked.
    """
    table = overall_rows(prediction_paths)
    parsed = [_fixed_full_id(m) for m in table["model"]]
    table["strategy"] = [strategy for strategy, _, _ in parsed]
    table["L"] = [frozen for _, _, frozen in parsed]
    eps = []
    for (strategy, own, _), split in zip(parsed, table["split"], strict=True):
        given = own if own is not None else (source_eps or {}).get(strategy, 0.0)
        eps.append(chosen.get(split, np.nan) if given == "selected" else float(given))
    table["eps_s"] = eps
    rows = []
    groups = table.groupby(["split", "strategy", "eps_s", "seed"], sort=False, dropna=False)
    for (split, strategy, eps_s, seed), part in groups:
        by_l = part.set_index("L")["accuracy"]
        source = "unknown" if np.isnan(eps_s) else "standard" if eps_s == 0 else "robust"
        rows.append({"split": split, "source": source, "strategy": strategy,
                     "eps_s": eps_s, "selected": eps_s != 0 and chosen.get(split) == eps_s, "seed": seed,
                     "fixed_feature_L4": by_l.get(4, np.nan), "full_network_L0": by_l.get(0, np.nan),
                     "converged": all_converged(part["converged"])})  # both settings' models
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("converged"), "full_minus_fixed", out["full_network_L0"] - out["fixed_feature_L4"])
    return out.sort_values(["split", "eps_s", "seed"], kind="stable").reset_index(drop=True)


def _selected_by(records: dict[str, dict]) -> str:
    """Which accuracy the eps_s selection read (its records' ``by``: test as the paper, or val)."""
    kinds = {record.get("by", "test") for record in records.values()}
    return " / ".join(sorted(kinds)) or "test"


def _mean_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Seed means when present, else the single seed's rows."""
    return table[table["seed"] == "mean"] if (table["seed"] == "mean").any() else table


#: ICIP Fig. 5's split markers (S1 square, S2 circle, S3 triangle); colours from the non-strategy palette.
SPLIT_MARKERS = {"S1": "s", "S2": "o", "S3": "^"}


def line_plot(table: pd.DataFrame, x: str, path: str, logx: bool = False, mark: str | None = None,
              xlabel: str | None = None, mark_label: str | None = None) -> None:
    """Accuracy vs ``x``, one line per split (error bars: std over seeds); the paper's stated
    values (``paper``) as black marks, the rows flagged by ``mark`` circled."""
    from fillrobust.report.figures import OTHER_HUES

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    colours = {}
    for i, (split, part) in enumerate(_mean_rows(table).groupby("split", sort=True)):
        part = part.sort_values(x)
        colours[split] = OTHER_HUES[i % len(OTHER_HUES)]
        ax.errorbar(part[x], part["accuracy"], yerr=part["accuracy_std"].fillna(0),
                    marker=SPLIT_MARKERS.get(str(split), "o"), color=colours[split], label=split)
        if mark is not None:
            sel = part[part[mark].astype(bool)]
            ax.scatter(sel[x], sel["accuracy"], s=120, facecolors="none", edgecolors="k",
                       label=mark_label if i == 0 else None)
    stated = table[table["paper"].notna()] if "paper" in table else table.iloc[:0]
    for i, (split, part) in enumerate(stated.drop_duplicates(["split", x]).groupby("split", sort=True)):
        # the split's own marker, outlined black: which split a paper number belongs to
        ax.scatter(part[x], part["paper"], marker=SPLIT_MARKERS.get(str(split), "o"), s=70,
                   facecolors=colours.get(split, "white"), edgecolors="black", linewidths=1.5, zorder=3,
                   label="paper, stated in the text (its split's marker)" if i == 0 else None)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_png(fig, path)



def write_sensitivity_tables(frozen: list[str], eps: list[str], selections: list[str], tables: str | Path,
                             figures: str | Path, decimals: int, fixed_full: list[str],
                             source_eps: dict[str, float | str] | None = None) -> list[pd.DataFrame]:
    """The two sweeps of ICIP 2021 Fig. 5 (tables and line plots) and the fixed-feature
    vs full-network table and figure (NeurIPS 2020) of the ``fixed_full`` models' clean
    evaluations, their sources' eps in ``source_eps`` (``fixed_vs_full``); returns the two
    sweep tables."""
    from fillrobust.report.tables import write_table

    frozen_table = frozen_layers_table(frozen)
    write_table(frozen_table, f"{tables}/sensitivity_frozen_layers", decimals,
                caption="ST-FT test accuracy (%) vs frozen stages L (ICIP 2021 Fig. 5 left)")
    line_plot(frozen_table, "L", f"{figures}/sensitivity_frozen_layers.png",
              xlabel="L: frozen ResNet stages in fine-tuning (0 = none)")
    records = read_selections(selections)
    chosen = {split: record["selected_eps"] for split, record in records.items()}
    eps_table = eps_source_table(eps, chosen)
    write_table(eps_table, f"{tables}/sensitivity_eps_source", decimals,
                caption="AT-FT test accuracy (%) vs source eps at L=1 (ICIP 2021 Fig. 5 right)")
    line_plot(eps_table, "eps_s", f"{figures}/sensitivity_eps_source.png", logx=True, mark="selected",
              xlabel="eps_s: l2 bound of the source's adversarial training",
              mark_label=f"selected eps_s (best {_selected_by(records)} accuracy)")
    transfer = fixed_vs_full(fixed_full, chosen, source_eps)
    write_table(transfer, f"{tables}/transfer_fixed_vs_full", decimals,
                caption="Fixed-feature (L=4) vs full-network (L=0) transfer (NeurIPS 2020 Figs. 2-3) from the "
                        "standard source (eps_s 0) and each robust one of the eps_s grid, test accuracy (%); "
                        "selected: the eps_s the ICIP selection (the eps_s sweep) picked; each trial (seed) and "
                        "their mean, which the claims read (ST-FT's L=4 / L=0 seed 0 is also the frozen sweep's)")
    transfer_bars(transfer, f"{figures}/transfer_fixed_vs_full.png")
    return [frozen_table, eps_table]


def transfer_bars(table: pd.DataFrame, path: str) -> None:
    """NeurIPS 2020 Figs. 2-3 as one figure: per split, the two settings (fixed-feature L = 4,
    full-network L = 0), one bar per source (standard, then each robust eps_s), seed means;
    error bars: the standard deviation over the trials (the paper's span three)."""
    from fillrobust.report.figures import grouped_bars

    settings = {"fixed_feature_L4": "fixed-feature (L = 4)", "full_network_L0": "full-network (L = 0)"}
    keys = ["split", "source", "strategy", "eps_s"]
    rows = _mean_rows(table)
    trials = table[table["seed"] != "mean"]
    spread = trials.groupby(keys, dropna=False)[list(settings)].std().reset_index()  # NaN (no bar) with one trial
    label = ["standard (eps_s 0)" if src == "standard" else f"{src} (eps_s {eps:g})"
             for src, eps in zip(rows["source"], rows["eps_s"], strict=True)]
    long = rows.assign(source_eps=label).melt(id_vars=[*keys, "source_eps"], value_vars=list(settings),
                                              var_name="setting", value_name="accuracy")
    std = spread.melt(id_vars=keys, value_vars=list(settings), var_name="setting", value_name="std")
    long = long.merge(std, on=[*keys, "setting"], how="left")
    long["setting"] = long["setting"].map(settings)
    grouped_bars(long, "split", "setting", hue="source_eps", value="accuracy", path=path, err="std",
                 ylabel="test accuracy (%)", xlabel="transfer setting (NeurIPS 2020 Figs. 2-3; bars: std over trials)")
