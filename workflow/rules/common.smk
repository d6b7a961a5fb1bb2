# Validation, helpers and per-module code hashes shared by every rule file.
import json
import sys

from fillrobust.config import strategy_params, validate
from fillrobust.io.provenance import code_hash

validate(config, source="configuration (params.yaml + --configfile)")

# The interpreter running Snakemake (the project's venv) runs every job.
PY = sys.executable


wildcard_constraints:
    split=r"S[0-9]+",
    strategy=r"[A-Z][A-Z0-9-]*",
    seed=r"[0-9]+",


def j(obj):
    """A parameter slice as canonical JSON: a change reruns exactly its users."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


CODE = {
    "data": code_hash("data", "config"),
    "train": code_hash("train", "models", "io", "device", "data/store", "data/splits"),
    "evaluate": code_hash("evaluate", "models", "io", "device", "data/store", "data/splits"),
    "report": code_hash("report", "data/store"),
}

SPLITS = config["study"]["splits"]
STRATEGIES = config["study"]["strategies"]
SEEDS = config["train"]["seeds"]
