"""PRIME sweep ids, the Tab. 5.1 strategies and the ``prime`` parameters."""

from __future__ import annotations

import copy

import pytest

from fillrobust.config import (
    PRIME_PRIMITIVES,
    ConfigError,
    prime_member,
    prime_sweeps,
    strategy_params,
)
from tests.unit.test_config import fails


def test_primitives_match_the_augmentation():
    from fillrobust.augment.prime import PRIMITIVES

    assert PRIME_PRIMITIVES == PRIMITIVES


def test_sweep_tokens_resolve(params):
    p = strategy_params(params, "DA-PRIME_e5_m1_b1-1_no-spectral_no-color")
    assert p["epochs"] == 5
    assert p["augment"]["params"] == {"width": 3, "depth": 1, "mix_a": 1.0, "mix_b": 1.0,
                                      "primitives": ["spatial"]}
    assert p["keep"] == "best_val" and p["lr"] == 0.05  # the rest is DA-PRIME's
    # the base strategy is untouched
    assert strategy_params(params, "DA-PRIME")["augment"]["params"]["depth"] == 3
    assert strategy_params(params, "ST_e3")["epochs"] == 3  # epochs work for any strategy
    at = strategy_params(params, "AT-DA-PRIME_m2")
    assert at["init"] == "source" and at["augment"]["params"]["depth"] == 2


@pytest.mark.parametrize(("strategy", "needle"), [
    ("DA-PRIME_m3", "use 'DA-PRIME'"),                       # changes nothing
    ("DA-PRIME_b1-1_m2", "use 'DA-PRIME_m2_b1-1'"),          # order
    ("DA-PRIME_no-color_no-spectral", "use 'DA-PRIME_no-spectral_no-color'"),
    ("DA-PRIME_m2_m2", "not canonical"),
    ("ST_m2", "need a PRIME strategy"),
    ("DA-PRIME_no-blur", "expected a primitive"),
    ("DA-PRIME_b0-1", "must be > 0"),
    ("DA-PRIME_b1.2.3-1", "bad Beta"),
    ("DA-PRIME_no-spectral_no-spatial_no-color", "drops every"),
    ("DA-PRIME_x2", "unknown suffix"),
])
def test_bad_sweep_ids(params, strategy, needle):
    with pytest.raises(ConfigError) as err:
        strategy_params(params, strategy)
    assert needle in str(err.value)


def test_prime_member_is_canonical_and_shared(params):
    assert prime_member(params, "DA-PRIME") == "DA-PRIME"
    assert prime_member(params, "DA-PRIME", epochs=17, depth=3, mix=(5, 1)) == "DA-PRIME"  # all defaults
    assert prime_member(params, "DA-PRIME", epochs=10, depth=3, mix=(5, 1)) == "DA-PRIME_e10"
    assert prime_member(params, "DA-PRIME", epochs=5, depth=3, mix=[1, 1]) == "DA-PRIME_e5_b1-1"
    assert prime_member(params, "DA-PRIME", mix=(0.5, 2)) == "DA-PRIME_b0.5-2"
    assert prime_member(params, "DA-PRIME", drop=["color", "spectral"]) == "DA-PRIME_no-spectral_no-color"


def test_default_sweeps(params):
    rows = prime_sweeps(params)
    assert [r["sweep"] for r in rows] == ["depth"] * 2 + ["beta"] * 2 + ["ablation"] * 4
    assert [r["m"] for r in rows if r["sweep"] == "depth"] == [1, 3]
    assert all((r["a"], r["b"]) == (1, 1) for r in rows if r["sweep"] == "depth")  # Tab. 5.7: p uniform
    assert [r["dropped"] for r in rows if r["sweep"] == "ablation"] == ["none", "spectral", "spatial", "color"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    # epochs: null = DA-PRIME's own 17, so the full setting (m=3, Beta(5,1)) is DA-PRIME
    # itself; equal settings share a model: m=3 with Beta(1,1) is the beta grid's (1,1)
    assert params["prime"]["sweep"]["epochs"] is None
    assert models == ["DA-PRIME_m1_b1-1", "DA-PRIME_b1-1", "DA-PRIME",
                      "DA-PRIME_no-spectral", "DA-PRIME_no-spatial", "DA-PRIME_no-color"]
    assert all(strategy_params(params, m)["epochs"] == 17 for m in models)


def test_sweep_with_its_own_epochs_names_them_in_every_member(params):
    params = copy.deepcopy(params)
    params["prime"]["sweep"]["epochs"] = 10   # params/half_width.yaml's
    models = list(dict.fromkeys(r["model"] for r in prime_sweeps(params)))
    # every member names its epochs and the full setting is a member of its own, not DA-PRIME
    assert models == ["DA-PRIME_e10_m1_b1-1", "DA-PRIME_e10_b1-1", "DA-PRIME_e10",
                      "DA-PRIME_e10_no-spectral", "DA-PRIME_e10_no-spatial", "DA-PRIME_e10_no-color"]
    assert strategy_params(params, "DA-PRIME")["epochs"] == 17
    assert all(strategy_params(params, m)["epochs"] == 10 for m in models)


def test_baseline_strategies(params):
    assert strategy_params(params, "LP")["preprocess"] == "lowpass"
    assert strategy_params(params, "GRAY")["preprocess"] == "gray"
    assert strategy_params(params, "AUGMIX")["augment"] == {"name": "augmix"}
    mixed = strategy_params(params, "AUGMIX-LP")
    assert mixed["preprocess"] == "lowpass" and mixed["augment"]["name"] == "augmix"
    # Thesis 5.2.1: trained on filtered images, tested on standard RGB images.
    assert {strategy_params(params, s)["preprocess_at"] for s in ("LP", "GRAY", "AUGMIX-LP")} == {"train"}
    fails(params, lambda p: p["train"]["strategies"]["LP"].update(preprocess_at="inside"),
          "train.strategies.LP.preprocess_at")


def test_prime_cross_checks(params):
    fails(params, lambda p: p["prime"]["sweep"].update(strategy="ST"),
           "prime.sweep.strategy: ST has no PRIME augmentation")
    fails(params, lambda p: p["prime"]["baselines"]["strategies"].append("AT-DA-PRIME") or
           p["train"]["strategies"].pop("AT-DA-PRIME"),
           "prime.baselines.strategies: AT-DA-PRIME is not defined in train.strategies",
           "prime.strategies: AT-DA-PRIME is not defined in train.strategies")
    fails(params, lambda p: p["prime"]["sweep"].update(splits=["S9"]),
           "prime.sweep.splits: S9 is not defined in splits.membership")
    fails(params, lambda p: p["prime"]["sweep"].update(ablation=[["spectral", "spatial", "color"]]),
           "prime.sweep.ablation[0]: drops every primitive")


def test_baselines_may_run_on_synthsource(params):
    """Tab. 5.1 is on CIFAR-10: SynthSource, its stand-in, is a valid baselines split
    (with source.kind synth); an unknown split and an imported source are named."""
    from fillrobust.config import validate

    ok = copy.deepcopy(params)
    ok["prime"]["baselines"]["splits"] = ["S1", "SynthSource"]
    validate(ok)
    fails(params, lambda p: p["prime"]["baselines"].update(splits=["S9"]),
          "prime.baselines.splits: S9 is neither in splits.membership")
    fails(params, lambda p: p["prime"]["baselines"].update(splits=["SynthSource"]) or
          p["source"].update(kind="import"),
          "prime.baselines.splits: SynthSource needs source.kind synth")


def test_best_val_without_a_validation_set_is_rejected(params):
    # The paper profile has no carve-out (splits.val_fraction 0): keep: best_val
    # on it would silently keep the last epoch; the error names both keys.
    fails(params, lambda p: p["splits"].update(val_fraction=0),
          "train.strategies.DA-PRIME.keep: best_val", "splits.val_fraction is 0")
    from fillrobust.config import validate

    ok = __import__("copy").deepcopy(params)
    ok["splits"]["val_fraction"] = 0
    for name in ("DA-PRIME", "AT-DA-PRIME"):
        ok["train"]["strategies"][name]["val_source"] = "test"
    validate(ok)
    fails(params, lambda p: p["train"]["strategies"]["DA-PRIME"].update(val_source="train"),
          "train.strategies.DA-PRIME.val_source")


def test_paper_profile_follows_the_thesis_selection(root):
    from fillrobust.config import load_params, validate

    paper = validate(load_params(root / "params.yaml", root / "params" / "paper.yaml"))
    assert paper["splits"]["val_fraction"] == 0
    for name in ("DA-PRIME", "AT-DA-PRIME"):
        resolved = strategy_params(paper, name)
        assert resolved["keep"] == "best_val" and resolved["val_source"] == "test"


def test_prime_schema_errors(params):
    fails(params, lambda p: p["prime"]["sheets"].update(spectral_kernels=[4]),
           "prime.sheets.spectral_kernels.0")
    fails(params, lambda p: p["prime"]["sweep"]["beta"].update(values=[[5, 0]]),
           "prime.sweep.beta.values.0.1")
    fails(params, lambda p: p["prime"]["sweep"].update(epoch=3), "unknown key prime.sweep.epoch")
    fails(params, lambda p: p["train"]["strategies"]["LP"].update(preprocess="blur"),
           "train.strategies.LP.preprocess")
    fails(params, lambda p: p["prime"]["sweep"].update(ablation=[["blur"]]), "prime.sweep.ablation.0.0")


def test_val_source_test_selects_on_the_test_containers(tiny_ccm, tmp_path):
    # val_fraction 0 (the papers): no carve-out; val_source test hands the
    # split's test containers to keep: best_val, as thesis 5.5.4.
    import numpy as np

    from fillrobust.data.splits import indices, make_split
    from fillrobust.data.store import read_dataset
    from fillrobust.train.run import load_train_data

    crops = tiny_ccm / "crops"
    split = make_split(read_dataset(crops).manifest, ["red_cup", "beer_cup", "green_glass", "wine_glass"],
                       ["champagne_flute", "cocktail_glass"], 0.0, 0, "S1")
    split.to_parquet(tmp_path / "S1.parquet", index=False)
    carve_out, _, _ = load_train_data(str(crops), str(tmp_path / "S1.parquet"))
    assert len(carve_out.val_idx) == 0 and len(carve_out.train_idx) > 0
    on_test, _, _ = load_train_data(str(crops), str(tmp_path / "S1.parquet"), "test")
    assert len(on_test.val_idx) > 0
    assert np.array_equal(np.sort(on_test.val_idx), np.sort(indices(split, "test")))


def test_prime_strategies_use_the_thesis_per_split_bests(params):
    # Thesis 5.5.3: depth m 3 / 1 / 3 and Beta(5,1) / Beta(5,1) / Beta(6,2) on S1 / S2 / S3.
    expected = {"S1": (3, 5.0, 1.0), "S2": (1, 5.0, 1.0), "S3": (3, 6.0, 2.0)}
    for name in ("DA-PRIME", "AT-DA-PRIME"):
        for split, (m, a, b) in expected.items():
            resolved = strategy_params(params, name, split)
            aug = resolved["augment"]["params"]
            assert (aug["depth"], aug["mix_a"], aug["mix_b"]) == (m, a, b), (name, split)
            assert "per_split" not in resolved  # a job sees only its own split's slice
        assert "per_split" not in strategy_params(params, name)


def test_per_split_slice_changes_only_its_split(params):
    import copy

    changed = copy.deepcopy(params)
    changed["train"]["strategies"]["DA-PRIME"]["per_split"]["S1"]["augment"]["params"]["depth"] = 2
    assert strategy_params(changed, "DA-PRIME", "S1") != strategy_params(params, "DA-PRIME", "S1")
    for split in ("S2", "S3"):
        assert strategy_params(changed, "DA-PRIME", split) == strategy_params(params, "DA-PRIME", split)
    # Sweep ids name their own settings: no per-split slice under them.
    member = "DA-PRIME_e5_b1-1"
    assert strategy_params(params, member, "S2")["augment"]["params"]["depth"] == 3


def test_per_split_slices_are_checked(params):
    fails(params, lambda p: p["train"]["strategies"]["DA-PRIME"]["per_split"].update(S9={"lr": 0.1}),
          "train.strategies.DA-PRIME.per_split.S9: S9 is not defined in splits.membership")
    fails(params, lambda p: p["train"]["strategies"]["DA-PRIME"]["per_split"]["S2"].update(lr=-1),
          "train.strategies.DA-PRIME.per_split.S2.lr")
    fails(params, lambda p: p["train"]["strategies"]["DA-PRIME"]["per_split"]["S2"].update(
        per_split={}), "per_split cannot be nested")
