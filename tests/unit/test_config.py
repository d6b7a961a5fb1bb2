"""Parameter validation: every error names the key and what is expected."""

import copy
import subprocess
import sys

import pytest

from fillrobust.config import ConfigError, load_params, strategy_params, validate


def fails(params, mutate, *needles):
    """Validation of ``params`` changed by ``mutate`` fails, naming every needle."""
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate(bad)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_shipped_profiles_are_valid(root, params):
    validate(params)
    validate(load_params(root / "params.yaml", root / "tests" / "data" / "tiny.yaml"))
    profiles = sorted((root / "params").glob("*.yaml"))
    assert {p.name for p in profiles} >= {"paper.yaml", "synthsource.yaml", "synthetic_paper.yaml", "seeds3.yaml"}
    for profile in profiles:
        validate(load_params(root / "params.yaml", profile))


def test_unknown_key(params):
    fails(params, lambda p: p["train"]["strategies"]["ST"].update(lrr=0.1),
           "unknown key train.strategies.ST.lrr", "expected one of", "lr")
    fails(params, lambda p: p.update(trian={}), "unknown key trian")


def test_wrong_type_and_range(params):
    fails(params, lambda p: p["data"]["crop"].update(size="big"), "data.crop.size", "integer")
    fails(params, lambda p: p["train"]["strategies"]["ST"].update(lr=-0.1), "train.strategies.ST.lr", "minimum")
    fails(params, lambda p: p["splits"].update(val_fraction=1.5), "splits.val_fraction")
    fails(params, lambda p: p.update(device="tpu"), "device", "cpu")
    fails(params, lambda p: p["train"]["strategies"].update(x_y={"init": "scratch", "lr": 0.1}),
           "train.strategies", "'x_y' does not match", "[A-Z]")


def test_cross_key_rules(params):
    fails(params, lambda p: p["splits"]["membership"]["S1"]["test"].append("red_cup"),
           "splits.membership.S1", "both train and test")
    fails(params, lambda p: p["study"].update(strategies=["ST", "XX"]), "study.strategies", "XX")
    fails(params, lambda p: p["sensitivity"]["eps_source"].update(strategy="XX"),
          "sensitivity.eps_source.strategy: XX is not defined in train.strategies")
    fails(params, lambda p: p["study"].update(splits=["S9"]), "study.splits", "S9")
    fails(params, lambda p: p["sensitivity"]["frozen_layers"].update(splits=["S1", "S4"]),
          "sensitivity.frozen_layers.splits", "S4", "not in study.splits")


def test_synthsource_split_rules(root):
    """SynthSource may be an M-TLAT / Top-GAP split, only with SynthSource and no eps_s selection."""
    params = load_params(root / "params.yaml", root / "params" / "synthsource.yaml")
    assert "SynthSource" in params["mtlat"]["splits"] and "SynthSource" in params["topgap"]["splits"]
    fails(params, lambda p: p["source"].update(kind="import"), "mtlat.splits: SynthSource needs source.kind synth",
          "topgap.splits: SynthSource needs source.kind synth")
    fails(params, lambda p: p["topgap"].update(compare=["ST", "AT-FT"]),
          "topgap.splits: AT-FT cannot be trained on SynthSource", "eps_s selection")
    fails(params, lambda p: p["mtlat"].update(splits=["S1", "Synth"]), "mtlat.splits")
    fails(params, lambda p: p["study"].update(splits=["S1", "SynthSource"]), "study.splits")
    # the forgetting experiment runs on SynthSource by default: a C-CCM split, or SynthSource with SynthSource
    forget = lambda splits: lambda p: p["frequency"]["forgetting"].update(splits=splits)  # noqa: E731
    assert params["frequency"]["forgetting"]["splits"] == ["SynthSource"]
    fails(params, lambda p: (p["source"].update(kind="import"), forget(["SynthSource"])(p)),
          "frequency.forgetting.splits: SynthSource needs source.kind synth")
    fails(params, forget(["S9"]), "frequency.forgetting.splits: S9 is neither in splits.membership nor SynthSource")
    fails(params, forget(["Synth"]), "frequency.forgetting.splits")
    without_lp_hp = [v for v in params["frequency"]["variants"] if v != "lp_hp"]
    fails(params, lambda p: p["frequency"].update(variants=without_lp_hp), "the forgetting experiment needs lp_hp")
    ok = copy.deepcopy(params)
    forget([])(ok)
    ok["frequency"]["variants"] = without_lp_hp
    validate(ok)  # no forgetting experiment: no lp_hp needed
    ok = copy.deepcopy(params)
    ok["train"]["strategies"]["TOPGAP"]["per_split"] = {"SynthSource": {"epochs": 3}}
    validate(ok)
    assert strategy_params(ok, "TOPGAP", "SynthSource")["epochs"] == 3


def test_transfer_and_scratch_models_share_the_network(params):
    fails(params, lambda p: p["source"]["train"].update(arch="resnet18"),
          "source.train.arch is 'resnet18' but train.defaults.arch is 'resnet18_quarter'")
    fails(params, lambda p: p["train"]["strategies"]["TOPGAP"].update(init="source", source_eps=0) or
          p["train"]["strategies"]["TOPGAP"]["topgap"].update(backbone="resnet18"),
          "train.strategies.TOPGAP.topgap.backbone is 'resnet18'")


def test_membership_matches_papers(params):
    m = params["splits"]["membership"]
    assert set(m["S1"]["test"]) == {"champagne_flute", "beer_cup", "cocktail_glass"}
    assert set(m["S2"]["test"]) == {"champagne_flute", "wine_glass", "cocktail_glass"}
    assert set(m["S3"]["test"]) == {"red_cup", "green_glass", "beer_cup"}
    everything = set(params["data"]["containers"])
    for roles in m.values():
        assert set(roles["train"]) | set(roles["test"]) == everything
    assert not {"wine_glass", "champagne_flute", "cocktail_glass"} & set(m["S2"]["train"])


def test_strategy_params_merge(params):
    st = strategy_params(params, "ST")
    assert st["lr"] == params["train"]["strategies"]["ST"]["lr"] and st["epochs"] == params["train"]["defaults"]["epochs"]
    assert strategy_params(params, "ST-FT")["epochs"] == params["train"]["strategies"]["ST-FT"]["epochs"]


def test_robust_sources_fine_tune_the_standard_one(params):
    """source.robust.init standard: eps > 0 starts from the eps-0 model for source.robust.epochs;
    scratch (Salman et al.) keeps source.train's recipe; the standard model is always from scratch."""
    from fillrobust.config import source_params

    p = copy.deepcopy(params)
    p["source"]["robust"] = {"init": "standard", "epochs": 2}
    robust = source_params(p, 1.0)
    assert (robust["init"], robust["source_eps"], robust["epochs"]) == ("source", 0, 2)
    assert robust["adversarial"]["eps"] == 1.0
    assert source_params(p, 0.0)["init"] == "scratch" and "adversarial" not in source_params(p, 0.0)
    p["source"]["robust"] = {"init": "scratch"}
    assert source_params(p, 1.0)["init"] == "scratch"
    assert source_params(p, 1.0)["epochs"] == p["source"]["train"]["epochs"]
    fails(params, lambda q: q["source"].update(robust={"init": "imagenet"}), "source.robust.init")


def test_frozen_sweep_member_recipe(params):
    """sensitivity.frozen_layers.recipes["L4"] reaches ST-FT_L4 only; a bad member key is refused."""
    p = copy.deepcopy(params)
    p["sensitivity"]["frozen_layers"]["recipes"] = {"L4": {"epochs": 31, "lr": 0.3}}
    validate(p)
    probe = strategy_params(p, "ST-FT_L4")
    assert (probe["epochs"], probe["lr"], probe["frozen_stages"]) == (31, 0.3, 4)
    other = strategy_params(p, "ST-FT_L2")
    assert (other["epochs"], other["lr"]) == (strategy_params(p, "ST-FT")["epochs"], strategy_params(p, "ST-FT")["lr"])
    fails(p, lambda q: q["sensitivity"]["frozen_layers"]["recipes"].update(L5={"epochs": 2}),
          "sensitivity.frozen_layers.recipes", "L5")
    fails(p, lambda q: q["sensitivity"]["frozen_layers"]["recipes"]["L4"].update(epoch=2),
          "sensitivity.frozen_layers.recipes.L4", "epoch")


def test_paper_profile_trains_every_split_for_the_papers_epochs(root):
    """The embedded default's per-split epoch fixes (CPU-scale convergence) do not leak into the paper profile."""
    paper = load_params(root / "params.yaml", root / "params" / "paper.yaml")
    expected = {"ST": 30, "AT": 30, "ST-FT": 30, "AT-AFT": 30, "DA-PRIME": 50, "AT-DA-PRIME": 50}
    for strategy, epochs in expected.items():
        for split in paper["study"]["splits"]:
            assert strategy_params(paper, strategy, split)["epochs"] == epochs, (strategy, split)


def test_cifar10_c_strengths_need_small_crops(params):
    """CIFAR-10-C's constants are for 32-px images: on 224-px crops they would be a near-null benchmark."""
    fails(params, lambda p: p["data"]["crop"].update(size=224),
          "evaluate.corruptions.suite: cifar10_c", "data.crop.size 224; use imagenet_c")
    ok = copy.deepcopy(params)
    ok["data"]["crop"]["size"] = 224
    ok["source"]["synth"]["size"] = 224
    ok["evaluate"]["corruptions"]["suite"] = "imagenet_c"
    validate(ok)


def test_augment_params_are_checked_before_any_job(params):
    """The registry's own param check runs on every augment block a job would build, naming its key."""
    strategies = lambda p: p["train"]["strategies"]  # noqa: E731
    fails(params, lambda p: strategies(p)["GRAY"].update(augment={"name": "gray", "params": {"prob": 0.5}}),
          "train.strategies.GRAY.augment.params: gray params: unknown key(s) ['prob']; valid keys: ['p']")
    fails(params, lambda p: strategies(p)["DA-PRIME"]["augment"]["params"].update(dept=2),
          "train.strategies.DA-PRIME.augment.params: prime params: unknown key(s) ['dept']")
    fails(params, lambda p: strategies(p)["DA-PRIME"]["per_split"]["S2"]["augment"]["params"].update(depth=0),
          "train.strategies.DA-PRIME.per_split.S2.augment.params: prime param 'depth': expected an integer >= 1")
    fails(params, lambda p: strategies(p)["AUGMIX"]["augment"].update(params={"severity": 0}),
          "train.strategies.AUGMIX.augment.params: augmix param 'severity': expected an integer in [1, 10], got 0")
    fails(params, lambda p: p["sensitivity"]["frozen_layers"]["recipes"]["L4"].update(
        augment={"name": "augmix", "params": {"severity": 11}}),
          "sensitivity.frozen_layers.recipes.L4.augment.params: augmix param 'severity'")
    fails(params, lambda p: p["source"]["train"].update(augment={"name": "none", "params": {"x": 1}}),
          "source.train.augment.params: none params: takes no keys")
    # an ablation may drop every primitive a PRIME strategy keeps
    fails(params, lambda p: (strategies(p)["DA-PRIME"]["augment"]["params"].update(primitives=["spectral"]),
                             p["prime"]["sweep"].update(ablation=[[], ["spectral"]])),
          "prime.sweep: strategy id", "drops every PRIME primitive")


def test_an_inherited_augment_fault_is_named_once(params):
    """A bad train.defaults augment is named there, not again in every strategy (nor a strategy's
    in each per_split slice); a strategy whose merge makes a new fault is named too."""
    p = copy.deepcopy(params)
    p["train"]["defaults"]["augment"] = {"name": "gray", "params": {"p": 2}}
    with pytest.raises(ConfigError) as err:
        validate(p)
    lines = str(err.value).splitlines()[1:]
    assert lines[0] == "  - train.defaults.augment.params: gray param 'p': expected a probability in [0, 1], got 2"
    assert not any("train.strategies.ST." in line for line in lines)
    assert any(line.startswith("  - train.strategies.AUGMIX.augment.params: augmix params: unknown key(s) ['p']")
               for line in lines)
    p = copy.deepcopy(params)
    p["train"]["strategies"]["DA-PRIME"]["augment"]["params"]["dept"] = 2
    with pytest.raises(ConfigError) as err:
        validate(p)
    assert "dept" in str(err.value) and "per_split" not in str(err.value)


def test_augment_names_agree_with_the_registry_and_schema(root):
    """The torch-free checks, the registry and the schema's enum list the same augmentations."""
    from fillrobust.augment.params import AUGMENTATIONS
    from fillrobust.augment.registry import AUGMENTATIONS as BUILT
    from fillrobust.config import load_schema

    enum = load_schema()["$defs"]["hyper"]["properties"]["augment"]["properties"]["name"]["enum"]
    assert list(AUGMENTATIONS) == list(BUILT) == enum


@pytest.mark.parametrize(("where", "key"), [(("train", "strategies", "ST"), "epochs"),
                                            (("train", "strategies", "ST"), "batch_size"),
                                            (("train", "defaults"), "warmup_epochs"),
                                            (("data", "crop"), "size"),
                                            (("prime", "sweep"), "epochs")])
def test_whole_floats_are_not_integers(params, where, key):
    """jsonschema takes 10.0 as an integer; the job's range(10.0) would not."""
    def mutate(p):
        block = p
        for name in where:
            block = block[name]
        block[key] = 10.0

    fails(params, mutate, f"{'.'.join(where)}.{key}: 10.0 is not of type 'integer'", "write 10")


def test_whole_floats_are_not_integers_in_per_split_slices(params):
    fails(params, lambda p: p["train"]["strategies"]["ST"].update(per_split={"S1": {"epochs": 3.0}}),
          "train.strategies.ST.per_split.S1.epochs: 3.0 is not of type 'integer'; write 3")
    fails(params, lambda p: p["train"]["strategies"]["ST"].update(hflip=1), "train.strategies.ST.hflip")
    fails(params, lambda p: p["train"]["strategies"]["ST"].update(epochs=True), "train.strategies.ST.epochs")


def test_validation_never_imports_torch(root):
    """Every dry run validates params: importing torch there would cost each one a second or more."""
    code = ("import sys; from fillrobust.config import load_params, validate; "
            f"validate(load_params({str(root / 'params.yaml')!r})); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_key_given_twice_is_refused(tmp_path):
    """YAML keeps the last of two equal keys; params name file, line and dotted key instead."""
    from fillrobust.config import check_unique_keys

    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  strategies:\n    ST:\n      lr: 0.1\n      epochs: 3\n      lr: 0.2\n"
                     "    DA-PRIME:\n      per_split:\n        S1: {epochs: 2}\n      per_split:\n        S2: {epochs: 3}\n"
                     "list:\n  - {a: 1, a: 2}\n")
    expected = [f"{twice}:6: train.strategies.ST.lr is given twice (first at line 4)",
                f"{twice}:10: train.strategies.DA-PRIME.per_split is given twice (first at line 8)",
                f"{twice}:13: list[0].a is given twice (first at line 13)"]
    for call in (load_params, check_unique_keys):
        with pytest.raises(ConfigError) as err:
            call(twice)
        for needle in expected:
            assert needle in str(err.value), str(err.value)
    once = tmp_path / "once.yaml"  # an overridden merge key and `1` / "1" (int, str) are distinct keys
    once.write_text("x: &base {b: 1}\ny:\n  <<: *base\n  b: 2\nz: {1: a, '1': b}\n")
    check_unique_keys(once, once)
    assert load_params(once)["y"] == {"b": 2}


def test_every_file_with_a_repeated_key_is_named(tmp_path, root):
    from fillrobust.config import check_unique_keys

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("device: cpu\ndevice: cuda\n")
    second.write_text("threads: 1\nthreads: 2\n")
    with pytest.raises(ConfigError) as err:
        check_unique_keys(root / "params.yaml", first, second)
    assert f"{first}:2: device" in str(err.value) and f"{second}:2: threads" in str(err.value)
    assert "params.yaml" not in str(err.value)


def test_topgap_backbone_is_a_known_name(params):
    """A misspelt backbone used to reach the job (timm, seconds of import, then no such model)."""
    topgap = lambda p: p["train"]["strategies"]["TOPGAP"]  # noqa: E731
    fails(params, lambda p: topgap(p)["topgap"].update(backbone="resnet18_halve"),
          "train.strategies.TOPGAP.topgap.backbone: 'resnet18_halve' is not a Top-GAP backbone; expected one of "
          "['resnet18', 'resnet18_half', 'resnet18_quarter', 'efficientnet_b0', 'convnext_tiny'] or timm:<name>")
    fails(params, lambda p: topgap(p).update(per_split={"S1": {"topgap": {"backbone": "timm:"}}}),
          "train.strategies.TOPGAP.per_split.S1.topgap.backbone: 'timm:' is not a Top-GAP backbone")
    ok = copy.deepcopy(params)
    topgap(ok).update(init="scratch", topgap={**topgap(ok)["topgap"], "backbone": "timm:resnet34"})
    validate(ok)


def test_outside_topgap_weights_need_a_pin(params):
    """Unpinned, the job would refuse the file only after Snakemake deleted the old model."""
    topgap = lambda p: p["train"]["strategies"]["TOPGAP"]  # noqa: E731
    fails(params, lambda p: topgap(p)["topgap"].update(weights="external/backbone.safetensors"),
          "train.strategies.TOPGAP.topgap.weights_sha256: missing; external/backbone.safetensors is an outside file")
    fails(params, lambda p: topgap(p)["topgap"].update(weights="w.safetensors", weights_sha256="abc"),
          "train.strategies.TOPGAP.topgap.weights_sha256")  # not 64 hex digits
    ok = copy.deepcopy(params)
    topgap(ok)["topgap"].update(weights="w.safetensors", weights_sha256="0" * 64)
    validate(ok)


def test_two_containers_cannot_share_a_ccm_id(params):
    """The ingest maps CCM ids to names: the second would silently replace the first."""
    fails(params, lambda p: p["data"]["containers"]["small_white_cup"].update(ccm_id=1),
          "data.containers: ['red_cup', 'small_white_cup'] share ccm_id 1")


def test_fixed_vs_full_needs_transfer_strategies(params):
    """NeurIPS 2020's settings fine-tune a source model: a strategy from scratch has none."""
    fails(params, lambda p: p["sensitivity"]["fixed_vs_full"].update(strategies=["ST-FT", "ST"]),
          "sensitivity.fixed_vs_full.strategies: ST does not start from a source model (init: source)")
    fails(params, lambda p: p["sensitivity"]["fixed_vs_full"].update(strategies=["XX-FT"]),
          "sensitivity.fixed_vs_full.strategies: XX-FT is not defined in train.strategies")
    # two strategies fine-tuning the standard source: the claims' one "standard" row is ambiguous
    fails(params, lambda p: p["sensitivity"]["fixed_vs_full"].update(strategies=["ST-FT", "ST-AFT", "AT-FT"]),
          "sensitivity.fixed_vs_full.strategies: ['ST-FT', 'ST-AFT'] all fine-tune the standard source")
