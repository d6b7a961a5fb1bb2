"""Validated, typed views of the pipeline parameters (params.yaml).

The Snakefile validates the merged configuration here before any job runs,
and the CLI reuses the same schema. Error messages name the offending key
by its dotted path and say what was expected.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"


class ConfigError(ValueError):
    """The parameters are invalid; the message names the key and the expectation."""


@lru_cache(maxsize=1)
def load_schema(path: str = str(SCHEMA_PATH)) -> dict[str, Any]:
    """The parameter JSON schema (stored as YAML)."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def load_params(*paths: str | Path) -> dict[str, Any]:
    """Load YAML files and deep-merge them left to right (like --configfile)."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path) as handle:
                data = yaml.safe_load(handle) or {}
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: parameter file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
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
    if error.validator in ("enum", "propertyNames"):
        options = error.schema.get("enum") or error.validator_value
        if error.validator == "propertyNames":
            options = error.validator_value.get("enum") or error.validator_value
            return f"{where}: key {error.message.split(' ')[0]} is not allowed; expected {options}"
        return f"{where}: {error.instance!r} is not one of {options}"
    expected = {k: v for k, v in error.schema.items()
                if k in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                         "minItems", "pattern", "required")}
    return f"{where}: {error.message} (expected {json.dumps(expected)})"


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The most specific errors under an allOf/anyOf node."""
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaf_errors(sub)]


def validate(config: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """Validate ``config`` against the schema and cross-key rules; return it.

    Raises ConfigError listing every problem, each naming its dotted key.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
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
    for strategy in config["study"]["strategies"]:
        if strategy not in config["train"]["strategies"]:
            problems.append(f"study.strategies: {strategy} is not defined in train.strategies "
                            f"({sorted(config['train']['strategies'])})")
    return problems


def strategy_params(config: dict[str, Any], strategy: str) -> dict[str, Any]:
    """Training parameters of one strategy: the defaults with its overrides."""
    return deep_merge(config["train"]["defaults"], config["train"]["strategies"][strategy])
