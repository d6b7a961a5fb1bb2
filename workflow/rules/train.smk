# Training: one job per (split, strategy, seed).


rule train:
    input:
        data="data/ccm",
        split="data/splits/{split}.parquet",
    output:
        weights="models/{split}/{strategy}/seed{seed}/model.safetensors",
        sidecar="models/{split}/{strategy}/seed{seed}/model.json",
    params:
        p=lambda w: j(strategy_params(config, w.strategy)),
        device=config["device"],
        code=CODE["train"],
    threads: config["threads"]
    resources:
        mem_mb=3000,
    log:
        "logs/train/{split}/{strategy}/seed{seed}.log",
    benchmark:
        "logs/bench/train/{split}/{strategy}/seed{seed}.tsv"
    shell:
        "python -m fillrobust train --dataset {input.data} --split {input.split}"
        " --split-name {wildcards.split} --strategy {wildcards.strategy} --seed {wildcards.seed}"
        " --params {params.p:q} --device {params.device} --threads {threads}"
        " --out {output.weights} > {log} 2>&1"


rule train_all:
    input:
        expand("models/{split}/{strategy}/seed{seed}/model.safetensors",
               split=SPLITS, strategy=STRATEGIES, seed=SEEDS),
