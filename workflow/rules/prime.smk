# PRIME on C-CCM (thesis 5.5): DA-PRIME and AT-DA-PRIME per container
# (Fig. 5.10), the depth / Beta / primitive sweeps (Tab. 5.7, Fig. 5.9,
# Tab. 5.5), the preprocessing baselines (Tab. 5.1) and contact sheets of
# PRIME samples (Figs. 5.6-5.8, B.1-B.3). Every model here is an ordinary
# strategy id trained (and clean-evaluated) by rule `train`;
# sweep members are ids like DA-PRIME_e5_m1_b1-1 (config.prime_member).
from fillrobust.config import preprocess_label, prime_sweeps

PRIME = config["prime"]
PRIME_ROWS = prime_sweeps(config)
PRIME_SWEEPS = ["depth", "beta", "ablation"]
# Corruption accuracy of the baselines, where the workflow evaluates corruptions
# (rule evaluate_corruptions of evaluate.smk, included before this file).
PRIME_CORRUPTIONS = PRIME["baselines"]["corruptions"] and hasattr(rules, "evaluate_corruptions")


# Summaries of (splits x models x seeds); the models of each sweep; the baselines' inputs.
prime_summaries = lambda splits, models, kind="clean": expand(
    "results/eval/{split}/{model}/seed{seed}/{kind}/summary.json", split=splits, model=models, seed=SEEDS, kind=kind
)
PRIME_SWEEP_MODELS = {
    sweep: list(dict.fromkeys(r["model"] for r in PRIME_ROWS if r["sweep"] == sweep)) for sweep in PRIME_SWEEPS
}
BASELINES = PRIME["baselines"]
BASELINE_INPUTS = {"clean": prime_summaries(BASELINES["splits"], BASELINES["strategies"])}
if PRIME_CORRUPTIONS:
    BASELINE_INPUTS["corruptions"] = prime_summaries(BASELINES["splits"], BASELINES["strategies"], "corruptions")


rule table_prime_per_container:
    input:
        expand("results/eval/{split}/{model}/seed{seed}/clean/predictions.parquet",
               split=SPLITS, model=PRIME["compare"] + PRIME["strategies"], seed=SEEDS),
    output:
        table=multiext("results/tables/prime_per_container", ".csv", ".md", ".tex"),
        figure="results/figures/prime_per_container.png",
    params:
        p=j({"decimals": config["tables"]["decimals"], "test_containers": TEST_CONTAINERS}),
        out=out_prefix("table"),
        code=CODE["prime_report"],
    log:
        "logs/tables/prime_per_container.log",
    benchmark:
        "logs/bench/tables/prime_per_container.tsv"
    shell:
        "python -m fillrobust table-prime-per-container --predictions {input} --params {params.p:q}"
        " --out {params.out} --figure {output.figure} > {log} 2>&1"


rule table_prime_sweep:
    input:
        lambda w: prime_summaries(PRIME["sweep"]["splits"], PRIME_SWEEP_MODELS[w.sweep]),
    output:
        table=multiext("results/tables/prime_{sweep}", ".csv", ".md", ".tex"),
        figure="results/figures/prime_{sweep}.png",
    wildcard_constraints:
        sweep="|".join(PRIME_SWEEPS),
    params:
        p=lambda w: j({"decimals": config["tables"]["decimals"], "splits": PRIME["sweep"]["splits"],
                       "seeds": SEEDS, "rows": [r for r in PRIME_ROWS if r["sweep"] == w.sweep]}),
        out=out_prefix("table"),
        code=CODE["prime_report"],
    log:
        "logs/tables/prime_{sweep}.log",
    benchmark:
        "logs/bench/tables/prime_{sweep}.tsv"
    shell:
        "python -m fillrobust table-prime-sweep --sweep {wildcards.sweep} --eval-root results/eval"
        " --params {params.p:q} --out {params.out} --figure {output.figure}"
        " > {log} 2>&1"


rule table_preprocessing_baselines:
    input:
        **BASELINE_INPUTS,
    output:
        table=multiext("results/tables/preprocessing_baselines", ".csv", ".md", ".tex"),
    params:
        p=j({"decimals": config["tables"]["decimals"], "strategies": BASELINES["strategies"],
             "splits": BASELINES["splits"], "seeds": SEEDS, "corruptions": PRIME_CORRUPTIONS,
             "preprocess": {s: preprocess_label(strategy_params(config, s)) for s in BASELINES["strategies"]}}),
        out=out_prefix("table"),
        code=CODE["prime_report"],
    log:
        "logs/tables/preprocessing_baselines.log",
    benchmark:
        "logs/bench/tables/preprocessing_baselines.tsv"
    shell:
        "python -m fillrobust table-preprocessing-baselines --eval-root results/eval --params {params.p:q}"
        " --out {params.out} > {log} 2>&1"


rule prime_sheets:
    input:
        "data/ccm",
    output:
        directory("results/figures/prime_sheets"),
    params:
        p=j({"prime": (strategy_params(config, PRIME["sweep"]["strategy"])["augment"].get("params") or {}),
             "sheets": PRIME["sheets"]}),
        code=CODE["prime_sheets"],
    threads: 1
    log:
        "logs/tables/prime_sheets.log",
    benchmark:
        "logs/bench/tables/prime_sheets.tsv"
    shell:
        "python -m fillrobust prime-sheets --dataset {input} --params {params.p:q} --out {output} > {log} 2>&1"


# Targets per DVC stage (dvc.yaml: train, evaluate, tables), whose outputs are
# disjoint folders: the models, their evaluations, the tables and figures.
PRIME_EVALS = sorted(set(
    rules.table_prime_per_container.input
    + [f for sweep in PRIME_SWEEPS for f in prime_summaries(PRIME["sweep"]["splits"], PRIME_SWEEP_MODELS[sweep])]
    + [f for files in BASELINE_INPUTS.values() for f in files]
))
PRIME_RUNS = (
    {(split, model) for split in SPLITS for model in PRIME["compare"] + PRIME["strategies"]}
    | {(split, model) for split in PRIME["sweep"]["splits"] for models in PRIME_SWEEP_MODELS.values()
       for model in models}
    | {(split, model) for split in BASELINES["splits"] for model in BASELINES["strategies"]}
)
PRIME_MODELS = sorted(model_path(split, model_id(model), seed) for split, model in PRIME_RUNS for seed in SEEDS)


rule prime_train:
    input:
        PRIME_MODELS,


rule prime_evaluate:
    input:
        PRIME_EVALS,


rule prime_tables:
    input:
        rules.table_prime_per_container.output,
        expand(rules.table_prime_sweep.output, sweep=PRIME_SWEEPS),
        rules.table_preprocessing_baselines.output,
        "results/figures/prime_sheets",


rule prime_all:
    input:
        rules.prime_train.input,
        rules.prime_evaluate.input,
        rules.prime_tables.input,
