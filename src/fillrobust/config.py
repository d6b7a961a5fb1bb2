"""Validated, typed views of the pipeline parameters (params.yaml).

The Snakefile validates the merged configuration here before any job runs,
and the CLI reuses the same schema. Error messages name the offending key
by its dotted path and say what was expected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fillrobust.data import SOURCE_SPLIT

# What the jobs run, re-exported (the Snakefile, tests and reports import them from here).
from fillrobust.job_params import (  # noqa: F401
    ConfigError,
    eps_label,
    model_preprocess,
    needs_selection,
    preprocess_label,
    resolve_selected,
)
from fillrobust.strategy_ids import (
    NAME_PATTERN,
    SWEEP_EPS,
    SWEEP_FROZEN,
    TOKEN,
    strategy_base,
    sweep_parts,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON schema's "integer" without whole floats: jsonschema accepts ``10.0`` as one,
    but ``range(10.0)`` in a job is a TypeError (and bools are never integers)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: The validator of params: Draft 2020-12 with :func:`_is_integer` as "integer".
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@lru_cache(maxsize=1)
def load_schema(path: str = str(SCHEMA_PATH)) -> dict[str, Any]:
    """The parameter JSON schema (stored as YAML), with the strategy-name pattern of
    :mod:`fillrobust.strategy_ids` filled in (``$defs.strategy_id``)."""
    with open(path) as handle:
        schema = yaml.safe_load(handle)
    schema["$defs"]["strategy_id"]["pattern"] = NAME_PATTERN
    return schema


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping.

    PyYAML (and so Snakemake's --configfile) silently keeps the last of two
    ``lr:`` lines, so a forgotten edit wins or loses by its position.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        problems = [f"{self.name}:{line}: {key} is given twice (first at line {first}); "
                    "each key may appear once per mapping" for key, line, first in _duplicate_keys(node)]
        if problems:
            raise ConfigError("duplicate keys:\n  - " + "\n  - ".join(problems))
        return super().construct_document(node)


def _duplicate_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None
                    ) -> Iterator[tuple[str, int, int]]:
    """(dotted key, line, line of its first occurrence) of each repeated mapping key under ``node``."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: its anchor was walked already
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            # `<<: *anchor` merges keys that may be overridden; complex keys do not occur in params
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            dotted, line = f"{path}.{key.value}" if path else key.value, key.start_mark.line + 1
            if (key.tag, key.value) in first:  # the tag tells `1:` (an int) from `"1":`
                yield dotted, line, first[key.tag, key.value]
            first.setdefault((key.tag, key.value), line)
            yield from _duplicate_keys(value, dotted, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{i}]", seen)


def check_unique_keys(*paths: str | Path) -> None:
    """Raise ConfigError naming file, line and dotted key of every key repeated in the YAML files.

    The Snakefile calls it on params.yaml and every --configfile, which Snakemake
    itself reads without this check.
    """
    errors = []
    for path in {Path(p).resolve(): p for p in reversed(paths)}.values():  # each file once
        try:
            _load_yaml(path)
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError("\n".join(errors))


def _load_yaml(path: str | Path) -> Any:
    """One YAML file by :class:`UniqueKeyLoader`; ConfigError naming the file when unreadable."""
    try:
        with open(path) as handle:
            return yaml.load(handle, Loader=UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: parameter file not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err


def load_params(*paths: str | Path) -> dict[str, Any]:
    """Load YAML files and deep-merge them left to right (like --configfile).

    A key repeated within one mapping is an error (:class:`UniqueKeyLoader`).
    """
    merged: dict[str, Any] = {}
    for path in paths:
        data = _load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        merged = deep_merge(merged, data)
    return merged


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per schema error: the key, what was found, what was expected."""
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"{where}.{k}" if error.absolute_path else k for k in extra)
        return f"unknown key {keys}; expected one of: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {error.validator_value}"
    expected = {k: v for k, v in error.schema.items()
                if k in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                         "minItems", "pattern", "required")}
    return f"{where}: {_message(error)} (expected {json.dumps(expected)})"


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, with the fix for a whole float where an integer belongs."""
    value, types = error.instance, error.validator_value
    if (error.validator == "type" and "integer" in ([types] if isinstance(types, str) else types)
            and isinstance(value, float) and value.is_integer()):
        return f"{error.message}; write {int(value)}"
    return error.message


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The most specific errors under an allOf/anyOf node."""
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaf_errors(sub)]


def validate(config: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """Validate ``config`` against the schema and cross-key rules; return it.

    Raises ConfigError listing every problem, each naming its dotted key.
    """
    validator = Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(leaf) for err in errors for leaf in _leaf_errors(err)]
    if not problems:
        problems = _cross_checks(config)
    if problems:
        lines = "\n  - ".join(dict.fromkeys(problems))
        raise ConfigError(f"invalid {source}:\n  - {lines}")
    return config


def _cross_checks(config: dict[str, Any]) -> list[str]:
    """Rules JSON schema cannot express: names that must refer to each other."""
    problems = []
    containers = set(config["data"]["containers"])
    by_id: dict[Any, list[str]] = {}
    for name, spec in config["data"]["containers"].items():
        if spec.get("ccm_id") is not None:
            by_id.setdefault(spec["ccm_id"], []).append(name)
    for ccm_id, names in sorted(by_id.items()):
        if len(names) > 1:  # the ingest maps CCM ids to names: one would silently replace the other
            problems.append(f"data.containers: {names} share ccm_id {ccm_id}; each CCM container has its own id")
    membership = config["splits"]["membership"]
    for split, roles in membership.items():
        for role in ("train", "test"):
            missing = sorted(set(roles[role]) - containers)
            if missing:
                problems.append(f"splits.membership.{split}.{role}: {missing} not in data.containers")
        both = sorted(set(roles["train"]) & set(roles["test"]))
        if both:
            problems.append(f"splits.membership.{split}: {both} are both train and test containers")
    for split in config["study"]["splits"]:
        if split not in membership:
            problems.append(f"study.splits: {split} is not defined in splits.membership ({sorted(membership)})")
    sweeps = config["sensitivity"]
    named = [("study.strategies", s) for s in config["study"]["strategies"]]
    named += [(f"sensitivity.{k}.strategy", sweeps[k]["strategy"]) for k in ("frozen_layers", "eps_source")]
    named += [("sensitivity.fixed_vs_full.strategies", s) for s in sweeps["fixed_vs_full"]["strategies"]]
    for key, strategy in named:
        if strategy not in config["train"]["strategies"]:
            problems.append(f"{key}: {strategy} is not defined in train.strategies "
                            f"({sorted(config['train']['strategies'])})")
    problems += _fixed_vs_full_problems(config)
    from fillrobust.report.topgap import topgap_checks  # the Top-GAP section's cross-key rules

    problems = problems + topgap_checks(config)
    return (problems + _source_checks(config) + _evaluate_checks(config) + _frequency_checks(config)
            + _prime_checks(config) + _keep_checks(config) + _per_split_checks(config)
            + _mixing_checks(config) + _augment_checks(config) + _backbone_checks(config)
            + _mtlat_checks(config))


def _mtlat_checks(config: dict[str, Any]) -> list[str]:
    """M-TLAT's tables name defined strategies, on splits whose corrupted sets the study builds."""
    mtlat = config.get("mtlat")
    if not mtlat:
        return []
    strategies = config["train"]["strategies"]
    problems = [f"mtlat.{key}: {name} is not defined in train.strategies ({sorted(strategies)})"
                for key in ("robustness", "labeling") for name in mtlat[key] if strategy_base(name) not in strategies]
    if strategy_base(mtlat["reference"]) not in strategies:
        problems.append(f"mtlat.reference: {mtlat['reference']} is not defined in train.strategies")
    outside = sorted(set(mtlat["splits"]) - set(config["study"]["splits"]) - {SOURCE_SPLIT})
    if outside:
        problems.append(f"mtlat.splits: {outside} not in study.splits {config['study']['splits']} "
                        "(the study builds the corrupted and transfer sets of its splits)")
    members = [*mtlat["robustness"], *mtlat["labeling"], config["evaluate"]["surrogate"]]
    return problems + source_split_problems(config, "mtlat.splits", mtlat["splits"], members)


def known_split(config: dict[str, Any], split: str) -> bool:
    """A split the workflow can build: one of splits.membership, or SynthSource."""
    return split in config["splits"]["membership"] or split == SOURCE_SPLIT


def source_split_problems(config: dict[str, Any], key: str, splits: list[str], models: list[str]) -> list[str]:
    """SynthSource as a split (``key`` lists it) needs SynthSource, and its ``models``
    cannot use the per-split eps_s selection (made on C-CCM splits only)."""
    if SOURCE_SPLIT not in splits:
        return []
    if config["source"]["kind"] != "synth":
        return [f"{key}: {SOURCE_SPLIT} needs source.kind synth (it is SynthSource as a split), "
                f"not {config['source']['kind']!r}"]
    return [f"{key}: {name} cannot be trained on {SOURCE_SPLIT}: it needs the eps_s selection "
            "(source_eps: selected), which runs on C-CCM splits only"
            for name in models if strategy_base(name) in config["train"]["strategies"]
            and needs_selection(strategy_params(config, name, SOURCE_SPLIT))]


def task_split_problems(config: dict[str, Any], key: str, splits: list[str], models: list[str]) -> list[str]:
    """The splits a task lists (``key``) are C-CCM splits or SynthSource, with SynthSource's
    conditions (:func:`source_split_problems`)."""
    problems = [f"{key}: {split} is neither in splits.membership nor {SOURCE_SPLIT} "
                f"(splits: {sorted(config['splits']['membership'])})"
                for split in splits if not known_split(config, split)]
    return problems + source_split_problems(config, key, splits, models)


def _mixing_checks(config: dict[str, Any]) -> list[str]:
    """Each strategy's ``mixing`` block is consistent (fillrobust.train.mixing_spec)."""
    from fillrobust.train.mixing_spec import mixing_problems

    problems = []
    for name, own in config["train"]["strategies"].items():
        params = deep_merge(config["train"]["defaults"], own)
        problems += mixing_problems(params.get("mixing"), f"train.strategies.{name}.mixing")
        if params.get("mixing") and params.get("adversarial"):
            problems.append(f"train.strategies.{name}: mixing and adversarial both set the batch loss; keep one")
    return problems


def _augment_checks(config: dict[str, Any]) -> list[str]:
    """Every ``augment`` block a training job builds passes the registry's own param check
    (fillrobust.augment.params, no torch): a typo stops validation, not the job, which
    Snakemake starts by deleting the old checkpoint. A fault inherited unchanged from the
    block a recipe is merged over is reported there only."""
    from fillrobust.augment.params import augment_error

    problems = [f"{key}.augment.{part}: {message}" for key, (part, message)
                in _where_written(config, lambda params: augment_error(params.get("augment")))]
    return problems + _prime_sweep_problems(config)


#: Top-GAP backbones by name (fillrobust.models.topgap.make_backbone, kept here without
#: importing torch): the project's ResNet-18s (BACKBONES_NATIVE) and two timm models; any
#: other timm model as ``timm:<name>`` (checked when built: importing timm costs seconds).
TOPGAP_BACKBONES = ("resnet18", "resnet18_half", "resnet18_quarter", "efficientnet_b0", "convnext_tiny")
TIMM_PREFIX = "timm:"


def _topgap_weights(params: dict[str, Any]) -> tuple[str, str | None] | None:
    """A training recipe's outside Top-GAP backbone file and its pin, if it names one."""
    spec = params.get("topgap") or {}
    return (spec["weights"], spec.get("weights_sha256")) if spec.get("weights") else None


def _backbone_checks(config: dict[str, Any]) -> list[str]:
    """Every ``topgap.backbone`` a training job builds is a known name, and outside backbone
    ``weights`` have a pinned ``weights_sha256`` (each reported where written)."""
    def unknown(params: dict[str, Any]) -> str | None:
        backbone = (params.get("topgap") or {}).get("backbone", TOPGAP_BACKBONES[0])
        known = backbone in TOPGAP_BACKBONES or (backbone.startswith(TIMM_PREFIX) and backbone != TIMM_PREFIX)
        return None if known else backbone

    def unpinned(params: dict[str, Any]) -> str | None:
        # an outside backbone file is pinned like source.imports (checked before planning)
        weights = _topgap_weights(params)
        return weights[0] if weights and not weights[1] else None

    problems = [f"{key}.topgap.backbone: {backbone!r} is not a Top-GAP backbone; expected one of "
                f"{list(TOPGAP_BACKBONES)} or {TIMM_PREFIX}<name> (a timm model)"
                for key, backbone in _where_written(config, unknown)]
    return problems + [f"{key}.topgap.weights_sha256: missing; {path} is an outside file and needs its "
                       "sha256 pinned (`sha256sum` gives it)" for key, path in _where_written(config, unpinned)]


def external_pins(config: dict[str, Any]) -> list[tuple[str, str | None, str, str]]:
    """(path, pinned sha256, what, param key) of every outside file the params name: each
    ``source.imports`` entry (with ``source.kind: import``), the CCM detector (with
    ``data.source: ccm``) and every recipe's Top-GAP backbone weights, used by this run or
    not. The workspace check compares the ones present with their pins before any job is
    planned (``fillrobust.io.integrity.pin_problems``)."""
    pins = []
    if config["source"]["kind"] == "import":
        for eps, spec in (config["source"].get("imports") or {}).items():
            pins.append((spec["path"], spec.get("sha256"), "source checkpoint", f"source.imports.{eps}.sha256"))
    if config["data"].get("source") == "ccm":
        detector = config["data"]["ccm"].get("detector") or {}
        if detector.get("weights"):
            pins.append((detector["weights"], detector.get("sha256"), "detector weights",
                         "data.ccm.detector.sha256"))
    for key, (path, sha) in _where_written(config, _topgap_weights):
        pins.append((path, sha, "Top-GAP backbone weights", f"{key}.topgap.weights_sha256"))
    return pins


def _where_written(config: dict[str, Any], fault: Callable[[dict[str, Any]], Any]) -> list[tuple[str, Any]]:
    """(dotted key, fault) of every training recipe whose ``fault(params)`` is set, except where
    it is inherited unchanged from the block the recipe is merged over: reported where written."""
    found: dict[str, Any] = {}
    out = []
    for key, parent, params in _trained_params(config):
        found[key] = fault(params)
        if found[key] and found[key] != found.get(parent):
            out.append((key, found[key]))
    return out


def _trained_params(config: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(dotted key, the key it is merged over, resolved training params) of every place a
    training recipe is set: train.defaults, each strategy over it, each of a strategy's
    per_split slices and sensitivity.frozen_layers recipes over the strategy, source.train."""
    defaults, strategies = config["train"]["defaults"], config["train"]["strategies"]
    out = [("source.train", None, config["source"]["train"]), ("train.defaults", None, defaults)]
    for name, own in strategies.items():
        key, params = f"train.strategies.{name}", deep_merge(defaults, own)
        out.append((key, "train.defaults", params))
        out += [(f"{key}.per_split.{split}", key, deep_merge(params, override))
                for split, override in (own.get("per_split") or {}).items()]
    frozen = config["sensitivity"]["frozen_layers"]
    if frozen["strategy"] in strategies:
        key = f"train.strategies.{frozen['strategy']}"
        params = deep_merge(defaults, strategies[frozen["strategy"]])
        out += [(f"sensitivity.frozen_layers.recipes.{member}", key, deep_merge(params, recipe))
                for member, recipe in (frozen.get("recipes") or {}).items()]
    return out


def _prime_sweep_problems(config: dict[str, Any]) -> list[str]:
    """The PRIME sweep members resolve (their tokens only change depth, mix and primitives,
    but an ablation may drop every primitive the strategy keeps)."""
    sweep, strategies = config["prime"]["sweep"]["strategy"], config["train"]["strategies"]
    augment = deep_merge(config["train"]["defaults"], strategies.get(sweep) or {}).get("augment") or {}
    if augment.get("name") != "prime":
        return []  # _prime_checks names the missing PRIME augmentation
    try:
        prime_sweeps(config)
    except ConfigError as err:
        return [f"prime.sweep: {err}"]
    return []


def _per_split_checks(config: dict[str, Any]) -> list[str]:
    """Every ``per_split`` slice names a defined split and merges into valid strategy params."""
    validator = Validator({"$defs": load_schema()["$defs"], "$ref": "#/$defs/hyper"})
    problems = []
    for name, own in config["train"]["strategies"].items():
        for split, override in (own.get("per_split") or {}).items():
            key = f"train.strategies.{name}.per_split.{split}"
            if not known_split(config, split):
                problems.append(f"{key}: {split} is not defined in splits.membership "
                                f"({sorted(config['splits']['membership'])})")
            if "per_split" in override:
                problems.append(f"{key}.per_split: per_split cannot be nested")
                continue
            merged = deep_merge(deep_merge(config["train"]["defaults"], own), override)
            merged.pop("per_split", None)
            for err in validator.iter_errors(merged):
                where = f"{key}.{_dotted(err.absolute_path)}" if err.absolute_path else key
                problems.append(f"{where}: {_message(err)}")
    return problems


def _keep_checks(config: dict[str, Any]) -> list[str]:
    """``keep: best_val`` on the carve-out needs one: splits.val_fraction > 0."""
    if config["splits"]["val_fraction"] > 0:
        return []
    problems = []
    for name, own in config["train"]["strategies"].items():
        params = deep_merge(config["train"]["defaults"], own)
        if params.get("keep") == "best_val" and params.get("val_source", "val") == "val":
            problems.append(f"train.strategies.{name}.keep: best_val selects the epoch on the validation "
                            "carve-out, but splits.val_fraction is 0 (no validation images); set "
                            "splits.val_fraction > 0, keep: last, or val_source: test (thesis 5.5.4)")
    return problems


#: Crops larger than this are nearer ImageNet-C's 224 px than CIFAR-10-C's 32 (geometric midpoint).
CIFAR_C_MAX_SIDE = 85


def _evaluate_checks(config: dict[str, Any]) -> list[str]:
    """Threats name registered attacks with valid params; corruptions are known."""
    from fillrobust.attacks.registry import validate_attack_params
    from fillrobust.evaluate.corruptions import CORRUPTIONS

    problems = []
    evaluate = config["evaluate"]
    for name, threat in evaluate["threats"].items():
        try:
            validate_attack_params(threat["attack"], threat.get("params"))
        except ValueError as err:
            problems.append(f"evaluate.threats.{name}: {err}")
    unknown = [c for c in evaluate["corruptions"]["names"] if c not in CORRUPTIONS]
    if unknown:
        problems.append(f"evaluate.corruptions.names: unknown {unknown}; expected names from {list(CORRUPTIONS)}")
    side = config["data"]["crop"]["size"]
    if evaluate["corruptions"]["suite"] == "cifar10_c" and side > CIFAR_C_MAX_SIDE:
        problems.append(f"evaluate.corruptions.suite: cifar10_c has CIFAR-10-C's strengths, made for 32-px "
                        f"images, far too mild for data.crop.size {side}; use imagenet_c (made for 224 px)")
    if evaluate["surrogate"] not in config["train"]["strategies"]:
        problems.append(f"evaluate.surrogate: {evaluate['surrogate']!r} is not defined in train.strategies "
                        f"({sorted(config['train']['strategies'])})")
    return problems


def _frequency_checks(config: dict[str, Any]) -> list[str]:
    """The frequency study's names must refer to splits, variants and strategies that exist."""
    problems = []
    freq, margins = config["frequency"], config["margins"]
    for split in freq["splits"]:
        if split not in config["splits"]["membership"]:
            problems.append(f"frequency.splits: {split} is not defined in splits.membership")
    available = {"original", *freq["variants"]}
    for key, names in (("frequency.train_variants", freq["train_variants"]), ("margins.data", margins["data"])):
        missing = sorted(set(names) - available)
        if missing:
            problems.append(f"{key}: {missing} are neither 'original' nor in frequency.variants {freq['variants']}")
    missing = sorted(set(margins["variant_models"]) - set(freq["train_variants"]))
    if missing:
        problems.append(f"margins.variant_models: {missing} are not in frequency.train_variants")
    for name in [freq["strategy"], *margins["models"]]:
        if name not in config["train"]["strategies"]:
            problems.append(f"frequency/margins: strategy {name} is not defined in train.strategies")
    if config["train"]["strategies"].get(freq["strategy"], {}).get("init", "scratch") != "scratch":
        problems.append(f"frequency.strategy: {freq['strategy']} must train from scratch (init: scratch)")
    forgetting = freq["forgetting"]["splits"]
    if forgetting and "lp_hp" not in freq["variants"]:
        problems.append("frequency.variants: the forgetting experiment needs lp_hp")
    return problems + task_split_problems(config, "frequency.forgetting.splits", forgetting, [])


def _fixed_vs_full_problems(config: dict[str, Any]) -> list[str]:
    """Every fixed-vs-full strategy fine-tunes a source model, and at most one the standard
    source (the NeurIPS claims compare the robust ones with that one)."""
    problems, standard = [], []
    for strategy in config["sensitivity"]["fixed_vs_full"]["strategies"]:
        if strategy not in config["train"]["strategies"]:
            continue  # reported with the other unknown names
        params = strategy_params(config, strategy)
        if params.get("init", "scratch") != "source":
            problems.append(f"sensitivity.fixed_vs_full.strategies: {strategy} does not start from a source "
                            "model (init: source); fixed-feature and full-network transfer need one")
        elif params.get("source_eps", 0) != "selected" and float(params.get("source_eps", 0)) == 0:
            standard.append(strategy)
    if len(standard) > 1:
        problems.append(f"sensitivity.fixed_vs_full.strategies: {standard} all fine-tune the standard source "
                        "(source_eps 0); list one")
    return problems


def _arch_checks(config: dict[str, Any]) -> list[str]:
    """Transfer models inherit the source's network and the study compares them with models
    from scratch (``train.defaults.arch``), so both must be the same network."""
    default = config["train"]["defaults"].get("arch", "resnet18")
    source = config["source"]
    own = source["train"].get("arch", "resnet18") if source["kind"] == "synth" else "resnet18"
    where = "source.train.arch" if source["kind"] == "synth" else "source.kind import (torchvision ResNet-18)"
    problems = [] if own == default else [f"{where} is {own!r} but train.defaults.arch is {default!r}: "
                                          "transfer and from-scratch models must share the network"]
    for name, strat in config["train"]["strategies"].items():
        backbone = (strat.get("topgap") or {}).get("backbone", "resnet18")
        if strat.get("init") == "source" and "topgap" in strat and backbone != own:
            problems.append(f"train.strategies.{name}.topgap.backbone is {backbone!r} but its source "
                            f"models are {own!r} ({where})")
    return problems


def _source_checks(config: dict[str, Any]) -> list[str]:
    """Every eps_s a strategy or sweep needs must be a provided source model."""
    problems = []
    source = config["source"]
    provided = {eps_label(e) for e in source["eps"]}
    for name, strat in config["train"]["strategies"].items():
        eps = strat.get("source_eps")
        if strat.get("init") == "source" and eps is None:
            problems.append(f"train.strategies.{name}: init 'source' needs source_eps (a number or 'selected')")
        if isinstance(eps, (int, float)) and eps_label(eps) not in provided:
            problems.append(f"train.strategies.{name}.source_eps: {eps} is not in source.eps {source['eps']}")
    outside = sorted(set(config["sensitivity"]["frozen_layers"].get("splits") or []) - set(config["study"]["splits"]))
    if outside:
        problems.append(f"sensitivity.frozen_layers.splits: {outside} not in study.splits {config['study']['splits']}")
    sweep = config["sensitivity"]["eps_source"]
    for eps in sweep["values"]:
        if eps_label(eps) not in provided:
            problems.append(f"sensitivity.eps_source.values: {eps} is not in source.eps {source['eps']}")
    if source["kind"] == "synth" and source["synth"]["size"] != config["data"]["crop"]["size"]:
        problems.append(f"source.synth.size ({source['synth']['size']}) must equal data.crop.size "
                        f"({config['data']['crop']['size']}): source models are fine-tuned on the crops")
    problems += _arch_checks(config)
    if source["kind"] == "import":
        missing = sorted(provided - {eps_label(float(k)) for k in source["imports"]})
        if missing:
            problems.append(f"source.imports: no checkpoint file for eps {missing} listed in source.eps")
    return problems


def _prime_checks(config: dict[str, Any]) -> list[str]:
    """The PRIME tables name defined strategies and splits; the sweeps need PRIME."""
    problems = []
    prime, strategies = config["prime"], config["train"]["strategies"]
    named = [("prime.strategies", s) for s in prime["strategies"]]
    named += [("prime.compare", s) for s in prime["compare"]]
    named += [("prime.baselines.strategies", s) for s in prime["baselines"]["strategies"]]
    named += [("prime.sweep.strategy", prime["sweep"]["strategy"])]
    for key, name in named:
        if name not in strategies:
            problems.append(f"{key}: {name} is not defined in train.strategies ({sorted(strategies)})")
    for split in prime["sweep"]["splits"]:
        if split not in config["splits"]["membership"]:
            problems.append(f"prime.sweep.splits: {split} is not defined in splits.membership "
                            f"({sorted(config['splits']['membership'])})")
    # Tab. 5.1 is on CIFAR-10: the baselines may run on SynthSource, its stand-in.
    baselines = prime["baselines"]
    problems += task_split_problems(config, "prime.baselines.splits", baselines["splits"], baselines["strategies"])
    sweep = prime["sweep"]["strategy"]
    augment = (strategies.get(sweep) or {}).get("augment") or {}
    if sweep in strategies and augment.get("name") != "prime":
        problems.append(f"prime.sweep.strategy: {sweep} has no PRIME augmentation "
                        f"(train.strategies.{sweep}.augment.name must be 'prime')")
    for i, drop in enumerate(prime["sweep"]["ablation"]):
        if len(set(drop)) == len(PRIME_PRIMITIVES):
            problems.append(f"prime.sweep.ablation[{i}]: drops every primitive; at least one must remain")
    return problems


#: PRIME's primitives (fillrobust.augment.prime.PRIMITIVES, kept here without importing torch).
PRIME_PRIMITIVES = ("spectral", "spatial", "color")


def strategy_params(config: dict[str, Any], strategy: str, split: str | None = None) -> dict[str, Any]:
    """Resolved training parameters of a strategy id (sweep ids included).

    Defaults < the strategy's own keys < its ``per_split`` slice for ``split``
    (plain ids only: a sweep id's settings are the ones its tokens name) < the
    sweep override encoded in the id (``_L{L}`` sets ``frozen_stages`` and
    merges ``sensitivity.frozen_layers.recipes["L{L}"]``,
    ``_eps{e}`` sets ``source_eps`` and the eps sweep's frozen stages,
    ``_eps{e}_L{L}`` the source eps and the ``_L{L}`` member's stages and recipe). The
    ``per_split`` map itself is never returned, so a job sees only its own
    split's slice (changing S1's does not rerun S2). An ``adversarial`` block is
    completed with ``train.adversarial``; ``"selected"`` values stay for the
    job to resolve from the eps selection file.
    """
    base, eps, frozen = sweep_parts(strategy)
    if base not in config["train"]["strategies"]:
        raise ConfigError(f"unknown strategy {base!r}; train.strategies defines "
                          f"{sorted(config['train']['strategies'])}")
    params = deep_merge(config["train"]["defaults"], config["train"]["strategies"][base])
    per_split = params.pop("per_split", None) or {}
    suffix = strategy[len(base):]
    if split is not None and not suffix and split in per_split:
        params = deep_merge(params, per_split[split])
    if eps is not None:  # _eps{e}, or _eps{e}_L{L} (fixed_vs_full_models)
        params["source_eps"] = _sweep_value(strategy, eps, float)
        params["frozen_stages"] = config["sensitivity"]["eps_source"]["frozen_stages"]
    if frozen is not None:  # _L{L}, or _eps{e}_L{L}: the frozen sweep's member for L
        params = _frozen_member(config, params, _sweep_value(strategy, frozen, int))
    if eps is None and frozen is None and suffix:
        params = _apply_tokens(strategy, params, suffix)
    if params.get("adversarial") is not None:
        params["adversarial"] = deep_merge(config["train"]["adversarial"], params["adversarial"])
        params["adversarial"]["eps_scale"] = config["train"]["eps_scale"]
    return params


def _frozen_member(config: dict[str, Any], params: dict[str, Any], frozen: int) -> dict[str, Any]:
    """``params`` with ``frozen`` stages and the frozen sweep's recipe for that count merged in."""
    recipes = config["sensitivity"]["frozen_layers"].get("recipes") or {}
    return {**deep_merge(params, recipes.get(f"L{frozen}", {})), "frozen_stages": frozen}


def fixed_vs_full_sources(config: dict[str, Any]) -> dict[str, float | str]:
    """Each fixed-vs-full strategy's source eps: a number (0: the standard source) or
    ``"selected"`` (the eps_s sweep's choice, one model per eps of its grid)."""
    return {strategy: strategy_params(config, strategy).get("source_eps", 0.0)
            for strategy in config["sensitivity"]["fixed_vs_full"]["strategies"]}


def fixed_vs_full_models(config: dict[str, Any]) -> list[str]:
    """NeurIPS 2020's fixed-feature (L = 4) and full-network (L = 0) models of every strategy in
    ``sensitivity.fixed_vs_full``: ``ST-FT_L4`` where the strategy's source eps is fixed, and
    where it is the selected eps_s, one per eps of the eps_s sweep (``AT-FT_eps1_L4``): the
    paper compares the standard model with the best robust one of an eps grid."""
    grid = [e for e in config["sensitivity"]["eps_source"]["values"] if e != 0]  # eps 0: the standard source
    out = []
    for strategy, source_eps in fixed_vs_full_sources(config).items():
        selected = source_eps == "selected"
        out += [f"{strategy}_eps{eps_label(e)}_L{L}" if selected else f"{strategy}_L{L}"
                for L in (4, 0) for e in (grid if selected else [None])]
    return list(dict.fromkeys(out))


def fixed_vs_full_seeds(config: dict[str, Any]) -> list[int]:
    """The training seeds of the fixed-vs-full models: ``train.seeds``, then those of
    ``sensitivity.fixed_vs_full.seeds`` not among them (the paper averages three trials)."""
    extra = config["sensitivity"]["fixed_vs_full"].get("seeds") or []
    return list(dict.fromkeys([*config["train"]["seeds"], *extra]))


def _sweep_value(strategy: str, text: str, kind: type[int] | type[float]) -> int | float:
    """The number after ``_L`` / ``_eps`` in a sweep id; ConfigError naming the id otherwise."""
    try:
        return kind(text)
    except ValueError as err:
        raise ConfigError(f"strategy id {strategy!r}: expected {kind.__name__} after the sweep suffix "
                          f"({SWEEP_FROZEN}{{L}} or {SWEEP_EPS}{{e}}), got {text!r}") from err


def _apply_tokens(strategy: str, params: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Apply PRIME sweep tokens (``_e5_m2_b1-1_no-color``) to resolved params.

    ``e`` sets the epochs (any strategy); ``m`` the depth, ``b`` the Beta(a, b)
    mixing law and ``no-`` drops a primitive (strategies with a PRIME
    augmentation). The id must be canonical (:func:`prime_member`): tokens in
    that order, each changing its value, so one model has one id.
    """
    tokens = suffix[1:].split("_")
    matches = [TOKEN.match(t) for t in tokens]
    if not suffix.startswith("_") or not all(matches):
        raise ConfigError(f"strategy id {strategy!r}: unknown suffix {suffix!r}; expected _L{{L}}, "
                          "_eps{e} or PRIME sweep tokens _e{epochs}_m{depth}_b{a}-{b}_no-{primitive}")
    base = strategy_base(strategy)
    params = copy.deepcopy(params)
    epochs, depth, mix, drop = None, None, None, []
    for m in matches:
        if m["epochs"]:
            epochs = int(m["epochs"])
        elif m["depth"]:
            depth = int(m["depth"])
        elif m["a"]:
            try:
                mix = (float(m["a"]), float(m["b"]))
            except ValueError as err:
                raise ConfigError(f"strategy id {strategy!r}: bad Beta parameters in {m.group(0)!r}") from err
            if min(mix) <= 0:
                raise ConfigError(f"strategy id {strategy!r}: Beta parameters must be > 0")
        elif m["drop"] not in PRIME_PRIMITIVES:
            raise ConfigError(f"strategy id {strategy!r}: no-{m['drop']}: expected a primitive from "
                              f"{list(PRIME_PRIMITIVES)}")
        else:
            drop.append(m["drop"])
    canonical = _tokens(params, epochs, depth, mix, drop)
    if canonical != tokens:
        raise ConfigError(f"strategy id {strategy!r} is not canonical: tokens in the order _e _m _b _no- "
                          f"(primitives in the order {list(PRIME_PRIMITIVES)}), each changing its value; "
                          f"use {'_'.join([base, *canonical])!r}")
    if (depth, mix, drop) != (None, None, []) and (params.get("augment") or {}).get("name") != "prime":
        raise ConfigError(f"strategy id {strategy!r}: _m, _b and _no- tokens need a PRIME strategy; "
                          f"train.strategies.{base}.augment.name is not 'prime'")
    if epochs is not None:
        params["epochs"] = epochs
    if (params.get("augment") or {}).get("name") == "prime":
        aug = params["augment"].setdefault("params", {})
        if depth is not None:
            aug["depth"] = depth
        if mix is not None:
            aug["mix_a"], aug["mix_b"] = mix
        if drop:
            aug["primitives"] = [p for p in aug.get("primitives", PRIME_PRIMITIVES) if p not in drop]
            if not aug["primitives"]:
                raise ConfigError(f"strategy id {strategy!r}: drops every PRIME primitive")
    return params


def prime_member(config: dict[str, Any], base: str, epochs: int | None = None, depth: int | None = None,
                 mix: tuple[float, float] | list[float] | None = None,
                 drop: tuple[str, ...] | list[str] = ()) -> str:
    """Canonical id of ``base`` with PRIME sweep overrides (None = the strategy's own).

    Only overrides that change the resolved value become tokens, so equal
    settings share one id (and one trained model): e.g. ``DA-PRIME_e5_b1-1``.
    """
    tokens = _tokens(strategy_params(config, base), epochs, depth, mix, drop)
    member = "_".join([base, *tokens])
    strategy_params(config, member)  # validates
    return member


def _tokens(params: dict[str, Any], epochs: int | None, depth: int | None,
            mix: tuple[float, float] | list[float] | None, drop: tuple[str, ...] | list[str]) -> list[str]:
    """The canonical sweep tokens of overrides relative to a strategy's resolved ``params``."""
    aug = (params.get("augment") or {}).get("params") or {}
    tokens = []
    if epochs is not None and epochs != params.get("epochs"):
        tokens.append(f"e{epochs}")
    if depth is not None and depth != aug.get("depth"):
        tokens.append(f"m{depth}")
    if mix is not None and (float(mix[0]), float(mix[1])) != (aug.get("mix_a"), aug.get("mix_b")):
        tokens.append(f"b{eps_label(mix[0])}-{eps_label(mix[1])}")
    return tokens + [f"no-{p}" for p in PRIME_PRIMITIVES if p in drop]


def prime_sweeps(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the PRIME sensitivity tables: sweep, its setting, the model id to read.

    ``depth`` (thesis Tab. 5.7, p ~ Beta of ``depth.mix``), ``beta`` (Fig. 5.9,
    at ``beta.depth``), ``ablation`` (Tab. 5.5: primitives dropped), all at
    ``prime.sweep.epochs``.
    """
    sweep = config["prime"]["sweep"]
    base, epochs = sweep["strategy"], sweep["epochs"]
    settings = [("depth", m, sweep["depth"]["mix"], []) for m in sweep["depth"]["values"]]
    settings += [("beta", sweep["beta"]["depth"], mix, []) for mix in sweep["beta"]["values"]]
    settings += [("ablation", None, None, drop) for drop in sweep["ablation"]]
    rows = []
    for name, depth, mix, drop in settings:
        model = prime_member(config, base, epochs, depth=depth, mix=mix, drop=drop)
        aug = strategy_params(config, model)["augment"].get("params", {})
        kept = aug.get("primitives", PRIME_PRIMITIVES)
        rows.append({"sweep": name, "model": model, "m": aug.get("depth"), "a": aug.get("mix_a"),
                     "b": aug.get("mix_b"), "primitives": "+".join(kept),
                     "dropped": "+".join(p for p in PRIME_PRIMITIVES if p not in kept) or "none"})
    return rows


def source_params(config: dict[str, Any], eps: float) -> dict[str, Any]:
    """Training parameters of the source model with l2 radius ``eps`` (0 = standard)."""
    params = copy.deepcopy(config["source"]["train"])
    if float(eps) > 0:
        adv = deep_merge(config["train"]["adversarial"], config["source"]["adversarial"])
        params["adversarial"] = dict(adv, eps=float(eps), eps_scale=config["train"]["eps_scale"])
        robust = config["source"].get("robust") or {"init": "scratch"}
        if robust["init"] == "standard":  # adversarial fine-tuning of the standard source model
            params.update(init="source", source_eps=0, epochs=robust.get("epochs", params["epochs"]))
    return params


def ccm_params(config: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the real-CCM ingest: ``data.ccm`` plus the shared tables.

    The container id map, transparency, classes and crop settings come from
    ``data.containers``, ``data.classes`` and ``data.crop``, so SynthCCM and
    CCM share one source of truth.
    """
    data = config["data"]
    ccm = {k: v for k, v in data["ccm"].items() if k not in ("root", "seed")}
    ccm["containers"] = {c["ccm_id"]: name for name, c in data["containers"].items() if c["ccm_id"]}
    ccm["transparency"] = {name: c["transparency"] for name, c in data["containers"].items()}
    ccm["classes"] = list(data["classes"])
    ccm["crop"] = {"size": data["crop"]["size"], "margin": data["crop"]["margin"]}
    return ccm
