"""PRIME tables (sweeps, baselines) from evaluation summaries, and the contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fillrobust.report import prime
from fillrobust.report.tables import write_table


def _summary(root: Path, split: str, model: str, seed: int, accuracy: float, kind: str = "clean",
             **extra) -> None:
    path = prime.summary_path(root, split, model, seed, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accuracy": accuracy, "val_accuracy": 0.9, "train_accuracy": 0.95, **extra}))


def _row(sweep: str, model: str, m: int, a: float, primitives: str = "spectral+spatial+color",
         dropped: str = "none") -> dict:
    """One sweep member as config.prime_sweeps lists it (b = 1 in all of ours)."""
    return {"sweep": sweep, "model": model, "m": m, "a": a, "b": 1.0, "primitives": primitives, "dropped": dropped}


ROWS = [
    _row("depth", "DA-PRIME_e5_m1_b1-1", 1, 1.0),
    _row("depth", "DA-PRIME_e5_b1-1", 3, 1.0),
    _row("beta", "DA-PRIME_e5", 3, 5.0),
    _row("beta", "DA-PRIME_e5_b1-1", 3, 1.0),
    _row("ablation", "DA-PRIME_e5", 3, 5.0),
    _row("ablation", "DA-PRIME_e5_no-spatial", 3, 5.0, "spectral+color", "spatial"),
]


@pytest.fixture
def eval_root(tmp_path) -> Path:
    for seed in (0, 1):
        for i, model in enumerate(dict.fromkeys(r["model"] for r in ROWS)):
            _summary(tmp_path, "S1", model, seed, 0.5 + 0.1 * i + 0.01 * seed)
    return tmp_path


def test_depth_table_with_seed_means_and_paper(eval_root):
    table = prime.sweep_table(ROWS, "depth", ["S1"], [0, 1], eval_root)
    assert list(table.columns[:6]) == ["split", "m", "a", "b", "model", "seed"]
    means = table[table["seed"] == "mean"].set_index("m")
    assert means.loc[1, "accuracy"] == pytest.approx(50.5) and means.loc[3, "accuracy"] == pytest.approx(60.5)
    assert means.loc[1, "accuracy_std"] == pytest.approx(np.std([50, 51], ddof=1))
    assert set(table.loc[table["m"] == 3, "paper"]) == {84.93}  # thesis Tab. 5.7, S1, m=3
    assert len(table) == 6


def test_beta_and_ablation_tables(eval_root):
    beta = prime.sweep_table(ROWS, "beta", ["S1"], [0], eval_root)
    assert beta.set_index("a").loc[5.0, "paper"] == 86.73  # stated best cell, S1 Beta(5, 1) at m = 3
    assert np.isnan(beta.set_index("a").loc[1.0, "paper"])
    # S2's stated cell (75.66) is Beta(5, 1) at S2's best depth m = 1, not at m = 3.
    _summary(eval_root.parent / "s2", "S2", "DA-PRIME_e5", 0, 0.7)
    at_m3 = prime.sweep_table([{**ROWS[2], "model": "DA-PRIME_e5"}], "beta", ["S2"], [0], eval_root.parent / "s2")
    assert pd.isna(at_m3.loc[0, "paper"])
    at_m1 = prime.sweep_table([{**ROWS[2], "model": "DA-PRIME_e5", "m": 1}], "beta", ["S2"], [0],
                              eval_root.parent / "s2")
    assert at_m1.loc[0, "paper"] == 75.66
    ablation = prime.sweep_table(ROWS, "ablation", ["S1"], [0], eval_root)
    row = ablation.set_index("dropped").loc["spatial"]
    assert row["primitives"] == "spectral+color" and row["paper_in100_c"] == 67.5
    assert list(prime.setting_label(ablation, "ablation")) == ["full", "no spatial"]


def test_missing_summary_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="DA-PRIME_e5_m1_b1-1/seed0/clean/summary.json"):
        prime.sweep_table(ROWS, "depth", ["S1"], [0], tmp_path)
    with pytest.raises(ValueError, match="sweep"):
        prime.sweep_table(ROWS, "width", ["S1"], [0], tmp_path)


def test_baselines_corruption_column_is_optional(tmp_path):
    strategies = ["ST", "LP", "AUGMIX"]
    for i, s in enumerate(strategies):
        _summary(tmp_path, "S1", s, 0, 0.6 + 0.1 * i)
    _summary(tmp_path, "S1", "LP", 0, 0.42, kind="corruptions", per_corruption={"fog": 0.4})
    table = prime.baselines_table(strategies, ["S1"], [0], tmp_path, corruptions=True)
    assert list(table["strategy"]) == strategies  # in the configured order
    corr = table.set_index("strategy")["corruption_accuracy"]
    assert corr["LP"] == pytest.approx(42.0) and corr[["ST", "AUGMIX"]].isna().all()
    assert table.set_index("strategy").loc["LP", "paper_c10_corruption"] == 79.8
    off = prime.baselines_table(strategies, ["S1"], [0], tmp_path, corruptions=False)
    assert off["corruption_accuracy"].isna().all()


def test_baselines_paper_columns_are_table_5_1_only(tmp_path):
    # Tab. 5.1 (30 epochs, no JSD) has no PRIME column; Tab. 5.2's PRIME (94.2 / 89.8)
    # used to be shown beside DA-PRIME.
    for s in ("ST", "DA-PRIME"):
        _summary(tmp_path, "S1", s, 0, 0.5)
    table = prime.baselines_table(["ST", "DA-PRIME"], ["S1"], [0], tmp_path, corruptions=False).set_index("strategy")
    assert (table.loc["ST", "paper_c10_clean"], table.loc["ST", "paper_c10_corruption"]) == (94.4, 72.5)
    assert pd.isna(table.loc["DA-PRIME", "paper_c10_clean"]) and pd.isna(table.loc["DA-PRIME", "paper_c10_corruption"])


def test_baselines_table_names_where_the_preprocessing_applies(tmp_path):
    for s in ("ST", "LP"):
        _summary(tmp_path, "S1", s, 0, 0.5)
    labels = {"ST": "none", "LP": "lowpass (train only)"}
    table = prime.baselines_table(["ST", "LP"], ["S1"], [0], tmp_path, False, labels)
    assert list(table.columns[:3]) == ["split", "strategy", "preprocess"]
    assert list(table["preprocess"]) == ["none", "lowpass (train only)"]


def test_ablation_figure_does_not_plot_imagenet_numbers(eval_root):
    ablation = prime.sweep_table(ROWS, "ablation", ["S1"], [0], eval_root)
    assert ablation["paper_in100_c"].notna().any()  # kept in the table
    assert prime.paper_markers(ablation, "ablation") is None
    depth = prime.sweep_table(ROWS, "depth", ["S1"], [0], eval_root)
    assert list(prime.paper_markers(depth, "depth").dropna()) == [82.69, 84.93]  # Tab. 5.7, S1, m = 1, 3


def test_tables_and_figures_are_deterministic(eval_root, tmp_path):
    table = prime.sweep_table(ROWS, "depth", ["S1"], [0, 1], eval_root)
    outputs = []
    for run in ("a", "b"):
        write_table(table, tmp_path / run / "prime_depth", 2)
        prime.sweep_figure(table, "depth", tmp_path / run / "prime_depth.png")
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / run).iterdir()})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4
    assert pd.read_csv(tmp_path / "a" / "prime_depth.csv")["accuracy"].notna().all()


def test_contact_sheets(tmp_path):
    from fillrobust.data.store import write_dataset
    from fillrobust.report.prime_sheets import pick_images, primitive_rows, write_prime_sheets

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    manifest = pd.DataFrame({"index": np.arange(6), "label": 0,
                             "container": ["wine_glass", "red_cup", "red_cup", "beer_cup", "wine_glass", "x"]})
    data = write_dataset(tmp_path / "ccm", images, manifest, {"name": "t", "classes": ["a"]})
    picked, containers = pick_images(data, 2)
    assert containers == ["beer_cup", "red_cup"] and np.array_equal(picked, images[[3, 1]])

    sheet = {"images": 2, "seed": 0, "strengths": [0.5, 1.0], "spectral_kernels": [3, 5],
             "spatial_cuts": [2, 10], "color_cuts": [4]}
    first = write_prime_sheets(data, {"depth": 2}, sheet, tmp_path / "a")
    write_prime_sheets(data, {"depth": 2}, sheet, tmp_path / "b")
    assert [p.name for p in first] == ["spectral.png", "spatial.png", "color.png", "prime.png"]
    for p in first:
        assert p.read_bytes()[:4] == b"\x89PNG"
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()

    # zero strength is the identity (spatial: 0 is the lowest temperature T1, not zero);
    # the spatial warp keeps the border
    import torch

    x = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255
    for primitive, levels in (("spectral", [3]), ("color", [4])):
        rows = primitive_rows(x, primitive, levels, [0.0, 1.0], {}, seed=0)
        torch.testing.assert_close(rows[0][1], x, atol=1e-6, rtol=0)
        assert not torch.allclose(rows[0][2], x)
    warped = primitive_rows(x, "spatial", [10], [1.0], {}, seed=0)[0][1]
    torch.testing.assert_close(warped[..., 0, :], x[..., 0, :], atol=1e-5, rtol=0)
