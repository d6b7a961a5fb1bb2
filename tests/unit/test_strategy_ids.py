"""One strategy-id grammar (fillrobust.strategy_ids) shared by its three users:
the parameter schema, the rules' ``strategy`` wildcard and config's id parser."""

from __future__ import annotations

import copy
import re

import pytest

from fillrobust.config import (
    ConfigError,
    eps_label,
    fixed_vs_full_models,
    fixed_vs_full_seeds,
    load_params,
    load_schema,
    prime_sweeps,
    strategy_params,
    validate,
)
from fillrobust.strategy_ids import NAME_PATTERN, WILDCARD, strategy_base

PROFILES = {"default": (), "tiny": ("tests/data/tiny.yaml",), "paper": ("params/paper.yaml",),
            "half_width": ("params/half_width.yaml",)}


def planned_ids(config: dict) -> set[str]:
    """Every strategy id the workflow trains under ``config``: the strategies, the
    sensitivity sweeps' members (as common.smk names them) and the PRIME sweeps'."""
    sens = config["sensitivity"]
    ids = set(config["train"]["strategies"])
    ids |= {f"{sens['frozen_layers']['strategy']}_L{L}" for L in sens["frozen_layers"]["values"]}
    ids |= {f"{sens['eps_source']['strategy']}_eps{eps_label(e)}" for e in sens["eps_source"]["values"]}
    ids |= {row["model"] for row in prime_sweeps(config)}
    return ids | set(fixed_vs_full_models(config))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_planned_id_matches_the_wildcard_and_resolves(root, profile):
    config = load_params(root / "params.yaml", *(root / p for p in PROFILES[profile]))
    ids = planned_ids(config)
    assert any("_" in i for i in ids), "the profile plans no sweep ids: nothing checked"
    for strategy in ids:
        assert re.fullmatch(WILDCARD, strategy), f"{profile}: {strategy} is not matched by the rules' wildcard"
        assert re.fullmatch(NAME_PATTERN, strategy_base(strategy)), strategy
        assert strategy_params(config, strategy)["lr"] > 0


def test_the_schema_and_the_rules_take_the_grammar_from_one_module(root):
    strategy_id = load_schema()["$defs"]["strategy_id"]
    assert strategy_id["pattern"] == NAME_PATTERN and "enum" not in strategy_id
    common = (root / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r"^\s+strategy=STRATEGY_WILDCARD,$", common, re.MULTILINE)


@pytest.mark.parametrize("strategy", [
    "st",                       # a name is capitals, digits, dashes
    "ST_FT",                    # an unknown suffix
    "ST-FT_L",                  # _L without a number
    "ST-FT_L1_eps1",            # two kinds of suffix
    "AT-FT_eps",                # _eps without a number
    "DA-PRIME_x2",              # not a PRIME token
    "DA-PRIME_no-Color",        # primitives are lower case
])
def test_malformed_ids_are_rejected_by_the_wildcard_and_by_config(params, strategy):
    assert not re.fullmatch(WILDCARD, strategy)
    with pytest.raises(ConfigError, match=re.escape(strategy.split("_")[0])):
        strategy_params(params, strategy)


def test_a_new_strategy_is_a_params_entry_only(params):
    """A name nobody listed before validates and resolves once train.strategies defines it."""
    config = copy.deepcopy(params)
    config["train"]["strategies"]["NEW-2"] = {"init": "scratch", "lr": 0.05}
    config["study"]["strategies"].append("NEW-2")
    validate(config)
    assert strategy_params(config, "NEW-2_e3")["epochs"] == 3
    assert re.fullmatch(WILDCARD, "NEW-2_e3")
    bad = copy.deepcopy(config)
    bad["train"]["strategies"]["new_2"] = bad["train"]["strategies"].pop("NEW-2")
    with pytest.raises(ConfigError, match="train.strategies: 'new_2' does not match"):
        validate(bad)


def test_a_source_eps_and_a_frozen_count_in_one_id(params):
    """NeurIPS 2020's settings per robust source: ``AT-FT_eps1_L4`` is AT-FT from the eps 1
    source with four frozen stages and the frozen sweep's L4 recipe."""
    resolved = strategy_params(params, "AT-FT_eps1_L4")
    assert (resolved["source_eps"], resolved["frozen_stages"]) == (1.0, 4)
    recipe = params["sensitivity"]["frozen_layers"]["recipes"]["L4"]
    assert all(resolved[k] == v for k, v in recipe.items())
    assert strategy_params(params, "AT-FT_eps0.05_L0")["frozen_stages"] == 0
    assert re.fullmatch(WILDCARD, "AT-FT_eps1_L4") and not re.fullmatch(WILDCARD, "AT-FT_L4_eps1")
    assert fixed_vs_full_models(params) == ["ST-FT_L4", "ST-FT_L0", "AT-FT_eps0.05_L4", "AT-FT_eps1_L4",
                                            "AT-FT_eps0.05_L0", "AT-FT_eps1_L0"]


def test_fixed_vs_full_grid_leaves_out_eps_0_and_a_bare_frozen_suffix_is_refused(params):
    """eps 0 in the eps_s grid is the standard source, which ST-FT_L4 / _L0 already are;
    ``AT-FT_eps1_L`` names no frozen count (it used to resolve as AT-FT_eps1)."""
    config = copy.deepcopy(params)
    config["sensitivity"]["eps_source"]["values"] = [0, 0.05, 1]
    assert not [m for m in fixed_vs_full_models(config) if "_eps0_" in m]
    with pytest.raises(ConfigError, match="AT-FT_eps1_L"):
        strategy_params(params, "AT-FT_eps1_L")


def test_fixed_vs_full_seeds_add_to_train_seeds(params):
    """The NeurIPS models train on train.seeds and the section's seeds (the paper's three
    trials), each once, train.seeds first; without the key, on train.seeds alone."""
    config = copy.deepcopy(params)
    config["train"]["seeds"] = [0, 3]
    config["sensitivity"]["fixed_vs_full"]["seeds"] = [2, 0, 1]
    assert fixed_vs_full_seeds(config) == [0, 3, 2, 1]
    del config["sensitivity"]["fixed_vs_full"]["seeds"]
    assert fixed_vs_full_seeds(config) == [0, 3]
    config["sensitivity"]["fixed_vs_full"]["seeds"] = [-1]
    with pytest.raises(ConfigError, match="seeds"):
        validate(config)
