# Validation, helpers and per-module code hashes shared by every rule file.
import json
import os
import sys

from fillrobust.config import strategy_params, validate
from fillrobust.io.provenance import code_hash

validate(config, source="configuration (params.yaml + --configfile)")

# Jobs run `python` from the environment running Snakemake (the project's
# venv), even when Snakemake was started without activating it.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


wildcard_constraints:
    split=r"S[0-9]+",
    strategy=r"[A-Z][A-Z0-9-]*",
    seed=r"[0-9]+",


def j(obj):
    """A parameter slice as canonical JSON: a change reruns exactly its users."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def split_params(wildcards):
    """Only the membership of the split at hand, so editing S1 leaves S2/S3 alone."""
    s = config["splits"]
    return j({"membership": {wildcards.split: s["membership"][wildcards.split]},
              "val_fraction": s["val_fraction"], "seed": s["seed"]})


# The modules each rule's command runs: editing one reruns exactly its users.
CODE = {
    "synthesize": code_hash("data/synthetic", "data/store"),
    "crop": code_hash("data/crop", "data/store"),
    "split": code_hash("data/splits", "data/store"),
    "train": code_hash("train", "models/resnet", "io", "device", "data/store", "data/splits"),
    "evaluate": code_hash("evaluate/clean", "models/resnet", "io", "device", "data/store", "data/splits"),
    "report": code_hash("report/tables", "report/figures", "report/reference", "data/store"),
}

SPLITS = config["study"]["splits"]
STRATEGIES = config["study"]["strategies"]
SEEDS = config["train"]["seeds"]
