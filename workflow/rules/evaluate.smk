# Evaluation of every trained model (study strategies and sweep members) on
# its split's test containers.


# Clean evaluations are written by the training jobs (rule train, and
# adopt_selected for the adopted AT-FT). A study strategy that is a model
# trained under another id (ST-FT = ST-FT_L1, common.smk: model_id) gets that
# model's evaluation relabelled, inside Snakemake's own process (no job start).
ALIASES = {s: model_id(s) for s in config["train"]["strategies"] if model_id(s) != s}

if ALIASES:

    rule alias_clean:
        input:
            predictions=lambda w: f"results/eval/{w.split}/{ALIASES[w.strategy]}/seed{w.seed}/clean/predictions.parquet",
            summary=lambda w: f"results/eval/{w.split}/{ALIASES[w.strategy]}/seed{w.seed}/clean/summary.json",
        output:
            predictions="results/eval/{split}/{strategy}/seed{seed}/clean/predictions.parquet",
            summary="results/eval/{split}/{strategy}/seed{seed}/clean/summary.json",
        wildcard_constraints:
            strategy="|".join(re.escape(s) for s in ALIASES),
        params:
            code=CODE["alias"],
        localrule: True
        log:
            "logs/evaluate/{split}/{strategy}/seed{seed}/clean.log",
        benchmark:
            "logs/bench/evaluate/{split}/{strategy}/seed{seed}/clean.tsv"
        run:
            from fillrobust.evaluate.alias import relabel_clean

            relabel_clean(os.path.dirname(input.predictions), os.path.dirname(output.predictions),
                          wildcards.strategy, log=log[0])

    ruleorder: alias_clean > train


# The perturbation benchmark (M-TLAT Table 1; thesis Tables B.3/B.4; ICIP l2):
# corrupted test sets once per split (rule corrupt_set, data.smk), transfer
# images once per split (made on the surrogate), then every benchmarked model
# against every threat.
rule transfer_set:
    input:
        data=split_input,
        split="data/splits/{split}.parquet",
        surrogate=lambda w: model_path(w.split, EVAL["surrogate"], SEEDS[0]),
    output:
        directory("results/eval/{split}/transfer_set"),
    params:
        p=j(dict(THREAT_PARAMS, threats=TRANSFER_THREATS)),
        device=config["device"],
        code=CODE["robustness"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/evaluate/{split}/transfer_set.log",
    benchmark:
        "logs/bench/evaluate/{split}/transfer_set.tsv"
    shell:
        "python -m fillrobust transfer-set --dataset {input.data} --split {input.split}"
        " --surrogate {input.surrogate} --params {params.p:q} --device {params.device}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule evaluate_threats:
    input:
        unpack(threat_inputs),
    output:
        predictions="results/eval/{split}/{strategy}/seed{seed}/threats/predictions.parquet",
        summary="results/eval/{split}/{strategy}/seed{seed}/threats/summary.json",
    params:
        p=j(THREAT_PARAMS),
        transfer=lambda w, input: f"--transfer {input.transfer}" if HAS_TRANSFER else "",
        out=out_dir("summary"),
        device=config["device"],
        code=CODE["robustness"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/evaluate/{split}/{strategy}/seed{seed}/threats.log",
    benchmark:
        "logs/bench/evaluate/{split}/{strategy}/seed{seed}/threats.tsv"
    shell:
        "python -m fillrobust evaluate-threats --dataset {input.data} --split {input.split}"
        " --checkpoint {input.weights} {params.transfer} --strategy {wildcards.strategy}"
        " --params {params.p:q} --device {params.device} --threads {threads} --out {params.out} > {log} 2>&1"


rule evaluate_corruptions:
    input:
        corrupted="data/corrupted/{split}",
        weights=lambda w: model_path(w.split, model_id(w.strategy), w.seed),
    output:
        predictions="results/eval/{split}/{strategy}/seed{seed}/corruptions/predictions.parquet",
        summary="results/eval/{split}/{strategy}/seed{seed}/corruptions/summary.json",
    params:
        p=j({"batch_size": EVAL["batch_size"], "bn_adaptation": EVAL["bn_adaptation"]}),
        out=out_dir("summary"),
        device=config["device"],
        code=CODE["robustness"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/evaluate/{split}/{strategy}/seed{seed}/corruptions.log",
    benchmark:
        "logs/bench/evaluate/{split}/{strategy}/seed{seed}/corruptions.tsv"
    shell:
        "python -m fillrobust evaluate-corruptions --corrupted {input.corrupted}"
        " --checkpoint {input.weights} --strategy {wildcards.strategy}"
        " --params {params.p:q} --device {params.device} --threads {threads} --out {params.out} > {log} 2>&1"


rule evaluate_all:
    input:
        clean_eval(STRATEGIES),
        sweep_clean_evals(),
        benchmark_eval("threats"),
        benchmark_eval("corruptions"),
