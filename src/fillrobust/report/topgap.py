"""Top-GAP study: its model ids, their params, and its tables and figures.

Model ids (``results/eval/{split}/topgap/{model}/seed{seed}``):

- ``k{k}``: the ``topgap.strategy`` recipe (TOPGAP) at a share k of the CAM
  (``topgap.k_grid``; also the all-on member of the ablation, at ``ablation_k``);
- ``fpn{0|1}-l1{0|1}-top{0|1}``: an ablation member (paper Table 8) at ``ablation_k``;
- a ``topgap.compare`` strategy id (ST-FT, ...): a study model without a CAM
  head, evaluated through GradCAM.

Tables (``results/tables/``): ``topgap_robustness`` (Tables 3-4: clean and
FGSM / PGD robust accuracy, the paper's definition and the usual one),
``topgap_sparsity_iou`` (Tables 2 and 7), ``topgap_ablation`` (Table 8), each
with the paper's numbers beside ours, a PNG per table, and a CAM overlay
grid (image, map, mask per container). Torch-free: the Snakefile imports
the id functions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fillrobust.data.atomic import read_json_object

if TYPE_CHECKING:  # pandas is imported lazily: the Snakefile imports this module
    import pandas as pd

ABLATION_PREFIX = "fpn"

#: Paper Table 3 (ImageNet, ResNet-18) and Table 2 / Table 7 (ResNet-18) numbers shown beside ours.
PAPER_ROBUSTNESS = {"standard": {"clean": 69.8, "fgsm": 6.5, "pgd": 0.0},
                    "topgap": {"clean": 69.7, "fgsm": 25.6, "pgd": 5.9}}
PAPER_SPARSITY = {"standard": 0.387, "topgap": 0.123}  # Table 2, ImageNet ResNet-18
PAPER_IOU = {"standard": 0.268, "topgap": 0.435}  # Table 7, CUB ResNet-18
#: Table 8 (COCO, EfficientNet-B0): (fpn, l1, topgap) -> accuracy, IoU, FGSM.
PAPER_ABLATION = {(0, 0, 0): (80.1, 0.309, 7.0), (0, 0, 1): (68.1, 0.196, 0.0), (0, 1, 0): (79.9, 0.304, 29.7),
                  (0, 1, 1): (79.6, 0.169, 26.3), (1, 0, 0): (79.6, 0.308, 8.2), (1, 0, 1): (53.2, 0.261, 5.4),
                  (1, 1, 0): (79.0, 0.325, 30.5), (1, 1, 1): (80.3, 0.348, 30.6)}


def k_label(k: float) -> str:
    """0.05 -> 'k0.05'."""
    return f"k{float(k):g}"


def ablation_id(switches: dict[str, bool]) -> str:
    """The member id of one ablation setting; all on is the grid-style ``k`` id."""
    return f"fpn{int(switches['fpn'])}-l1{int(switches['l1'])}-top{int(switches['topgap'])}"


def members(topgap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Top-GAP model id -> overrides of the strategy's ``topgap`` params, grid first."""
    out = {k_label(k): {"k": float(k), "fpn": True, "l1": True, "topgap": True} for k in topgap["k_grid"]}
    for switches in topgap["ablation"]:
        over = {"k": float(topgap["ablation_k"]), **{n: bool(switches[n]) for n in ("fpn", "l1", "topgap")}}
        key = k_label(over["k"]) if all(switches.values()) else ablation_id(switches)
        out.setdefault(key, over)
    return out


def member_params(config: dict[str, Any], model: str, split: str) -> dict[str, Any]:
    """Resolved training params of a Top-GAP member id (ValueError naming it when unknown)."""
    from fillrobust.config import strategy_params

    topgap = config["topgap"]
    table = members(topgap)
    if model not in table:
        raise ValueError(f"topgap: unknown model {model!r}; expected one of {sorted(table)}")
    params = copy.deepcopy(strategy_params(config, topgap["strategy"], split))
    params["topgap"] = {**params.get("topgap", {}), **table[model]}
    return params


def topgap_checks(config: dict[str, Any]) -> list[str]:
    """Cross-key rules of the ``topgap`` section (config.validate)."""
    topgap = config.get("topgap")
    if not topgap:
        return []
    from fillrobust.attacks.registry import validate_attack_params
    from fillrobust.config import task_split_problems

    problems = []
    strategies = config["train"]["strategies"]
    strategy = topgap["strategy"]
    if not (strategies.get(strategy) or {}).get("topgap"):
        problems.append(f"topgap.strategy: {strategy} must be a train.strategies entry with a 'topgap' block")
    for name in topgap["compare"]:
        if name not in strategies:
            problems.append(f"topgap.compare: {name} is not defined in train.strategies ({sorted(strategies)})")
    problems += task_split_problems(config, "topgap.splits", topgap["splits"], topgap["compare"])
    for name, threat in topgap["evaluate"]["threats"].items():
        try:
            validate_attack_params(threat["attack"], threat.get("params"))
        except ValueError as err:
            problems.append(f"topgap.evaluate.threats.{name}: {err}")
    return problems


def _read(paths: list[str]) -> list[dict[str, Any]]:
    """Summaries with split / model / seed from their paths (``.../{split}/topgap/{model}/seed{s}/summary.json``)."""
    rows = []
    for path in paths:
        p = Path(path)
        summary = read_json_object(p, "Top-GAP evaluation summary")
        rows.append({**summary, "split": p.parents[3].name, "model": p.parents[1].name,
                     "seed": int(p.parent.name.removeprefix("seed"))})
    return rows


def _kind(row: dict[str, Any]) -> str:
    if row["method"] != "cam":
        return "standard (GradCAM)"
    return "Top-GAP" if row["model"].startswith("k") else "ablation"


def _switches(row: dict[str, Any]) -> tuple[int, int, int] | None:
    """(fpn, l1, topgap) of a Top-GAP member row."""
    model = row["model"]
    if model.startswith("k"):
        return (1, 1, 1)
    if model.startswith(ABLATION_PREFIX):
        fpn, l1, top = (int(part[-1]) for part in model.split("-"))
        return (fpn, l1, top)
    return None


def _seed_frame(paths: list[str]) -> pd.DataFrame:
    """One row per evaluated (split, model, seed)."""
    import pandas as pd

    rows = []
    for r in _read(paths):
        threats = r["threats"]
        rows.append({"split": r["split"], "model": r["model"], "seed": r["seed"], "kind": _kind(r),
                     "method": r["method"], "k": r["k"] if r["method"] == "cam" else None,
                     "switches": _switches(r), "images": r["n"], "clean": 100 * r["clean_accuracy"],
                     **{f"{t}_unchanged": 100 * v["robust_unchanged"] for t, v in threats.items()},
                     **{f"{t}_correct": 100 * v["robust_correct"] for t, v in threats.items()},
                     "sparsity": r["sparsity"], "iou": r["iou"], "iou_threshold": r["iou_threshold"],
                     "converged": r.get("converged")})
    return pd.DataFrame(rows)


def _base_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The seed means per (split, model), with the seed count and whether every seed converged."""
    numeric = [c for c in frame.columns if c not in ("split", "model", "seed", "kind", "method", "switches",
                                                     "images", "converged")]
    keys = ["split", "model", "kind", "method"]
    means = frame.groupby(keys, sort=False)[numeric].mean().reset_index()
    extra = frame.groupby(keys, sort=False).agg(switches=("switches", "first"), seeds=("seed", "nunique"),
                                                images=("images", "min"),
                                                converged=("converged", lambda s: bool(s.fillna(False).all())))
    return means.merge(extra.reset_index(), on=keys)


def with_seeds(table: pd.DataFrame, seeds: pd.DataFrame,
               rename: dict[str, str] | None = None) -> pd.DataFrame:
    """``table`` (seed means) with each seed's own rows under its mean row, when there are several seeds.

    A ``seed`` column follows ``model`` ("mean" on the mean rows); a seed row
    carries its own measurements and the model's selection and paper columns.
    ``rename``: the per-seed frame's names for the table's columns (the
    ablation's ``accuracy`` is ``clean``). With one seed the table is returned
    as it is. The claims read the mean rows and, for ``per_seed``, each seed's.
    """
    from fillrobust.report.seed_rows import interleave_seed_rows

    if seeds["seed"].nunique() < 2:
        return table
    seeds = seeds.rename(columns=rename or {})
    keys = ["split", "model"]
    measured = [c for c in table.columns if c in seeds.columns and c not in (*keys, "kind", "method", "k")]
    per_seed = table.drop(columns=measured).merge(seeds[[*keys, "seed", *measured]], on=keys, how="left")
    if "seeds" in per_seed:
        per_seed["seeds"] = 1
    parts = [(seed, rows.drop(columns="seed")) for seed, rows in per_seed.groupby("seed", sort=True)]
    return interleave_seed_rows(table, parts, keys, after="model")


def _selected(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """Per split, the (split, model) of the Top-GAP grid member with the best clean accuracy
    (the paper reports that k); each split selects its own."""
    grid = frame[frame["kind"] == "Top-GAP"]
    best = grid.loc[grid.groupby("split")["clean"].idxmax()]
    return set(zip(best["split"], best["model"], strict=True))


def robustness_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Tables 3-4 layout: every model's clean and robust accuracies (%), the paper's beside."""
    table = frame.drop(columns=["switches", "sparsity", "iou", "iou_threshold"]).copy()
    chosen = _selected(frame)
    table["selected_k"] = [(sp, m) in chosen for sp, m in zip(table["split"], table["model"], strict=True)]
    for metric in ("clean", "fgsm", "pgd"):
        table[f"paper_{metric}"] = [PAPER_ROBUSTNESS["standard"][metric] if kind.startswith("standard")
                                    else PAPER_ROBUSTNESS["topgap"][metric] if sel else None
                                    for kind, sel in zip(table["kind"], table["selected_k"], strict=True)]
    return table


def sparsity_iou_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Tables 2 and 7: CAM l1 sparsity and IoU with the container mask per model."""
    cols = ["split", "model", "kind", "method", "k", "sparsity", "iou", "iou_threshold", "clean", "seeds", "images"]
    table = frame[cols].copy()
    std = table["kind"].str.startswith("standard")
    # the paper's Top-GAP numbers belong to its chosen model: here the row the claims read
    # (the sparsest / best-IoU k of the grid per split), not every k nor the ablation members
    grid = table[table["kind"] == "Top-GAP"]
    sparsest = set(grid.loc[grid.groupby("split")["sparsity"].idxmin()].index) if len(grid) else set()
    iou = grid.dropna(subset=["iou"])
    best_iou = set(iou.loc[iou.groupby("split")["iou"].idxmax()].index) if len(iou) else set()
    table["paper_sparsity"] = [PAPER_SPARSITY["standard"] if s else PAPER_SPARSITY["topgap"] if i in sparsest
                               else None for i, s in zip(table.index, std, strict=True)]
    table["paper_iou"] = [PAPER_IOU["standard"] if s else PAPER_IOU["topgap"] if i in best_iou else None
                          for i, s in zip(table.index, std, strict=True)]
    return table


def ablation_table(frame: pd.DataFrame, full_model: str) -> pd.DataFrame:
    """Table 8: one row per (FPN, l1, Top-GAP) member, with the paper's COCO numbers.

    ``full_model`` is the all-on member (the grid member at ``ablation_k``).
    """
    import pandas as pd

    part = frame[frame["switches"].notna()].copy()
    part = part[[s != (1, 1, 1) or m == full_model for s, m in zip(part["switches"], part["model"], strict=True)]]
    rows = []
    for _, r in part.iterrows():
        fpn, l1, top = r["switches"]
        paper = PAPER_ABLATION[(fpn, l1, top)]
        rows.append({"split": r["split"], "FPN": bool(fpn), "l1": bool(l1), "Top-GAP": bool(top),
                     "model": r["model"], "accuracy": r["clean"], "iou": r["iou"],
                     "fgsm_unchanged": r.get("fgsm_unchanged"), "sparsity": r["sparsity"],
                     "paper_accuracy": paper[0], "paper_iou": paper[1], "paper_fgsm": paper[2]})
    columns = ["split", "FPN", "l1", "Top-GAP", "model", "accuracy", "iou", "fgsm_unchanged", "sparsity",
               "paper_accuracy", "paper_iou", "paper_fgsm"]
    return pd.DataFrame(rows, columns=columns).sort_values(["split", "FPN", "l1", "Top-GAP"]).reset_index(drop=True)


def _bars(table: pd.DataFrame, value_cols: list[str], path: str | Path, ylabel: str) -> None:
    """Grouped bars of ``value_cols`` per model, one panel per split (a note when there are no rows)."""
    from fillrobust.report.figures import grouped_bars, save_png

    if table.empty:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 1))
        ax.text(0.5, 0.5, "no rows under the current params", ha="center", va="center")
        ax.axis("off")
        save_png(fig, path)
        return
    long = table.melt(id_vars=["split", "model"], value_vars=value_cols, var_name="measure", value_name="value")
    grouped_bars(long, facet="split", x="model", hue="measure", value="value", path=path, ylabel=ylabel,
                 xlabel="model (Top-GAP k, ablation member, standard model)")


def dataset_map(entries: list[str]) -> dict[str, str]:
    """``SPLIT=DIR`` entries (``--datasets``) as a dict: the dataset each split indexes."""
    bad = [e for e in entries if "=" not in e]
    if bad:
        raise ValueError(f"--datasets: {bad} are not SPLIT=DIR (e.g. S1=data/ccm)")
    return dict(e.split("=", 1) for e in entries)


def overlay_grid(frame: pd.DataFrame, eval_root: str | Path, datasets: dict[str, str], seed: int,
                 path: str | Path) -> None:
    """PNG grid per split: for each overlay image (one row), the image, its mask, and each model's map;
    ``datasets``: the dataset folder of each split (C-CCM, or SynthSource for its split)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from fillrobust.data.store import read_dataset
    from fillrobust.report.figures import save_png

    opened = {d: read_dataset(d) for d in dict.fromkeys(datasets.values())}
    splits = list(dict.fromkeys(frame["split"]))
    missing = [sp for sp in splits if sp not in datasets]
    if missing:
        raise ValueError(f"overlay grid: no dataset given for splits {missing} (--datasets SPLIT=DIR)")
    blocks = []
    for split in splits:
        models = list(frame.loc[frame["split"] == split, "model"])
        maps = {m: np.load(Path(eval_root) / split / "topgap" / m / f"seed{seed}" / "maps.npz") for m in models}
        index = maps[models[0]]["index"] if models else np.empty(0, np.int64)
        blocks.append((split, models, maps, index))
    rows = sum(len(b[3]) for b in blocks)
    cols = 2 + max((len(b[1]) for b in blocks), default=0)
    fig, axes = plt.subplots(max(rows, 1), cols, figsize=(1.3 * cols, 1.3 * max(rows, 1)), squeeze=False)
    r = 0
    for split, models, maps, index in blocks:
        ds = opened[datasets[split]]
        containers = ds.manifest.set_index("index")["container"]
        for i, idx in enumerate(index):
            image = np.asarray(ds.images[idx])
            mask = np.asarray(ds.masks[idx]) if ds.masks is not None else np.zeros(image.shape[:2])
            panels = [("image", image, None), ("mask", mask, "gray")]
            panels += [(m, maps[m]["maps"][i], "jet") for m in models]
            for c, (title, data, cmap) in enumerate(panels):
                ax = axes[r][c]
                if cmap == "jet":
                    ax.imshow(image)
                    ax.imshow(data, cmap=cmap, alpha=0.5, vmin=0, vmax=255)
                else:
                    ax.imshow(data, cmap=cmap)
                if r == 0 or i == 0:
                    ax.set_title(f"{split} {title}" if c == 0 else title, fontsize=6)
            axes[r][0].set_ylabel(str(containers.get(int(idx), "")).replace("_", "\n"), fontsize=6)
            r += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_png(fig, path)


def write_topgap_tables(summaries: list[str], datasets: list[str], tables: str, figures: str, ablation_k: float,
                        decimals: int = 2, seed: int = 0) -> dict[str, Any]:
    """The three Top-GAP tables (csv, md, tex), a PNG per table and the CAM overlay grid.

    ``summaries``: the evaluation summaries (``results/eval/{split}/topgap/{model}/seed{s}/summary.json``);
    ``datasets``: ``SPLIT=DIR`` per split, the images of the overlay grid;
    ``ablation_k``: the k of the ablation (its all-on row is the grid member ``k{ablation_k}``);
    ``seed``: whose maps the overlay grid shows.
    """
    from fillrobust.report.tables import write_table

    seeds = _seed_frame(summaries)
    frame = _base_frame(seeds)
    tables_dir, figures_dir = Path(tables), Path(figures)
    tables_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    robust = robustness_table(frame)
    write_table(with_seeds(robust, seeds), tables_dir / "topgap_robustness", decimals,
                "Top-GAP robustness (paper Tables 3-4): accuracy (%) clean and under FGSM / PGD; "
                "*_unchanged = prediction kept (the paper's robust accuracy), *_correct = still correct; "
                "images = test images evaluated (the paper: all); "
                "paper_* = ImageNet ResNet-18 (Table 3) for the standard model and the selected k")
    sparse = sparsity_iou_table(frame)
    write_table(with_seeds(sparse, seeds), tables_dir / "topgap_sparsity_iou", decimals,
                "CAM l1 sparsity (mean of the min-max scaled map; lower = sparser) and IoU with the container "
                "mask at the best threshold, over `images` test images (paper Tables 2 and 7: ResNet-18, "
                "ImageNet / CUB)")
    ablation = ablation_table(frame, k_label(ablation_k))
    write_table(with_seeds(ablation, seeds, {"clean": "accuracy"}), tables_dir / "topgap_ablation", decimals,
                "Ablation of FPN, l1 loss and Top-GAP (paper Table 8: COCO, EfficientNet-B0)")
    threat_cols = [c for c in robust.columns if c.endswith("_unchanged") or c.endswith("_correct")]
    _bars(robust, ["clean", *threat_cols], figures_dir / "topgap_robustness.png",
          "% of test images (clean: correct)")
    _bars(sparse.assign(sparsity=100 * sparse["sparsity"], iou=100 * sparse["iou"]), ["sparsity", "iou"],
          figures_dir / "topgap_sparsity_iou.png", "CAM sparsity, IoU (x 100)")
    _bars(ablation.assign(iou=100 * ablation["iou"]) if not ablation.empty else ablation,
          ["accuracy", "iou", "fgsm_unchanged"], figures_dir / "topgap_ablation.png",
          "accuracy, FGSM unchanged (%); IoU (x 100)")
    eval_root = Path(summaries[0]).parents[4] if summaries else Path(".")
    overlay_grid(frame, eval_root, dataset_map(datasets), seed, figures_dir / "topgap_cam_overlays.png")
    return {"robustness": robust, "sparsity_iou": sparse, "ablation": ablation}
