# Training: one job per (split, strategy, seed), sweep members included
# (``ST-FT_L{L}``, ``AT-FT_eps{e}``, NeurIPS 2020's ``AT-FT_eps{e}_L{L}``), plus the eps_s
# selection of ICIP 2021.
# Each training job also writes the clean test evaluation of its model while
# the model is in memory (a separate job cost a process start, the torch
# import and a load, ~10 s, for well under a second of compute). Its batch
# size is fixed (evaluate.clean.FUSED_BATCH_SIZE), not evaluate.batch_size,
# so no evaluation setting reruns a training.


rule train:
    input:
        unpack(train_inputs),
    output:
        weights="models/{split}/{strategy}/seed{seed}/model.safetensors",
        sidecar="models/{split}/{strategy}/seed{seed}/model.json",
        predictions="results/eval/{split}/{strategy}/seed{seed}/clean/predictions.parquet",
        summary="results/eval/{split}/{strategy}/seed{seed}/clean/summary.json",
    params:
        p=lambda w: j(strategy_params(config, w.strategy, w.split)),  # only this split's per_split slice
        options=train_options,
        eval_dir=lambda w, output: os.path.dirname(output.predictions),
        device=config["device"],
        code=CODE["train"],
    threads: config["threads"]
    resources:
        mem_mb=3000,
        gpu=GPU,
    log:
        "logs/train/{split}/{strategy}/seed{seed}.log",
    benchmark:
        "logs/bench/train/{split}/{strategy}/seed{seed}.tsv"
    shell:
        "python -m fillrobust train --dataset {input.data} --split {input.split}"
        " --split-name {wildcards.split} --strategy {wildcards.strategy} --seed {wildcards.seed}"
        " --params {params.p:q} {params.options} --device {params.device} --threads {threads}"
        " --out {output.weights} --eval-out {params.eval_dir} > {log} 2>&1"


rule select_eps_source:
    input:
        data="data/ccm",
        split="data/splits/{split}.parquet",
        weights=expand("models/{{split}}/{model}/seed{seed}/model.safetensors", model=EPS_MODELS, seed=SEEDS),
    output:
        "models/{split}/selection/eps_source.json",
    params:
        p=j({"select_by": config["sensitivity"]["eps_source"]["select_by"]}),
        device=config["device"],
        code=CODE["select"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/train/{split}/select_eps_source.log",
    benchmark:
        "logs/bench/train/{split}/select_eps_source.tsv"
    shell:
        "python -m fillrobust select-eps-source --dataset {input.data} --split {input.split} --weights {input.weights}"
        " --params {params.p:q} --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


# The adopted model's clean evaluation is the chosen member's, relabelled.
rule adopt_selected:
    input:
        selection="models/{split}/selection/eps_source.json",
        candidates=expand("models/{{split}}/{model}/seed{{seed}}/model.safetensors", model=EPS_MODELS),
        evals=expand("results/eval/{{split}}/{model}/seed{{seed}}/clean/summary.json", model=EPS_MODELS),
    output:
        weights=f"models/{{split}}/{EPS_STRATEGY}/seed{{seed}}/model.safetensors",
        sidecar=f"models/{{split}}/{EPS_STRATEGY}/seed{{seed}}/model.json",
        predictions=f"results/eval/{{split}}/{EPS_STRATEGY}/seed{{seed}}/clean/predictions.parquet",
        summary=f"results/eval/{{split}}/{EPS_STRATEGY}/seed{{seed}}/clean/summary.json",
    params:
        strategy=EPS_STRATEGY,
        eval_dirs=lambda w, input: " ".join(os.path.dirname(f) for f in input.evals),
        eval_dir=lambda w, output: os.path.dirname(output.predictions),
        code=CODE["select"],
    log:
        f"logs/train/{{split}}/{EPS_STRATEGY}/seed{{seed}}.log",
    benchmark:
        f"logs/bench/train/{{split}}/{EPS_STRATEGY}/seed{{seed}}.tsv"
    shell:
        "python -m fillrobust adopt-selected --selection {input.selection} --candidates {input.candidates}"
        " --strategy {params.strategy} --out {output.weights}"
        " --candidate-evals {params.eval_dirs} --eval-out {params.eval_dir} > {log} 2>&1"


ruleorder: adopt_selected > train


rule train_all:
    input:
        rules.source_all.input,
        [model_path(split, model, seed) for split in SPLITS for model in ALL_MODELS for seed in SEEDS
         if split in FROZEN_SPLITS or model not in SWEEP_ONLY],
        # the fixed-vs-full comparison's further trials (its models at SEEDS are listed above)
        [model_path(split, model, seed) for split in FROZEN_SPLITS for model in FIXED_FULL_MODELS
         for seed in FIXED_FULL_SEEDS if seed not in SEEDS],
        [model_path(split, config["evaluate"]["surrogate"], SEEDS[0]) for split in SPLITS],
