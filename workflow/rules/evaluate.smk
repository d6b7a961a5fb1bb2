# Evaluation of every trained model (study strategies and sweep members) on
# its split's test containers.


rule evaluate_clean:
    input:
        data="data/ccm",
        split="data/splits/{split}.parquet",
        weights=lambda w: model_path(w.split, model_id(w.strategy), w.seed),
    output:
        predictions="results/eval/{split}/{strategy}/seed{seed}/clean/predictions.parquet",
        summary="results/eval/{split}/{strategy}/seed{seed}/clean/summary.json",
    params:
        p=j(config["evaluate"]),
        device=config["device"],
        code=CODE["evaluate"],
    threads: config["threads"]
    log:
        "logs/evaluate/{split}/{strategy}/seed{seed}/clean.log",
    benchmark:
        "logs/bench/evaluate/{split}/{strategy}/seed{seed}/clean.tsv"
    shell:
        "python -m fillrobust evaluate --dataset {input.data} --split {input.split}"
        " --checkpoint {input.weights} --strategy {wildcards.strategy} --params {params.p:q}"
        " --device {params.device} --threads {threads}"
        " --out results/eval/{wildcards.split}/{wildcards.strategy}/seed{wildcards.seed}/clean"
        " > {log} 2>&1"


rule evaluate_all:
    input:
        clean_eval(STRATEGIES + SWEEP_MODELS),
