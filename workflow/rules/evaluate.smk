# Evaluation of every trained model on its split's test containers.


rule evaluate_clean:
    input:
        data="data/ccm",
        split="data/splits/{split}.parquet",
        weights="models/{split}/{strategy}/seed{seed}/model.safetensors",
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
        " --checkpoint {input.weights} --params {params.p:q} --device {params.device}"
        " --threads {threads} --out results/eval/{wildcards.split}/{wildcards.strategy}/seed{wildcards.seed}/clean"
        " > {log} 2>&1"


rule evaluate_all:
    input:
        expand("results/eval/{split}/{strategy}/seed{seed}/clean/predictions.parquet",
               split=SPLITS, strategy=STRATEGIES, seed=SEEDS),
