"""Pipeline side of the frequency study: split mapping, cross-dataset, margins, energy, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fillrobust.cli import main
from fillrobust.data import derived, store
from fillrobust.data import frequency as fq
from fillrobust.evaluate import frequency_study as fs
from fillrobust.io.checkpoint import save_checkpoint
from fillrobust.models.resnet import build_model

CLASSES = ["0%", "50%", "90%", "unknown"]


@pytest.fixture()
def tiny_set(tmp_path):
    """12 random 16 px images, their lp_hp and flipped variants, and a split."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    manifest = pd.DataFrame({"index": np.arange(12), "label": np.arange(12) % 4,
                             "container": ["a", "b", "c"] * 4})
    store.write_dataset(tmp_path / "ccm", images, manifest, {"name": "tiny", "classes": CLASSES})
    fq.derive_dataset(tmp_path / "ccm", tmp_path / "lp_hp", "lp_hp")
    fq.derive_dataset(tmp_path / "ccm", tmp_path / "flipped", "flipped")
    split = pd.DataFrame({"index": np.arange(12), "role": ["train"] * 6 + ["val"] * 2 + ["test"] * 4})
    split.to_parquet(tmp_path / "S1.parquet", index=False)
    return tmp_path


def test_positions_map_split_roles_onto_stacked_rows(tiny_set) -> None:
    manifest = store.read_dataset(tiny_set / "lp_hp").manifest
    split = pd.read_parquet(tiny_set / "S1.parquet")
    test = derived.positions(manifest, split, "test")
    assert list(test) == [8, 9, 10, 11, 20, 21, 22, 23]
    assert list(derived.positions(manifest, split, "test", "highpass")) == [20, 21, 22, 23]
    mapped = derived.positional_split(manifest, split)
    assert len(mapped) == 24 and mapped["index"].is_unique
    assert mapped.groupby("role").size().to_dict() == {"train": 12, "val": 4, "test": 8}
    with pytest.raises(ValueError, match="variant"):
        derived.positions(split.assign(label=0), split, "test", "lowpass")


def test_sample_positions_is_seeded_sorted_subset() -> None:
    pos = np.arange(100, 200)
    a, b = derived.sample_positions(pos, 10, 3), derived.sample_positions(pos, 10, 3)
    assert (a == b).all() and (np.diff(a) > 0).all() and set(a) <= set(pos)
    assert list(derived.sample_positions(np.array([5, 1]), 10, 0)) == [1, 5]


def _checkpoint(path, seed=0) -> str:
    torch.manual_seed(seed)
    model = build_model("resnet18", len(CLASSES)).eval()
    save_checkpoint(model, path, {"architecture": "resnet18", "classes": CLASSES, "strategy": "ST",
                                  "seed": seed, "final_metrics": {}})
    return str(path)


def test_cross_dataset_table_shape_and_paper_columns(tiny_set) -> None:
    weights = _checkpoint(tiny_set / "m" / "model.safetensors")
    data = {"original": str(tiny_set / "ccm"), "flipped": str(tiny_set / "flipped"),
            "lp_hp": str(tiny_set / "lp_hp")}
    table = fs.cross_dataset([("S1", "original", weights), ("S1", "flipped", weights)], data,
                             {"S1": str(tiny_set / "S1.parquet")}, {"batch_size": 4}, "cpu", 1)
    assert list(table["trained_on"]) == ["original", "flipped"]
    assert {"original", "flipped", "lp_hp", "paper_original", "paper_flipped", "n_test"} <= set(table.columns)
    assert table[["original", "flipped", "lp_hp"]].apply(lambda c: c.between(0, 100)).all().all()
    assert table.loc[0, "paper_original"] == 90.05 and table.loc[1, "paper_flipped"] == 88.67
    assert np.isnan(table.loc[0, "paper_lp_hp"])


def _tiny_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, classes)).eval()


MARGIN_PARAMS = {"bases": ["dct", "random"], "block": 4, "stride": 4, "num_classes": 10,
                 "overshoot": 0.02, "max_iter": 50, "subspace_chunk": 0, "seed": 0}


def test_image_margins_long_frame_and_summary() -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    frame = fs.image_margins(_tiny_cnn(), x, MARGIN_PARAMS)
    assert len(frame) == 2 * 2 * 3  # bases x subspaces (8-4)/4+1 x images
    assert set(frame["basis"]) == {"dct", "random"} and (frame["margin"] > 0).all()
    frame = frame.assign(split="S1", model="ST", data="original", label=0, prediction=0)
    summary = fs.margin_summary_table([frame])
    assert len(summary) == 4 and (summary["n"] == 3).all() and (summary["accuracy"] == 100).all()
    assert (summary["p5"] <= summary["median"]).all() and (summary["median"] <= summary["p95"]).all()
    with pytest.raises(ValueError, match="square"):
        fs.image_margins(_tiny_cnn(), torch.rand(1, 3, 8, 6), MARGIN_PARAMS)
    with pytest.raises(ValueError, match="basis"):
        fs.subspace_family("wavelet", 8, 4, 4, 0)


def test_model_margins_writes_parquet_same_images_per_variant(tiny_set) -> None:
    weights = _checkpoint(tiny_set / "m" / "model.safetensors")
    out = tiny_set / "margins.parquet"
    params = dict(MARGIN_PARAMS, n_images=3, bases=["dct"], max_iter=5)
    data = {"original": str(tiny_set / "ccm"), "flipped": str(tiny_set / "flipped")}
    table = fs.model_margins(weights, "ST", data, str(tiny_set / "S1.parquet"), "S1", params, str(out), "cpu", 1)
    assert pd.read_parquet(out).equals(table)
    per_data = table.groupby("data")["index"].apply(lambda s: sorted(set(s)))
    assert per_data["original"] == per_data["flipped"] and set(per_data["original"]) <= {8, 9, 10, 11}


def test_block_energy_splits_the_norm_by_dct_block() -> None:
    from fillrobust.evaluate.margins import diagonal_blocks

    masks = diagonal_blocks(8, 4, 4)  # two disjoint blocks
    coeffs = torch.zeros(2, 3, 8, 8)
    coeffs[0, :, 0, 0], coeffs[1, 0, 5, 6] = 1.0, 2.0
    energy = fs.block_energy(fq.idct2(coeffs), masks)
    np.testing.assert_allclose(energy.numpy(), [[3 ** 0.5, 0.0], [0.0, 2.0]], atol=1e-5)


def test_energy_eps_is_a_32px_eps_not_scaled_by_train_eps_scale() -> None:
    # Fig. 4.12's eps = 1 is given at 32 px (CIFAR-10): used as is on 32-px
    # crops (the old rule multiplied it by train.eps_scale = 0.1429).
    assert fs.energy_eps(1.0, 32) == 1.0
    assert fs.energy_eps(1.0, 224) == pytest.approx(7.0)
    assert fs.energy_eps(0.5, 16) == pytest.approx(0.25)


def _synthetic_params() -> dict:
    return {"models": ["logreg"], "n_train": 100, "n_test": 20, "epochs": 1, "dim": 10, "eps": 5.0,
            "sigma": 1.0, "margin": {"num_classes": 2, "max_iter": 20},
            "transition": {"eps_values": [0.0, 2.0], "n_train": 50, "rho": 20.0, "K": 3, "model": "logreg"}}


def test_synthetic_config_maps_params_and_transition() -> None:
    params = _synthetic_params()
    cfg = fs.synthetic_config(params, model="logreg")
    assert cfg.n_train == 100 and cfg.dim == 10 and cfg.margin.max_iter == 20 and cfg.model == "logreg"
    table = fs.synthetic_table(params)
    assert list(table["subspace"]) == ["u1", "span(u1)perp", "S_orth", "S_rand"]
    assert list(table.columns[:11]) == ["model", "subspace", "p5", "paper_p5", "median", "paper_median",
                                        "p95", "paper_p95", "exact_p5", "exact_median", "exact_p95"]
    sweep = fs.synthetic_transition(params)
    assert list(sweep["eps"]) == [0.0, 2.0] and {"median_u1", "median_u2", "test_acc"} <= set(sweep.columns)


def test_transition_parts_join_to_the_whole_sweep(tmp_path) -> None:
    """The workflow runs one eps per job (synthetic_transition_eps) and joins the parts:
    the same table, written to the same bytes, as one call over every eps."""
    from fillrobust.data.store import write_parquet

    params = _synthetic_params()
    whole, parts = fs.synthetic_transition(params), []
    for eps in (0.0, 2.0):
        one = dict(params, transition=dict(params["transition"], eps_values=[eps]))
        parts.append(tmp_path / f"eps{eps:g}.parquet")
        write_parquet(parts[-1], fs.synthetic_transition(one))
    pd.testing.assert_frame_equal(fs.join_transition([str(p) for p in parts]), whole)
    assert main(["synthetic-transition", "--parts", *map(str, parts), "--out", str(tmp_path / "joined.parquet")]) == 0
    write_parquet(tmp_path / "whole.parquet", whole)
    assert (tmp_path / "joined.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_transition_overrides_are_checked_and_reach_training(root, monkeypatch) -> None:
    """T2's ``transition`` init / momentum override the shared settings (He init for T2 only)."""
    from fillrobust.config import ConfigError, load_params, validate
    from fillrobust.evaluate import synthetic_margins as sm

    params = load_params(root / "params.yaml")
    assert params["synthetic"]["transition"]["init"] == "kaiming" and params["synthetic"]["init"] == "torch"
    for key, bad in (("momentum", 1.0), ("init", "xavier")):
        wrong = load_params(root / "params.yaml")
        wrong["synthetic"]["transition"][key] = bad
        with pytest.raises(ConfigError, match=f"synthetic.transition.{key}"):
            validate(wrong)
    seen = []

    def fit(data, cfg):
        seen.append((cfg.momentum, cfg.init))
        return nn.Linear(cfg.dim, 2), 0.5

    monkeypatch.setattr(sm, "_fit", fit)
    small = {"models": ["logreg"], "n_train": 20, "n_test": 10, "epochs": 1, "dim": 6, "eps": 5.0, "sigma": 1.0,
             "momentum": 0.0, "init": "torch", "margin": {"num_classes": 2, "max_iter": 5},
             "transition": {"eps_values": [0.0], "momentum": 0.9, "init": "kaiming", "model": "logreg"}}
    fs.synthetic_transition(small)
    assert seen == [(0.9, "kaiming")]


def test_cli_synthetic_tables_and_derive_write_outputs_deterministically(tiny_set, tmp_path) -> None:
    params = {"models": ["logreg"], "n_train": 60, "n_test": 10, "epochs": 1, "dim": 8, "eps": 5.0,
              "sigma": 1.0, "transition": {"eps_values": [0.0]}}
    for name in ("a", "b"):
        out = tmp_path / name / "synthetic_margins.parquet"
        assert main(["synthetic-margins", "--params", json.dumps(params), "--out", str(out)]) == 0
        assert main(["tables-frequency", "--params", '{"decimals": 2}', "--results", str(out),
                     "--tables", str(tmp_path / name), "--figures", str(tmp_path / name)]) == 0
    a, b = (tmp_path / n / "synthetic_margins.csv" for n in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert "paper_median" in (tmp_path / "a" / "synthetic_margins.md").read_text()
    bad = tmp_path / "a" / "unknown.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    assert main(["tables-frequency", "--params", '{"decimals": 2}', "--results", str(bad),
                 "--tables", str(tmp_path), "--figures", str(tmp_path)]) == 2
    out = tmp_path / "gray"
    assert main(["derive-variant", "--dataset", str(tiny_set / "ccm"), "--variant", "grayscale",
                 "--params", "{}", "--out", str(out)]) == 0
    assert store.read_dataset(out, verify=True).meta["variant"] == "grayscale"
    assert main(["derive-variant", "--dataset", str(tiny_set / "ccm"), "--variant", "sepia",
                 "--params", "{}", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_figures_are_png_and_byte_identical(tmp_path) -> None:
    from fillrobust.report import frequency as fig

    summary = pd.DataFrame({"split": "S1", "model": ["ST"] * 3, "data": "original", "basis": "dct",
                            "subspace": [0, 1, 2], "p5": [1.0, 2, 3], "median": [2.0, 3, 4],
                            "p95": [3.0, 4, 5], "accuracy": 50.0})
    for name in ("a", "b"):
        fig.margin_panels(summary, "dct", tmp_path / f"{name}.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    fig.margin_panels(summary, "random", tmp_path / "empty.png")  # no rows: still a figure
    fig.median_lines(summary, "dct", "original", tmp_path / "m.png")
    forget = pd.DataFrame({"phase": [1, 1], "trained_on": "LP+HP", "subspace": [0, 1],
                           "median_margin": [1.0, 2.0], "lp_accuracy": 50.0, "hp_accuracy": 25.0})
    fig.forgetting_figure(forget, tmp_path / "f.png")
    energy = pd.DataFrame({"epoch": [1, 1, 2, 2], "subspace": [0, 1, 0, 1], "p95_norm": [0.1, 0.01, 0.2, 0.02]})
    fig.energy_figure(energy, tmp_path / "e.png")
    sweep = pd.DataFrame({"eps": [0.0, 1.0], "median_u1": [10.0, 1.0], "median_u2": [1.0, 10.0],
                          "test_acc": [0.9, 1.0]})
    fig.transition_figure(sweep, tmp_path / "t.png")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("empty", "m", "f", "e", "t"))


def test_shared_first_step_matches_per_sample_deepfool() -> None:
    from fillrobust.evaluate import margins as mg

    model, x = _tiny_cnn(), torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1).detach()
    subs = mg.DCTSubspaces(mg.diagonal_blocks(8, 4, 2))
    idx = torch.arange(len(subs)).repeat_interleave(3)
    image = torch.arange(3).repeat(len(subs))
    p = mg.MarginParams(max_iter=30)
    shared, found = mg.subspace_deepfool(model, x, y, subs, idx, p, image)
    alone, found_alone = mg.subspace_deepfool(model, x[image], y[image], subs, idx, p)
    torch.testing.assert_close(shared, alone, rtol=1e-4, atol=1e-6)
    assert torch.equal(found, found_alone) and found.any()


@pytest.mark.parametrize(("override", "message"), [
    ({"margins": {"variant_models": ["highpass"]}}, "margins.variant_models"),
    ({"frequency": {"splits": ["S9"]}}, "frequency.splits"),
    ({"frequency": {"variants": ["flipped"], "train_variants": ["original"]}}, "lp_hp"),
    ({"margins": {"data": ["lowpass"]}, "frequency": {"variants": ["flipped", "lp_hp"]}}, "margins.data"),
    ({"margins": {"bases": ["wavelet"]}}, "margins.bases"),
])
def test_frequency_parameters_are_cross_checked(root, override, message) -> None:
    from fillrobust.config import ConfigError, deep_merge, load_params, validate

    config = deep_merge(load_params(root / "params.yaml"), override)
    if "variants" in override.get("frequency", {}):
        config["margins"]["variant_models"] = []
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_majority_share_is_the_constant_predictor_accuracy():
    from fillrobust.evaluate.frequency_study import majority_share

    assert majority_share(np.array([0, 1, 1, 2, 1])) == pytest.approx(60.0)
    assert majority_share(np.array([3, 3])) == 100.0
