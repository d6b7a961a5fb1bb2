"""M-TLAT's Tables 1-3 (Laugros et al., ECCVW 2020) from the evaluation summaries.

- ``mtlat_robustness`` (Tables 1 and 2 layout): one row per (split, strategy)
  with the clean accuracy (%, full test set) and the robustness score R =
  A_perturbed / A_clean for the 15 ImageNet-C corruptions (mean over
  severities), their mean, M-TLAT's four perturbations, their mean, and every
  attack of ``evaluate.threats``; each of our rows is followed by the paper's
  (ResNet-50, ImageNet-100) where the paper has that model. The csv holds the
  numbers; md and tex mark each value + / - against the standard model of the
  same source, as the paper does.
- ``mtlat_labeling`` (Table 3): clean accuracy (%) of the adversarial-training
  labelings beside the paper's, with the final train accuracy and the
  converged flag of each model.

Seeds are averaged. The paper's numbers are only those its text states
legibly (Table 2b's Obstruction and Mixup's Colour and CW cells are garbled
in our copy and left blank).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fillrobust.data.store import atomic_write_text
from fillrobust.evaluate.corruptions import IMAGENET_C, MTLAT
from fillrobust.report.figures import grouped_bars
from fillrobust.report.robustness import (
    corruption_rows,
    images_note,
    read_summaries,
    robustness_scores,
    suite_note,
    threat_rows,
)
from fillrobust.report.seed_rows import interleave_seed_rows
from fillrobust.report.tables import all_converged

#: Our strategy ids -> the paper's names.
PAPER_NAMES = {"STANDARD": "standard", "ST": "standard", "MIXUP": "Mixup", "TLAT": "TLAT", "M-TLAT": "M-TLAT", "IAT": "IAT",
               "FGSM-AT": "FGSM", "TFGSM-AT": "target-FGSM", "LS-AT": "LS"}
PAPER_SOURCE = "paper (ResNet-50, ImageNet-100)"

_COLUMNS = IMAGENET_C + ("occlusion", "colour", "translation", "rotation",
                         "pgd_linf", "pgd_ll", "cw_l2", "mifgsm_0.04", "mifgsm_0.08")
_ROWS = {  # Table 1 (standard, IAT, M-TLAT) and Table 2 (Mixup, TLAT), ResNet-50 rows; None = not legible
    "standard": (73.3, 0.17, 0.17, 0.12, 0.25, 0.35, 0.41, 0.47, 0.31, 0.34, 0.48, 0.78, 0.34, 0.73, 0.65, 0.80,
                 0.74, 0.76, 0.78, 0.68, 0.00, 0.00, 0.00, 0.58, 0.34),
    "IAT": (73.2, 0.47, 0.46, 0.42, 0.51, 0.65, 0.58, 0.68, 0.49, 0.66, 0.78, 0.79, 0.78, 0.84, 0.82, 0.63,
            0.71, 0.89, 0.75, 0.72, 0.01, 0.08, 0.84, 0.87, 0.78),
    "M-TLAT": (73.9, 0.56, 0.54, 0.52, 0.41, 0.61, 0.58, 0.63, 0.49, 0.61, 0.59, 0.82, 0.58, 0.85, 0.94, 0.95,
               0.75, 0.86, 0.79, 0.74, 0.08, 0.45, 1.00, 0.96, 0.87),
    "Mixup": (74.9, 0.28, 0.28, 0.24, 0.25, 0.38, 0.39, 0.53, 0.38, 0.53, 0.79, 0.78, 0.75, 0.75, 0.58, 0.61,
              None, 0.78, 0.79, 0.71, 0.00, 0.00, 0.202, 0.61, 0.22),  # cw_l2 printed with 3 decimals
    "TLAT": (69.4, 0.57, 0.54, 0.51, 0.43, 0.60, 0.56, 0.60, 0.41, 0.41, 0.15, 0.78, 0.13, 0.84, 0.94, 0.97,
             None, 0.76, 0.67, 0.66, 0.10, 0.74, 0.97, 0.98, 0.93),
}
#: The paper's Tables 1 and 2 (ResNet-50): model -> {perturbation or "clean": value}.
PAPER_ROBUSTNESS: dict[str, dict[str, float]] = {
    model: {k: v for k, v in zip(("clean", *_COLUMNS), values, strict=True) if v is not None}
    for model, values in _ROWS.items()
}
#: Table 3: clean accuracy (%) of the adversarial-training labelings (ResNet-50, ImageNet-100).
PAPER_LABELING = {"standard": 73.3, "FGSM": 65.8, "target-FGSM": 68.3, "LS": 67.1, "TLAT": 69.4}

MEANS = {"mean ImageNet-C": IMAGENET_C, "mean M-TLAT": MTLAT}


def clean_rows(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    """Per (split, strategy), seeds averaged: clean test accuracy and final train accuracy (%),
    and whether every seed's model converged."""
    frame = pd.DataFrame([{"split": s["split"], "strategy": s["strategy"], "clean": 100 * s["accuracy"],
                           "train_accuracy": np.nan if s.get("train_accuracy") is None
                           else 100 * s["train_accuracy"], "converged": s.get("converged")}
                          for s in summaries])
    grouped = frame.groupby(["split", "strategy"], sort=False)
    out = grouped[["clean", "train_accuracy"]].mean()
    out["converged"] = grouped["converged"].agg(all_converged)
    return out.reset_index()


def _paper_row(strategy: str, columns: Sequence[str]) -> dict[str, Any] | None:
    values = PAPER_ROBUSTNESS.get(PAPER_NAMES.get(strategy, ""))
    if values is None:
        return None
    return {c: values.get(c, np.nan) for c in columns}


def robustness_table(threats: list[dict[str, Any]], corruptions: list[dict[str, Any]],
                     clean: list[dict[str, Any]], strategies: Sequence[str], perturbations: Sequence[str]
                     ) -> pd.DataFrame:
    """The ``mtlat_robustness`` rows (module docstring): ours, then the paper's, per strategy."""
    wide = robustness_scores(threat_rows(threats), corruption_rows(corruptions), [*perturbations, *MEANS])
    # R rows only: Tables 1-2 give no clean row here (clean_rows has the whole test set's) nor sizes
    wide = wide[wide["kind"].isin(["attack", "corruption"])].drop(columns=["kind", "images"])
    columns = [p for p in [*IMAGENET_C, "mean ImageNet-C", *MTLAT, "mean M-TLAT", *perturbations]
               if p in set(wide["perturbation"])]
    columns = list(dict.fromkeys(columns))
    base = clean_rows(clean).set_index(["split", "strategy"])
    rows = []
    for split, part in wide.groupby("split", sort=True):
        scores = part.set_index("perturbation").reindex(columns)
        for strategy in strategies:
            if strategy not in scores.columns or (split, strategy) not in base.index:
                continue
            info = base.loc[(split, strategy)]
            rows.append({"split": split, "strategy": strategy, "source": "ours", "converged": info["converged"],
                         "train_accuracy": info["train_accuracy"], "clean": info["clean"],
                         **scores[strategy].to_dict()})
            paper = _paper_row(strategy, ["clean", *columns])
            if paper is not None:
                rows.append({"split": split, "strategy": strategy, "source": PAPER_SOURCE, **paper,
                             "mean ImageNet-C": float(np.mean([paper[c] for c in IMAGENET_C if c in paper])),
                             # blank where the paper's row lacks one of the four (Mixup, TLAT: occlusion)
                             "mean M-TLAT": np.mean([paper.get(c, np.nan) for c in MTLAT])})
    frame = pd.DataFrame(rows, columns=["split", "strategy", "source", "converged", "train_accuracy", "clean",
                                        *columns])
    return frame


def labeling_table(clean: list[dict[str, Any]], strategies: Sequence[str], reference: str) -> pd.DataFrame:
    """The ``mtlat_labeling`` rows (Table 3): clean accuracy beside the paper's, and vs the standard."""
    base = clean_rows(clean)
    base = base[base["strategy"].isin(strategies)]
    rank = {s: i for i, s in enumerate(strategies)}
    base = base.sort_values(["split", "strategy"], key=lambda c: c.map(rank) if c.name == "strategy" else c)
    ref = base[base["strategy"] == reference].set_index("split")["clean"]
    paper_ref = PAPER_LABELING.get(PAPER_NAMES.get(reference, ""), np.nan)
    out = base.assign(
        paper_name=base["strategy"].map(PAPER_NAMES),
        paper=base["strategy"].map(lambda s: PAPER_LABELING.get(PAPER_NAMES.get(s, ""), np.nan)),
        vs_standard=base["clean"].to_numpy() - base["split"].map(ref).to_numpy(),
    )
    out["paper_vs_standard"] = out["paper"] - paper_ref
    return out.rename(columns={"clean": "accuracy"})[
        ["split", "strategy", "paper_name", "accuracy", "paper", "vs_standard", "paper_vs_standard",
         "train_accuracy", "converged"]].reset_index(drop=True)


def with_seeds(build: Callable[..., pd.DataFrame], summaries: Sequence[list[dict[str, Any]]],
               *args: Any) -> pd.DataFrame:
    """``build(*summaries, *args)`` at the seed mean, with each seed's own rows (built from
    that seed's summaries alone) under its mean row when there are several seeds.

    A ``seed`` column follows ``strategy``: "mean" on the mean rows, "" on the
    paper's. The seeds are those of the last summary list (the clean
    evaluations). With one seed the table is returned as ``build`` makes it.
    The claims read the mean rows and, for ``per_seed``, each seed's.
    """
    table = build(*summaries, *args)
    seeds = sorted({s.get("seed") for s in summaries[-1]}, key=str)
    if len(seeds) < 2:
        return table
    ours = table["source"] == "ours" if "source" in table else None
    parts = []
    for seed in seeds:
        part = build(*([x for x in group if x.get("seed") == seed] for group in summaries), *args)
        parts.append((seed, part[part["source"] == "ours"] if "source" in part else part))
    return interleave_seed_rows(table, parts, ["split", "strategy"], after="strategy", mean=ours)


def signed(frame: pd.DataFrame, reference: str, value_columns: Sequence[str], decimals: int) -> pd.DataFrame:
    """Values as text with the paper's + / - against ``reference`` of the same split and source
    (and seed, when the table has one)."""
    out = frame.astype(object).copy()
    keys = ["split", "source", *(["seed"] if "seed" in frame else [])]
    ref = frame[frame["strategy"] == reference].set_index(keys)
    for i, row in frame.iterrows():
        key = tuple(row[k] for k in keys)
        for column in value_columns:
            value = row[column]
            if pd.isna(value):
                out.at[i, column] = ""
                continue
            text = f"{value:.{decimals}f}"
            if row["strategy"] != reference and key in ref.index and not pd.isna(ref.at[key, column]):
                base = round(float(ref.at[key, column]), decimals)
                text += "+" if round(value, decimals) > base else "-" if round(value, decimals) < base else ""
            out.at[i, column] = text
    if "train_accuracy" in frame:
        out["train_accuracy"] = ["" if pd.isna(v) else f"{v:.{decimals}f}" for v in frame["train_accuracy"]]
    if "converged" in frame:
        out["converged"] = ["" if v is None or pd.isna(v) else str(bool(v)) for v in frame["converged"]]
    return out.fillna("")


def _write(frame: pd.DataFrame, shown: pd.DataFrame, prefix: str, decimals: int, caption: str) -> None:
    """csv from the numbers; md and tex from ``shown`` (the signed text)."""
    atomic_write_text(f"{prefix}.csv", frame.round(decimals).to_csv(index=False, na_rep=""))
    atomic_write_text(f"{prefix}.md", f"{caption}\n\n" + shown.to_markdown(index=False) + "\n")
    atomic_write_text(f"{prefix}.tex", shown.to_latex(index=False, caption=caption, na_rep="--"))


def write_mtlat_tables(params: dict[str, Any], threat_paths: Sequence[str], corruption_paths: Sequence[str],
                       clean_paths: Sequence[str], tables: str, figures: str) -> list[str]:
    """Write ``mtlat_robustness`` and ``mtlat_labeling`` (csv, md, tex) and their PNGs."""
    decimals, reference = params["decimals"], params["reference"]
    threats, corruptions, clean = read_summaries(threat_paths), read_summaries(corruption_paths), read_summaries(clean_paths)
    robust = robustness_table(threats, corruptions, clean, params["robustness"], params["threats"])
    values = [c for c in robust.columns if c not in ("split", "strategy", "source", "converged", "train_accuracy")]
    seeded = with_seeds(robustness_table, (threats, corruptions, clean), params["robustness"], params["threats"])
    _write(seeded, signed(seeded, reference, values, decimals), f"{tables}/mtlat_robustness", decimals,
           f"M-TLAT Tables 1-2 layout: clean accuracy (%) and robustness score R = A_perturbed / A_clean "
           f"(corruptions: mean over severities), + / - against {reference} (the paper's standard model); "
           "the paper's ResNet-50 rows beside ours; clean: the whole test set, R: on the attacked images"
           + images_note(threats) + suite_note(params))
    long = robust[robust["source"] == "ours"].melt(id_vars=["split", "strategy"], var_name="perturbation",
                                                   value_vars=[c for c in values if c not in
                                                               ("clean", *IMAGENET_C, *MTLAT)],
                                                   value_name="R")
    grouped_bars(long, "split", "perturbation", hue="strategy", value="R",
                 path=f"{figures}/mtlat_robustness.png",
                 ylabel="R = A_perturbed / A_clean", xlabel="perturbation (corruption means, attacks)")
    labels = labeling_table(clean, params["labeling"], reference)
    seeded = with_seeds(labeling_table, (clean,), params["labeling"], reference)
    _write(seeded, _rounded(seeded, decimals), f"{tables}/mtlat_labeling", decimals,
           "M-TLAT Table 3: clean accuracy (%) of the adversarial-training labelings; paper: "
           "ResNet-50 on ImageNet-100")
    grouped_bars(labels.assign(source="ours").dropna(subset=["accuracy"]), "split", "strategy", hue="source",
                 value="accuracy", path=f"{figures}/mtlat_labeling.png", paper="paper", xlabel="labeling")
    return [f"{tables}/mtlat_robustness", f"{tables}/mtlat_labeling"]


def _rounded(frame: pd.DataFrame, decimals: int) -> pd.DataFrame:
    """Numbers rounded to text, blanks for missing values (the md / tex cells)."""
    out = frame.astype(object).copy()
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            out[column] = [("" if pd.isna(v) else f"{v:.{decimals}f}") for v in frame[column]]
    return out.where(out.notna(), "")
