# Validation, helpers and per-module code hashes shared by every rule file.
import json
import os
import re
import sys

from fillrobust.config import (
    ccm_params,
    eps_label,
    external_pins,
    fixed_vs_full_models,
    fixed_vs_full_seeds,
    fixed_vs_full_sources,
    needs_selection,
    source_params,
    strategy_params,
    validate,
)
from fillrobust.attacks.registry import get_attack
from fillrobust.data import SOURCE_SPLIT
from fillrobust.io.integrity import check_workspace
from fillrobust.io.provenance import code_hash
from fillrobust.report.claims import table_patterns
from fillrobust.strategy_ids import WILDCARD as STRATEGY_WILDCARD

validate(config, source="configuration (params.yaml + --configfile)")

# A checkpoint or dataset changed after it was written, or an outside file (source
# checkpoint, detector, backbone weights) that does not match its pin, stops the run
# here, before Snakemake deletes anything downstream of it (fillrobust.io.integrity). Cluster
# jobs re-parse this file; the main process has checked already.
if workflow.is_main_process:
    check_workspace(".", pins=external_pins(config))

# Jobs run `python` from the environment running Snakemake (the project's
# venv), even when Snakemake was started without activating it.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


wildcard_constraints:
    split=rf"S[0-9]+|{SOURCE_SPLIT}",
    # a name and its sweep suffix: _L{L}, _eps{e} or PRIME tokens (fillrobust.strategy_ids)
    strategy=STRATEGY_WILDCARD,
    seed=r"[0-9]+",
    eps=r"[0-9][0-9.]*",


def j(obj):
    """A parameter slice as canonical JSON: a change reruns exactly its users."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _first(files):
    return files if isinstance(files, str) else files[0]


def out_dir(name):
    """Param function giving the folder of output ``name`` (a file or a multiext list):
    a command's --tables / --figures / --out folder comes from ``output``, not retyped."""
    return lambda wildcards, output: os.path.dirname(_first(getattr(output, name)))


def out_prefix(name):
    """Param function giving output ``name`` (a multiext table) without its extension (--out)."""
    return lambda wildcards, output: os.path.splitext(_first(getattr(output, name)))[0]


# Jobs that take --device declare the GPU they may use (`resources: gpu=GPU`):
# none when params say device: cpu, else one, so `--resources gpu=N` or a
# cluster profile can schedule them (unlimited when not given on the command line).
GPU = 0 if config["device"] == "cpu" else 1


def ccm_inputs(wildcards):
    """Files whose change must rebuild C-CCM from the videos (the videos
    themselves are taken as immutable; the annotations stand for them)."""
    ccm = config["data"]["ccm"]
    root = ccm["root"]
    inputs = {"annotations": os.path.join(root, ccm.get("annotations", "annotations/ccm_train_annotation.csv"))}
    if ccm.get("rejected_csv"):
        inputs["rejected"] = ccm["rejected_csv"]
    if ccm.get("boxes_csv"):
        inputs["boxes"] = os.path.join(root, ccm["boxes_csv"])
    weights = (ccm.get("detector") or {}).get("weights")
    if weights:
        inputs["weights"] = weights
    return inputs


def dataset_dir(split):
    """The dataset a split indexes: C-CCM, or SynthSource for the SynthSource split."""
    return "data/synth_source" if split == SOURCE_SPLIT else "data/ccm"


def split_input(wildcards):
    return dataset_dir(wildcards.split)


def split_params(wildcards):
    """Only the membership of the split at hand, so editing S1 leaves S2/S3 alone
    (SynthSource's: source.split)."""
    if wildcards.split == SOURCE_SPLIT:
        return j(config["source"].get("split") or {"train_images": None, "seed": 0})
    s = config["splits"]
    return j({"membership": {wildcards.split: s["membership"][wildcards.split]},
              "val_fraction": s["val_fraction"], "seed": s["seed"]})


# The modules (fillrobust subpackages / modules) each rule's command runs, by
# code key; a rule names its key as `code=CODE["key"]`, so editing a module
# reruns exactly its users. dvc.yaml's code deps must cover, stage by stage,
# the modules of the rules the stage runs (tests/workflow/test_dvc_deps.py).
CODE_MODULES = {
    "synthesize": ("data/synthetic", "data/store", "data/atomic"),
    "crop": ("data/crop", "data/store", "data/atomic"),
    "ingest": ("data/ccm", "data/detect", "data/verify", "data/crop", "data/store", "data/atomic",
               "io/integrity"),
    "sheets": ("data/verify", "data/store", "data/atomic"),
    "split": ("data/splits", "data/store", "data/atomic"),
    "synthesize_source": ("data/synthetic_source", "data/synthetic", "data/store", "data/atomic"),
    "import": ("models/pretrained", "models/resnet", "io", "data/atomic"),
    # train also runs the clean evaluation of the model it trained (evaluate/clean)
    # (job_params, not config: validation runs in the Snakefile, so editing a check retrains nothing)
    "train": ("train", "models/resnet", "models/topgap", "io", "device", "gpu_slots", "data/store", "data/atomic", "data/splits", "attacks",
              "job_params", "strategy_ids", "augment", "models/preprocess", "data/frequency", "evaluate/clean"),
    "select": ("report/selection", "job_params", "strategy_ids", "evaluate/clean", "evaluate/alias", "models/resnet", "io",
               "models/preprocess", "data/frequency", "data/store", "data/atomic"),
    "evaluate": ("evaluate/clean", "models/resnet", "io", "device", "data/store", "data/atomic",
                 "data/splits", "models/preprocess", "data/frequency"),
    "alias": ("evaluate/alias", "data/store", "data/atomic"),
    "corrupt": ("evaluate/corruptions", "evaluate/cifar_c", "data/store", "data/atomic", "data/splits"),
    "robustness": ("evaluate/robustness", "evaluate/bn_adapt", "evaluate/corruptions",
                   "evaluate/clean", "attacks", "models/resnet", "models/preprocess", "data/frequency",
                   "io", "device", "data/store", "data/atomic", "data/splits"),
    "prime_report": ("report/prime", "report/tables", "report/figures", "report/style", "report/reference",
                     "data/store", "data/atomic"),
    "prime_sheets": ("report/prime_sheets", "augment", "report/figures", "report/style", "data/store",
                     "data/atomic"),
    "report": ("report/tables", "report/figures", "report/style", "report/reference", "report/sensitivity",
               "strategy_ids", "data/store", "data/atomic"),
    "report_robustness": ("report/robustness", "report/tables", "report/figures", "report/style", "data/store",
                          "data/atomic"),
    "report_mtlat": ("report/mtlat", "report/seed_rows", "report/robustness", "report/tables", "report/figures", "report/style",
                     "evaluate/corruptions", "data/store", "data/atomic"),
    "claims": ("report/claims", "report/tables", "config", "data/store", "data/atomic"),
    # the results report: HTML page, DVC metrics and plot data (report.smk)
    "results_report": ("report/html", "report/runinfo", "report/metrics", "report/style", "report/claims",
                       "report/tables",
                       "io/provenance", "config", "data/store", "data/atomic"),
    "derive": ("data/frequency", "data/store", "data/atomic"),
    "variant": ("data/derived", "data/splits", "data/store", "data/atomic"),
    "frequency": ("evaluate/frequency_study", "evaluate/margins", "data/derived", "data/frequency",
                  "report/frequency", "report/tables", "report/figures", "report/style"),
    "synthetic": ("evaluate/frequency_study", "evaluate/synthetic_margins", "evaluate/margins",
                  "data/linear_synthetic", "models/mlp"),
    # Top-GAP (topgap.smk): its trainings also hash the model module; evaluation; tables
    "topgap_train": ("train", "models/resnet", "models/topgap", "io", "device", "gpu_slots", "data/store", "data/atomic",
                     "data/splits", "attacks", "job_params", "strategy_ids", "augment", "models/preprocess",
                     "data/frequency", "evaluate/clean"),
    "topgap_evaluate": ("evaluate/localisation", "evaluate/clean", "evaluate/corruptions", "attacks",
                        "models/resnet", "models/topgap", "models/preprocess", "data/frequency", "io", "device",
                        "data/store", "data/atomic", "data/splits"),
    "topgap_tables": ("report/topgap", "report/seed_rows", "config", "report/tables", "report/figures", "data/store", "data/atomic"),
}
CODE = {key: code_hash(*modules) for key, modules in CODE_MODULES.items()}

SPLITS = config["study"]["splits"]
# each split's test containers in the papers' order (splits.membership; ICIP Fig. 6), for the per-container tables
TEST_CONTAINERS = {split: list(m["test"]) for split, m in config["splits"]["membership"].items()}
STRATEGIES = config["study"]["strategies"]
SEEDS = config["train"]["seeds"]
IMPORTS = {eps_label(float(k)): v for k, v in config["source"]["imports"].items()}

# Sensitivity sweeps (ICIP 2021 Fig. 5) as model ids: ST-FT_L{L}, AT-FT_eps{e}.
FROZEN = config["sensitivity"]["frozen_layers"]
FROZEN_MODELS = [f"{FROZEN['strategy']}_L{L}" for L in FROZEN["values"]]
# The frozen-stage sweep may run on fewer splits than the study (embedded
# default: S1 only, a CPU-budget cut); the study's own ST-FT stays on all.
FROZEN_SPLITS = FROZEN.get("splits") or SPLITS
EPS_STRATEGY = config["sensitivity"]["eps_source"]["strategy"]
EPS_SWEEP = config["sensitivity"]["eps_source"]["values"]
EPS_MODELS = [f"{EPS_STRATEGY}_eps{eps_label(e)}" for e in EPS_SWEEP]
# NeurIPS 2020's fixed-feature (L=4) and full-network (L=0) transfer of each listed
# strategy (AT-FT: per eps of the eps_s grid), on the frozen sweep's splits (ST-FT's
# are the sweep's own members).
FIXED_FULL_MODELS = fixed_vs_full_models(config)
# ... trained on train.seeds and sensitivity.fixed_vs_full.seeds (the paper: three trials).
FIXED_FULL_SEEDS = fixed_vs_full_seeds(config)
# Sweep members trained only on FROZEN_SPLITS (unless they are also a study model).
SPLIT_SWEEP_MODELS = list(dict.fromkeys(FROZEN_MODELS + FIXED_FULL_MODELS))
SWEEP_MODELS = SPLIT_SWEEP_MODELS + EPS_MODELS


def model_id(strategy):
    """The model a study strategy is: ST-FT at L=1 is the sweep's ST-FT_L1
    (trained once, reported under both names); others are their own."""
    if strategy == FROZEN["strategy"]:
        frozen = strategy_params(config, strategy).get("frozen_stages", 0)
        if frozen in FROZEN["values"]:
            return f"{strategy}_L{frozen}"
    return strategy


def model_path(split, model, seed):
    return f"models/{split}/{model}/seed{seed}/model.safetensors"


def source_path(eps):
    return f"models/source/eps{eps_label(eps)}/model.safetensors"


def train_source_inputs(w):
    """SynthSource, and the standard source model for robust ones that fine-tune it
    (source.robust.init: standard): they wait for it."""
    inputs = {"data": "data/synth_source"}
    if source_params(config, float(w.eps)).get("init") == "source":
        inputs["standard"] = source_path(0)
    return inputs


STUDY_MODEL_IDS = [model_id(s) for s in STRATEGIES]
ALL_MODELS = list(dict.fromkeys(STUDY_MODEL_IDS + SWEEP_MODELS))
# Sweep members trained and evaluated on FROZEN_SPLITS only (not also a study model).
SWEEP_ONLY = [m for m in SPLIT_SWEEP_MODELS if m not in STUDY_MODEL_IDS]


def train_inputs(w):
    """Dataset, split, and what the strategy starts from or reads at run time."""
    params = strategy_params(config, w.strategy, w.split)
    inputs = {"data": dataset_dir(w.split), "split": f"data/splits/{w.split}.parquet"}
    if params.get("init") == "source":
        if params["source_eps"] == "selected":
            inputs["sources"] = [source_path(e) for e in EPS_SWEEP]
        else:
            inputs["source"] = source_path(params["source_eps"])
    if needs_selection(params):
        inputs["selection"] = f"models/{w.split}/selection/eps_source.json"
    return inputs


def train_options(w, input):
    options = []
    if "selection" in input.keys():
        options.append(f"--selection {input.selection}")
    if "source" in input.keys() or "sources" in input.keys():
        options.append("--source-dir models/source")
    return " ".join(options)


def known_tables():
    """The tables some rule writes (patterns; a claim naming another table stops the plan)."""
    return table_patterns(f for r in workflow.rules for f in r.output)


def clean_eval(models, splits=None, seeds=None):
    return expand("results/eval/{split}/{model}/seed{seed}/clean/predictions.parquet",
                  split=splits or SPLITS, model=models, seed=seeds or SEEDS)


# The NeurIPS models' clean evaluations on every trial (sweep_clean_evals, table_sensitivity).
FIXED_FULL_EVALS = clean_eval(FIXED_FULL_MODELS, FROZEN_SPLITS, FIXED_FULL_SEEDS)


def sweep_clean_evals():
    """Clean evaluations of every sweep member, each on the splits its sweep runs on."""
    frozen = clean_eval(SWEEP_ONLY, FROZEN_SPLITS)
    others = clean_eval([m for m in SPLIT_SWEEP_MODELS if m not in SWEEP_ONLY])
    return list(dict.fromkeys(frozen + FIXED_FULL_EVALS + clean_eval(EPS_MODELS) + others))


# Models that meet every threat: the study strategies (and with
# evaluate.models = all, the sweep members too).
BENCHMARKED = STRATEGIES + (SWEEP_MODELS if config["evaluate"]["models"] == "all" else [])


def benchmark_eval(kind, models=None):
    """Summaries of the threat or corruption benchmark of ``models`` (a frozen-sweep
    member only on the splits its sweep runs on)."""
    files = []
    for model in models or BENCHMARKED:
        files += expand("results/eval/{split}/{model}/seed{seed}/{kind}/summary.json",
                        split=FROZEN_SPLITS if model in SWEEP_ONLY else SPLITS, model=model, seed=SEEDS, kind=kind)
    return files


# The perturbation benchmark's parameter slices (rules in evaluate.smk).
EVAL = config["evaluate"]
THREAT_PARAMS = {k: EVAL[k] for k in ("batch_size", "attack_batch_size", "images", "seed", "threats")}
THREAT_PARAMS["eps_scale"] = config["train"]["eps_scale"]
TRANSFER_THREATS = {n: t for n, t in EVAL["threats"].items() if get_attack(t["attack"]).threat == "transfer"}
HAS_TRANSFER = bool(TRANSFER_THREATS)
CORRUPTION_PARAMS = {k: v for k, v in EVAL["corruptions"].items() if k != "workers"}
CORRUPTION_PARAMS["seed"] = EVAL["seed"]


def threat_inputs(w):
    inputs = {"data": dataset_dir(w.split), "split": f"data/splits/{w.split}.parquet",
              "weights": model_path(w.split, model_id(w.strategy), w.seed)}
    if HAS_TRANSFER:
        inputs["transfer"] = f"results/eval/{w.split}/transfer_set"
    return inputs
