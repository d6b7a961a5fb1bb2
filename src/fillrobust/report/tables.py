"""Tables: csv + markdown + LaTeX from one DataFrame, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fillrobust.data.atomic import read_json_object
from fillrobust.data.store import atomic_write_text
from fillrobust.report.reference import filling_reference


def write_table(frame: pd.DataFrame, prefix: str | Path, decimals: int, caption: str = "",
                inf_text: str | None = None) -> None:
    """Write ``prefix``.csv, .md and .tex with floats rounded to ``decimals``.

    With ``inf_text``, an infinite value reads as that text in the .md and .tex (the
    .csv keeps ``inf`` for programs), e.g. "none" for a margin that no search found.
    """
    prefix = Path(prefix)
    shown = frame.round(decimals)
    atomic_write_text(prefix.with_suffix(".csv"), shown.to_csv(index=False, na_rep=""))
    # the .csv keeps every column for programs; readers get no column without a value
    # (accuracy_std with one seed, a paper column where the paper states nothing)
    shown, caption = drop_empty_columns(shown, caption)
    if inf_text is not None:
        shown = _inf_as_text(shown, decimals, inf_text)
    blanks = shown.astype(object).where(shown.notna(), None)  # markdown shows None as blank
    md = blanks.to_markdown(index=False, floatfmt=f".{decimals}f", missingval="")
    atomic_write_text(prefix.with_suffix(".md"), (f"{caption}\n\n" if caption else "") + md + "\n")
    # cells, headers and the caption escaped, so the .tex compiles (% and _ are everywhere here)
    tex = shown.to_latex(index=False, float_format=f"%.{decimals}f", na_rep="--", escape=True,
                         caption=latex_escape(caption) if caption else None)
    atomic_write_text(prefix.with_suffix(".tex"), tex)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (for captions; pandas escapes the cells)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def drop_empty_columns(frame: pd.DataFrame, caption: str = "") -> tuple[pd.DataFrame, str]:
    """``frame`` without its all-blank columns, and ``caption`` saying which were left out."""
    empty = [c for c in frame.columns if frame[c].isna().all()] if len(frame) else []
    if not empty:
        return frame, caption
    note = f"columns without a value left out: {', '.join(map(str, empty))}"
    return frame.drop(columns=empty), f"{caption} ({note})" if caption else note


def _inf_as_text(frame: pd.DataFrame, decimals: int, text: str) -> pd.DataFrame:
    """Columns holding an infinity as text, their finite values formatted as the others."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values) and np.isinf(values).any():
            out[column] = [text if np.isinf(v) else (None if np.isnan(v) else f"{v:.{decimals}f}")
                           for v in values]
    return out


def percent(value: Any) -> float:
    """A fraction as %, NaN (a blank cell) only where the value is missing.

    A real 0.0 accuracy stays 0 (``x or nan`` would blank it).
    """
    return np.nan if value is None else 100.0 * float(value)


#: what every clean-evaluation summary a table reads must hold
SUMMARY_KEYS = ("split", "strategy", "seed")


def read_summary(predictions: str | Path, keys: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, Any]:
    """The ``summary.json`` beside a ``predictions.parquet``; a corrupt one names its file."""
    return read_json_object(Path(predictions).parent / "summary.json", "evaluation summary", keys)


def filling_per_container(prediction_paths: list[str],
                          container_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Per-container and overall accuracy (%) of every (split, strategy, seed).

    Rows with ``container == "all"`` are the overall test accuracy and carry
    the final train and validation accuracy, so non-convergence is visible.
    With several seeds, rows with ``seed == "mean"`` give mean and std.
    ``container_order``: per split, its test containers in the order to show them
    (``splits.membership.<split>.test``: the paper's Fig. 6 order), after ``all``;
    others follow by name.
    """
    rows = []
    for path in prediction_paths:
        summary = read_summary(path)
        pred = pd.read_parquet(path)
        key = {"split": summary["split"], "strategy": summary["strategy"], "seed": str(summary["seed"]),
               "converged": summary.get("converged")}  # every row of the model shows it
        for container, group in pred.groupby("container", sort=True):
            rows.append({**key, "container": container, "n": len(group),
                         "accuracy": 100 * group["correct"].mean()})
        rows.append({**key, "container": "all", "n": len(pred), "accuracy": 100 * pred["correct"].mean(),
                     "train_accuracy": percent(summary.get("train_accuracy")),
                     "val_accuracy": percent(summary.get("val_accuracy"))})
    table = pd.DataFrame(rows)
    table = pd.concat([table, _seed_means(table)], ignore_index=True)
    table["paper"] = [filling_reference(s, c, g) for s, c, g in
                      zip(table["split"], table["container"], table["strategy"], strict=True)]
    order = ["split", "container", "strategy", "seed", "n", "accuracy", "accuracy_std",
             "paper", "train_accuracy", "val_accuracy", "converged"]
    table = table.reindex(columns=order)
    # Strategies in the order they are given (study.strategies: the paper's
    # ST, AT, ST-FT, ST-AFT, AT-FT, AT-AFT), not alphabetically: tables and bars follow it.
    rank = {name: i for i, name in enumerate(dict.fromkeys(table["strategy"]))}
    place = [_container_place(container, (container_order or {}).get(split, []))
             for split, container in zip(table["split"], table["container"], strict=True)]
    table = table.assign(_place=place)
    return table.sort_values(["split", "_place", "strategy", "seed"], kind="stable",
                             key=lambda col: col.map(rank) if col.name == "strategy" else col
                             ).drop(columns="_place").reset_index(drop=True)


def _container_place(container: str, order: list[str]) -> tuple[int, str]:
    """Sort key of a container row: ``all`` first, then ``order``'s, then the rest by name."""
    if container == "all":
        return (-1, "")
    return (order.index(container), "") if container in order else (len(order), container)


def _seed_means(table: pd.DataFrame, keys: tuple[str, ...] = ("split", "container", "strategy"),
                numeric: tuple[str, ...] = ("n", "accuracy", "train_accuracy", "val_accuracy")) -> pd.DataFrame:
    """Mean and std over seeds, only where a configuration has several seeds."""
    keys, numeric = list(keys), [c for c in numeric if c in table.columns]
    counts = table.groupby(keys)["seed"].transform("nunique")
    multi = table[counts > 1]
    if multi.empty:
        return pd.DataFrame(columns=table.columns)
    agg = multi.groupby(keys)[numeric].mean().reset_index()
    agg["accuracy_std"] = multi.groupby(keys)["accuracy"].std(ddof=1).to_numpy()
    if "converged" in table.columns:  # the mean of several seeds converged if every seed did
        agg["converged"] = multi.groupby(keys)["converged"].agg(all_converged).to_numpy()
    agg["seed"] = "mean"
    return agg


def overall_rows(prediction_paths: list[str]) -> pd.DataFrame:
    """One row per evaluated model: split, model, seed, test/train/val accuracy (%)."""
    rows = []
    for path in prediction_paths:
        summary = read_summary(path, (*SUMMARY_KEYS, "accuracy"))
        rows.append({"split": summary["split"], "model": summary["strategy"], "seed": str(summary["seed"]),
                     "accuracy": 100 * summary["accuracy"],
                     "train_accuracy": percent(summary.get("train_accuracy")),
                     "val_accuracy": percent(summary.get("val_accuracy")),
                     "converged": summary.get("converged")})
    table = pd.DataFrame(rows)
    means = _seed_means(table, keys=("split", "model"), numeric=("accuracy", "train_accuracy", "val_accuracy"))
    return pd.concat([table, means], ignore_index=True)


def all_converged(flags: pd.Series) -> bool | None:
    """True when every seed's model converged; None when a flag is unknown."""
    return None if flags.isna().any() else bool(flags.astype(bool).all())


FILLING_CAPTION = ("Filling-level accuracy (%) per test container (paper: ICIP 2021 Fig. 6); AT-FT and AT-AFT "
                   "fine-tune the robust source of the eps_s selected per split (sensitivity_eps_source, "
                   "`selected`), as the paper; paper on the `all` rows: ST-FT at L = 1, AT-FT at its selected eps_s")


def write_filling_table(predictions: list[str], out: str | Path, figure: str | Path, decimals: int,
                        caption: str = FILLING_CAPTION, metrics: str | Path | None = None,
                        container_order: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Table ``out``.{csv,md,tex} of accuracy per test container, its bar figure and,
    with ``metrics``, the overall accuracy per model as a DVC metrics JSON; containers
    per split in ``container_order`` (``filling_per_container``)."""
    from fillrobust.data.store import write_json
    from fillrobust.report.figures import grouped_bars

    table = filling_per_container(predictions, container_order)
    write_table(table, out, decimals, caption=caption)
    # one bar per strategy: the seed mean where there are several seeds
    seeds = table[table["seed"] == "mean"] if (table["seed"] == "mean").any() else table
    grouped_bars(seeds, facet="split", x="container", hue="strategy", value="accuracy", path=figure,
                 err="accuracy_std", paper="paper", xlabel="test container")
    if metrics:
        overall = table[table["container"] == "all"]
        write_json(metrics, {f"{r.split}/{r.strategy}/seed{r.seed}": round(r.accuracy, 4)
                             for r in overall.itertuples()})
    return table
