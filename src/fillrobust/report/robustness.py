"""Robustness tables from the per-model threat and corruption summaries.

- ``robustness_scores``: M-TLAT Table 1 layout: one row per (split,
  perturbation), one column per strategy; the ``clean`` row holds the clean
  accuracy (%), every other row the robustness score R = A_perturbed / A_clean
  (corruptions: mean R over severities); ``mean ImageNet-C`` averages the 15
  ImageNet-C corruptions, ``mean M-TLAT`` M-TLAT's four (rotation, translation,
  colour, occlusion).
- ``corruption_severity``: thesis Tables B.3/B.4: accuracy (%) per corruption
  and severity, its mean, the corruption error CE (mean error, %) and CE
  normalised by the reference strategy (ST) of the same split; a ``mean
  ImageNet-C`` row per model averages them over the 15 ImageNet-C corruptions
  only (its ``CE_norm`` is Hendrycks' mCE), a ``mean M-TLAT`` row over M-TLAT's four.
- ``robust_per_container``: accuracy (%) per test container, clean and under
  each attack.

Seeds are averaged; every table is written as csv/md/tex with a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fillrobust.data.atomic import read_json_object
from fillrobust.evaluate.corruptions import IMAGENET_C, MTLAT
from fillrobust.report.figures import grouped_bars
from fillrobust.report.tables import write_table


def read_summaries(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The JSON evaluation summaries at ``paths``; an unreadable one names its file."""
    return [read_json_object(path, "evaluation summary") for path in paths]


#: The per-model mean rows: label -> the corruptions they average.
MEAN_ROWS = {"mean ImageNet-C": IMAGENET_C, "mean M-TLAT": MTLAT}


def _group_means(frame: pd.DataFrame, keys: list[str], column: str, groups: dict[str, tuple[str, ...]],
                 numeric: list[str]) -> pd.DataFrame:
    """One row per ``keys`` and group label: the mean of ``numeric`` over the group's corruptions."""
    parts = []
    for label, names in groups.items():
        part = frame[frame[column].isin(names)]
        if len(part):
            mean = part.groupby(keys, sort=False)[numeric].mean().reset_index()
            parts.append(mean.assign(**{column: label}))
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]


def _order(frame: pd.DataFrame, strategies: list[str]) -> pd.DataFrame:
    return frame[[c for c in strategies if c in frame.columns]]


def threat_rows(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    """Long table: split, strategy, seed, perturbation, kind, value, images.

    ``value`` is the clean accuracy (%) or R; a minimal attack (one that reports
    ``median_norm``: DeepFool, SparseFool, CW-l2) adds a ``median norm`` row, its
    perturbation size over the images it fooled, since its R is 0 by construction
    wherever it always succeeds. ``images``: how many test images each was measured on
    (clean: the benchmark subset, the largest attack's).
    """
    rows = []
    for s in summaries:
        key = {"split": s["split"], "strategy": s["strategy"], "seed": s["seed"]}
        sizes = [t["n"] for t in s["threats"].values() if "n" in t]
        rows.append({**key, "perturbation": "clean", "kind": "clean", "value": 100 * s["clean_accuracy"],
                     "images": max(sizes, default=None)})
        for name, t in s["threats"].items():
            rows.append({**key, "perturbation": name, "kind": "attack", "value": t["R"], "images": t.get("n")})
        for name, t in s["threats"].items():
            if "median_norm" in t:
                rows.append({**key, "perturbation": name, "kind": "median norm", "value": t["median_norm"],
                             "images": t.get("n_success")})
    return pd.DataFrame(rows)


#: A minimal attack's median-norm unit by attack (its ``median_norm``), for its figure panel.
NORM_UNITS = {"sparsefool": "pixels changed"}
L2_UNIT = "l2, [0, 1] pixels"


def figure_frames(threats: pd.DataFrame, order: Sequence[str],
                  attacks: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bars of the two robustness figures, seeds averaged, threats in ``order``.

    R is drawn for the attacks with a perturbation budget only: a minimal attack (one with
    ``median norm`` rows: DeepFool, SparseFool, CW-l2) is 0 or 1 by construction, so its
    figure shows its median norm instead, one panel per threat in its attack's unit
    (``panel``; ``attacks``: threat name -> attack, ``evaluate.threats.<name>.attack``).
    """
    mean = threats.groupby(["kind", "split", "perturbation", "strategy"], sort=False)["value"].mean().reset_index()
    rank = {name: i for i, name in enumerate(order)}  # the table's (params') order, not the summaries' keys
    mean = mean.sort_values("perturbation", key=lambda p: p.map(rank), kind="stable")
    minimal = set(mean.loc[mean["kind"] == "median norm", "perturbation"])
    bounded = mean[(mean["kind"] == "attack") & ~mean["perturbation"].isin(minimal)]
    norms = mean[mean["kind"] == "median norm"]
    panels = [f"{p} ({NORM_UNITS.get((attacks or {}).get(p, p), L2_UNIT)})" for p in norms["perturbation"]]
    return bounded.drop(columns="kind"), norms.drop(columns="kind").assign(panel=panels)


def corruption_rows(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    """Long table: split, strategy, seed, corruption, severity, accuracy (%), clean (%)."""
    rows = []
    for s in summaries:
        for corruption, by_severity in s["per_corruption"].items():
            for severity, acc in by_severity.items():
                rows.append({"split": s["split"], "strategy": s["strategy"], "seed": s["seed"],
                             "corruption": corruption, "severity": int(severity), "accuracy": 100 * acc,
                             "clean": 100 * s["clean_accuracy"]})
    return pd.DataFrame(rows)


def robustness_scores(threats: pd.DataFrame, corruptions: pd.DataFrame,
                      order: Sequence[str] = (), corruption_images: int | None = None) -> pd.DataFrame:
    """The M-TLAT Table 1 layout (module docstring), seeds averaged; rows in ``order`` (params).

    ``images`` gives each row's number of test images per model (a median norm's: the
    fewest images it was taken over); ``corruption_images`` is the corrupted sets'.
    """
    cor = corruptions.assign(value=corruptions["accuracy"] / corruptions["clean"].where(corruptions["clean"] > 0))
    cor = cor.groupby(["split", "strategy", "seed", "corruption"], sort=False)["value"].mean().reset_index()
    cor = cor.rename(columns={"corruption": "perturbation"}).assign(kind="corruption")
    mean = _group_means(cor, ["split", "strategy", "seed"], "perturbation", MEAN_ROWS, ["value"])
    mean = mean.assign(kind="corruption")
    long = pd.concat([threats, cor, mean], ignore_index=True)
    if "images" not in long:
        long["images"] = None
    long.loc[long["kind"] == "corruption", "images"] = corruption_images
    strategies = list(dict.fromkeys(long["strategy"]))
    rows = list(dict.fromkeys(zip(long["split"], long["kind"], long["perturbation"], strict=True)))
    index = ["split", "kind", "perturbation"]
    wide = long.pivot_table(index=index, columns="strategy", values="value", aggfunc="mean")
    images = pd.to_numeric(long["images"]).groupby([long[k] for k in index]).min().rename("images")
    rank = {name: i for i, name in enumerate(["clean", *order])}
    kinds = {"clean": 0, "attack": 1, "median norm": 2, "corruption": 3}
    rows = sorted(rows, key=lambda r: (r[0], kinds.get(r[1], len(kinds)), rank.get(r[2], len(rank))))
    table = _order(wide.reindex(pd.MultiIndex.from_tuples(rows, names=index)), strategies)
    return table.join(images).reset_index()[[*index, "images", *table.columns]].astype({"images": "Int64"})


def corruption_severity(corruptions: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Thesis Tables B.3/B.4 (module docstring), seeds averaged."""
    order = {name: i for i, name in enumerate(dict.fromkeys(corruptions["strategy"]))}
    mean = corruptions.groupby(["split", "strategy", "corruption", "severity"], sort=False)["accuracy"].mean()
    wide = mean.unstack("severity")
    wide.columns = [f"s{c}" for c in wide.columns]
    wide["mean"] = wide.mean(axis=1)
    wide["CE"] = 100 - wide["mean"]
    ref = wide.xs(reference, level="strategy")["CE"] if reference in wide.index.get_level_values(1) else None
    if ref is not None:
        keys = list(zip(wide.index.get_level_values(0), wide.index.get_level_values(2), strict=True))
        wide["CE_norm"] = wide["CE"].to_numpy() / ref.reindex(keys).to_numpy() * 100
    table = wide.reset_index()
    numeric = [c for c in table.columns if c not in ("split", "strategy", "corruption")]
    # the same mean rows as robustness_scores: the ImageNet-C one's CE_norm is Hendrycks' mCE
    summary = _group_means(table, ["split", "strategy"], "corruption", MEAN_ROWS, numeric)
    out = pd.concat([table, summary[table.columns]], ignore_index=True)
    rank = out["strategy"].map(order)
    return out.assign(_rank=rank).sort_values(["split", "_rank"], kind="stable").drop(columns="_rank").reset_index(
        drop=True)


def robust_per_container(summaries: list[dict[str, Any]], order: Sequence[str] = ()) -> pd.DataFrame:
    """Accuracy (%) per container: clean (on the attack subset) and per threat (in ``order``)."""
    rows = []
    for s in summaries:
        for name, t in [("clean", {"per_container": s["clean_per_container"]}), *s["threats"].items()]:
            for container, acc in t["per_container"].items():
                rows.append({"split": s["split"], "strategy": s["strategy"], "seed": s["seed"],
                             "container": container, "threat": name, "accuracy": 100 * acc})
    frame = pd.DataFrame(rows)
    rank = {name: i for i, name in enumerate(["clean", *order])}
    threats = sorted(dict.fromkeys(frame["threat"]), key=lambda t: rank.get(t, len(rank)))
    rows = sorted(dict.fromkeys(zip(frame["split"], frame["strategy"], frame["container"], strict=True)),
                  key=lambda r: r[0])
    wide = frame.pivot_table(index=["split", "strategy", "container"], columns="threat", values="accuracy",
                             aggfunc="mean")
    return wide.reindex(pd.MultiIndex.from_tuples(rows, names=wide.index.names))[threats].reset_index()


SUITE_NAMES = {"cifar10_c": "CIFAR-10-C's strengths (32 px)", "imagenet_c": "ImageNet-C's strengths (224 px)"}


def suite_note(params: dict[str, Any]) -> str:
    """Caption words naming the strengths of the 15 common corruptions (``params['suite']``)."""
    suite = params.get("suite")
    return f"; the 15 common corruptions at {SUITE_NAMES[suite]}" if suite in SUITE_NAMES else ""


def images_note(summaries: list[dict[str, Any]]) -> str:
    """Caption words giving how many test images per model each attack was measured on."""
    sizes: dict[int, list[str]] = {}
    for name, n in {name: t["n"] for s in summaries for name, t in s["threats"].items() if "n" in t}.items():
        sizes.setdefault(n, []).append(name)
    if not sizes:
        return ""
    common = max(sizes, key=lambda n: len(sizes[n]))
    others = "; ".join(f"{', '.join(names)} on {n}" for n, names in sorted(sizes.items(), reverse=True) if n != common)
    return f"; attacks on {common} test images per model" + (f" ({others})" if others else "")


def write_robustness_tables(threat_paths: Sequence[str], corruption_paths: Sequence[str],
                            params: dict[str, Any], tables: str, figures: str) -> list[str]:
    """Write the three tables and their figures; returns the written prefixes."""
    decimals = params["decimals"]
    threat_summaries, corruption_summaries = read_summaries(threat_paths), read_summaries(corruption_paths)
    threats, corruptions = threat_rows(threat_summaries), corruption_rows(corruption_summaries)
    order = [*params.get("threats", []), *params.get("corruptions", []), *MEAN_ROWS]
    scores = robustness_scores(threats, corruptions, order, params.get("corruption_images"))
    write_table(scores, f"{tables}/robustness_scores", decimals,
                caption="Clean accuracy (%) and robustness score R = A_perturbed / A_clean "
                        "(M-TLAT Table 1 layout; corruptions: mean over severities; 'mean ImageNet-C' "
                        "over the 15 ImageNet-C corruptions, 'mean M-TLAT' over M-TLAT's four); 'median "
                        "norm': a minimal attack's median perturbation (DeepFool, CW-l2: l2 in [0, 1] pixel "
                        "units; SparseFool: pixels changed) over the images it fooled, where its R says only "
                        "whether it succeeded; images: test images per model and split" + suite_note(params))
    bounded, norms = figure_frames(threats, order, params.get("threat_attacks"))
    grouped_bars(bounded, "split", "perturbation", hue="strategy",
                 value="value", path=f"{figures}/robustness_scores.png",
                 ylabel="R = A_perturbed / A_clean", xlabel="attack with a perturbation budget")
    grouped_bars(norms, "panel", "split", hue="strategy", value="value",
                 path=f"{figures}/robustness_median_norms.png", facets=list(dict.fromkeys(norms["panel"])),
                 sharey=False, ylabel="median norm over the images fooled", xlabel="split",
                 empty="no image fooled" if len(norms) else "no minimal attack in evaluate.threats")
    severity = corruption_severity(corruptions, params["reference"])
    write_table(severity, f"{tables}/corruption_severity", decimals,
                caption="Accuracy (%) per corruption and severity, corruption error CE (%) and CE "
                        f"normalised by {params['reference']} (thesis Tables B.3/B.4 layout); 'mean ImageNet-C' "
                        "over the 15 ImageNet-C corruptions only (its CE_norm is Hendrycks' mCE), 'mean M-TLAT' "
                        "over M-TLAT's four" + suite_note(params))
    by_severity = corruptions.groupby(["split", "severity", "strategy"], sort=False)["accuracy"].mean()
    count = corruptions["corruption"].nunique()
    grouped_bars(by_severity.reset_index().astype({"severity": str}), "split", "severity", hue="strategy",
                 value="accuracy", path=f"{figures}/corruption_severity.png",
                 ylabel=f"accuracy (%), mean over all {count} corruptions", xlabel="corruption severity")
    per_container = robust_per_container(threat_summaries, params.get("threats", []))
    write_table(per_container, f"{tables}/robust_per_container", decimals,
                caption="Accuracy (%) per test container under each threat; clean: on the attacked subset, "
                        "so not the whole-test-set accuracy of filling_per_container; a container holds its "
                        "share of the images" + images_note(threat_summaries))
    return [f"{tables}/{name}" for name in ("robustness_scores", "corruption_severity", "robust_per_container")]
