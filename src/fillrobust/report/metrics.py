"""DVC metrics and plot data from the generated tables.

``dvc metrics show`` / ``dvc metrics diff`` read the JSON files, ``dvc plots``
the CSV files (dvc.yaml's top-level ``metrics:`` and ``plots:``):

- ``headline.json``: test accuracy (%) per split and strategy of the ICIP
  study and of the PRIME comparison (seed mean), their mean over splits, and
  how many of the papers' claims hold;
- ``robustness.json``: per split and strategy the clean accuracy, the
  robustness score R = A_perturbed / A_clean of every attack and of the
  corruption means, the mCE (CE normalised by ST = 100, over the 15
  ImageNet-C corruptions) and the mean CE;
- ``plots/sensitivity_frozen_layers.csv`` (L x split), ``sensitivity_eps_source.csv``
  (eps_s x split): one column per split, so each split is one line;
- ``plots/filling_per_container.csv``: one row per (split, container,
  strategy) bar with its accuracy (a horizontal bar chart).

A table that the current params do not build is simply left out. Values are
the tables' own (already rounded to ``tables.decimals``); undefined ones
(R where the clean accuracy is 0) are left out rather than written as null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fillrobust.data.store import atomic_write_text, write_json
from fillrobust.report.style import order_strategies

Tables = Mapping[str, pd.DataFrame]


def read_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every ``<name>.csv`` of ``tables_dir`` by name (files without a header left out)."""
    tables = {}
    for path in sorted(Path(tables_dir).glob("*.csv")):
        try:
            tables[path.stem] = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue  # no columns: nothing a metric could read
    return tables


class TableColumnError(ValueError):
    """A table lacks columns its reader needs (a hand-edited or foreign CSV)."""

    def __init__(self, table: str, columns: list[str]) -> None:
        super().__init__(f"{table}.csv: no column {', '.join(map(repr, columns))}; expected the columns its "
                         "table rule writes (a hand-edited or foreign file? delete it to rebuild it)")
        self.table, self.columns = table, columns


#: The columns each table's metrics and plot data read.
REQUIRED = {
    "filling_per_container": ["split", "container", "strategy", "accuracy"],
    "prime_per_container": ["split", "container", "strategy", "accuracy"],
    "claims": ["holds"],
    "robustness_scores": ["split", "kind", "perturbation"],
    "corruption_severity": ["split", "strategy", "corruption", "CE"],
    "sensitivity_frozen_layers": ["L", "split", "accuracy"],
    "sensitivity_eps_source": ["eps_s", "split", "accuracy"],
}


def require_columns(frame: pd.DataFrame, table: str, columns: list[str]) -> None:
    """Raise :class:`TableColumnError` naming every column of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableColumnError(table, missing)


def _use(tables: Tables, name: str, make: Callable[..., Any], *args: Any) -> Any:
    """``make(tables[name], *args)`` once the table has the columns it reads (``REQUIRED``)."""
    require_columns(tables[name], name, REQUIRED.get(name, []))
    return make(tables[name], *args)


def seed_mean(frame: pd.DataFrame, keys: list[str], value: str) -> pd.Series:
    """``value`` per ``keys`` at the seed mean: the table's ``seed == "mean"``
    rows when it has them (several seeds), else the mean over its seed rows."""
    if "seed" in frame and frame["seed"].astype(str).eq("mean").any():
        frame = frame[frame["seed"].astype(str) == "mean"]
    return frame.groupby(keys, sort=False)[value].mean()


def _number(x: Any) -> float | None:
    """``x`` rounded to 4 decimals (as results/metrics/filling.json), None when blank."""
    value = float(x)
    return None if math.isnan(value) else round(value, 4)


def _nest(series: pd.Series) -> dict[str, Any]:
    """A (split, strategy[, name]) indexed series as nested dicts, blanks left out."""
    out: dict[str, Any] = {}
    for keys, x in series.items():
        keys = keys if isinstance(keys, tuple) else (keys,)
        if (value := _number(x)) is None:
            continue
        node = out
        for key in keys[:-1]:
            node = node.setdefault(str(key), {})
        node[str(keys[-1])] = value
    return out


def _accuracy_block(table: pd.DataFrame) -> dict[str, Any]:
    """Overall test accuracy per split and strategy, plus its mean over splits."""
    overall = seed_mean(table[table["container"] == "all"], ["split", "strategy"], "accuracy")
    block = _nest(overall)
    means = overall.groupby(level="strategy", sort=False).mean()
    block["mean"] = {s: round(float(means[s]), 4) for s in order_strategies(means.index)}
    return block


def _claims_block(table: pd.DataFrame) -> dict[str, int]:
    counts = table["holds"].astype(str).value_counts()
    hold, fail = int(counts.get("yes", 0)), int(counts.get("no", 0))
    # "n/a" reads as a blank with pandas' default NA strings: whatever is neither yes nor no
    return {"hold": hold, "fail": fail, "n/a": len(table) - hold - fail, "total": len(table)}


def headline_metrics(tables: Tables) -> dict[str, Any]:
    """Accuracy of the ICIP study and the PRIME comparison, and the claims count."""
    out: dict[str, Any] = {}
    for key, name in (("icip_accuracy", "filling_per_container"), ("prime_accuracy", "prime_per_container")):
        if name in tables:
            out[key] = _use(tables, name, _accuracy_block)
    if "claims" in tables:
        out["claims"] = _use(tables, "claims", _claims_block)
    return out


def _r_scores(table: pd.DataFrame) -> pd.Series:
    """(split, strategy, name) -> clean accuracy ("clean") or R ("R_<perturbation>") of
    every attack and the corruption means (single corruptions stay in the tables:
    ``dvc metrics`` shows the headline, the report every cell)."""
    strategies = [c for c in table.columns if c not in ("split", "kind", "perturbation", "images")]
    table = table[(table["kind"] != "corruption") | table["perturbation"].str.startswith("mean")]
    long = table.melt(id_vars=["split", "kind", "perturbation"], value_vars=strategies, var_name="strategy")
    prefix = long["kind"].map({"median norm": "median_norm_"}).fillna("R_")
    name = long["perturbation"].where(long["kind"] == "clean", prefix + long["perturbation"].str.replace(" ", "_"))
    return long.assign(name=name).set_index(["split", "strategy", "name"])["value"]


def _mce(table: pd.DataFrame) -> pd.Series:
    """(split, strategy, "mCE" | "mean_CE") from the corruption table's 'mean ImageNet-C' rows."""
    rows = table[table["corruption"] == "mean ImageNet-C"].set_index(["split", "strategy"])
    parts = {"mCE": rows["CE_norm"]} if "CE_norm" in rows else {}
    parts["mean_CE"] = rows["CE"]
    return pd.concat(parts, names=["name"]).reorder_levels(["split", "strategy", "name"])


def robustness_metrics(tables: Tables) -> dict[str, Any]:
    """R scores, clean accuracy and mCE per split and strategy (papers' strategy order)."""
    parts = []
    if "robustness_scores" in tables:
        parts.append(_use(tables, "robustness_scores", _r_scores))
    if "corruption_severity" in tables:
        parts.append(_use(tables, "corruption_severity", _mce))
    if not parts:
        return {}
    nested = _nest(pd.concat(parts))
    return {split: {s: by[s] for s in order_strategies(by)} for split, by in nested.items()}


def _by_split(table: pd.DataFrame, x: str, splits: list[str] | None = None) -> pd.DataFrame:
    """Seed-mean accuracy with one column per split, indexed by ``x`` (a DVC line per split).

    Every split of ``splits`` (the study's) gets its column, NaN where the
    sweep did not run on it (sensitivity.frozen_layers.splits may be S1 only):
    dvc.yaml names the columns, and DVC reports a column it cannot find (or
    whose cells are blank) as an error; Vega skips NaN points.
    """
    wide = seed_mean(table, [x, "split"], "accuracy").unstack("split").sort_index()
    if splits:
        wide = wide.reindex(columns=list(dict.fromkeys([*splits, *wide.columns])))
    return wide.round(4).reset_index()


def _bars(table: pd.DataFrame) -> pd.DataFrame:
    """One labelled bar per (split, container, strategy), containers only (not 'all')."""
    per = seed_mean(table[table["container"] != "all"], ["split", "container", "strategy"], "accuracy")
    frame = per.reset_index()
    rank = {s: i for i, s in enumerate(order_strategies(frame["strategy"]))}
    frame = frame.assign(_r=frame["strategy"].map(rank)).sort_values(["split", "container", "_r"], kind="stable")
    label = frame["split"] + " " + frame["container"] + " " + frame["strategy"]
    return pd.DataFrame({"bar": label, "accuracy": frame["accuracy"].round(4)})


PLOTS: dict[str, tuple[str, Callable[..., pd.DataFrame]]] = {
    "sensitivity_frozen_layers": ("sensitivity_frozen_layers", lambda t, splits: _by_split(t, "L", splits)),
    "sensitivity_eps_source": ("sensitivity_eps_source", lambda t, splits: _by_split(t, "eps_s", splits)),
    "filling_per_container": ("filling_per_container", lambda t, splits: _bars(t)),
}


def write_metrics(tables_dir: str | Path, metrics_dir: str | Path, plots_dir: str | Path,
                  splits: list[str] | None = None) -> list[Path]:
    """Write headline.json, robustness.json and the plot CSVs; returns the written paths.

    Every output is written (empty when its tables are absent), so the rule's
    outputs always exist. ``splits``: the study's splits, a column each in the
    sensitivity plot data.
    """
    tables = read_tables(tables_dir)
    try:  # every block first: a damaged table writes nothing
        blocks = {"headline": headline_metrics(tables), "robustness": robustness_metrics(tables)}
        plots = {out: _use(tables, table, make, splits) if table in tables else pd.DataFrame()
                 for out, (table, make) in PLOTS.items()}
    except TableColumnError as err:
        raise TableColumnError(str(Path(tables_dir) / err.table), err.columns) from None
    written = []
    for name, block in blocks.items():
        path = Path(metrics_dir) / f"{name}.json"
        write_json(path, block)
        written.append(path)
    for out, frame in plots.items():
        path = Path(plots_dir) / f"{out}.csv"
        atomic_write_text(path, frame.to_csv(index=False, na_rep="NaN"))  # a blank cell hides the column from DVC
        written.append(path)
    return written
