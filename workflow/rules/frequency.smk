# Frequency study (thesis 4.2-4.4, App. A): frequency-derived datasets of
# data/ccm, ST models trained on them, cross-dataset accuracy, margins along
# DCT / random subspaces, synthetic T1/T2 experiments, forgetting and the DCT
# energy of PGD perturbations during adversarial training. The derived
# datasets are data products (rule derive_variant, data.smk); the helpers live in
# frequency_common.smk (included by the Snakefile before data.smk).


rule train_variant:
    input:
        data=lambda w: variant_data(w.variant),
        split="data/splits/{split}.parquet",
    output:
        weights="models/derived/{split}/{variant}/seed{seed}/model.safetensors",
        sidecar="models/derived/{split}/{variant}/seed{seed}/model.json",
    wildcard_constraints:
        variant=_alternatives(FREQ_VARIANTS),
    params:
        p=j(strategy_params(config, FREQ["strategy"])),
        strategy=FREQ["strategy"],
        device=config["device"],
        code=CODE["train"],
        code_variant=CODE["variant"],
    threads: config["threads"]
    resources:
        mem_mb=3000,
        gpu=GPU,
    log:
        "logs/train/derived/{split}/{variant}/seed{seed}.log",
    benchmark:
        "logs/bench/train/derived/{split}/{variant}/seed{seed}.tsv"
    shell:
        "python -m fillrobust train-variant --dataset {input.data} --split {input.split}"
        " --split-name {wildcards.split} --variant {wildcards.variant} --strategy {params.strategy}"
        " --seed {wildcards.seed} --params {params.p:q} --device {params.device} --threads {threads}"
        " --out {output.weights} > {log} 2>&1"


rule cross_dataset:
    input:
        models=[m for _, _, m in CROSS_MODELS],
        data=list(CROSS_DATA.values()),
        splits=expand("data/splits/{split}.parquet", split=FREQ_SPLITS),
    output:
        table=multiext("results/tables/cross_dataset", ".csv", ".md", ".tex"),
    params:
        p=j({"batch_size": config["evaluate"]["batch_size"], "decimals": DECIMALS}),
        models=" ".join(f"{s}:{v}:{m}" for s, v, m in CROSS_MODELS),
        data=" ".join(f"{v}={d}" for v, d in CROSS_DATA.items()),
        splits=" ".join(f"{s}=data/splits/{s}.parquet" for s in FREQ_SPLITS),
        out=out_prefix("table"),
        device=config["device"],
        code=CODE["frequency"],
        code_evaluate=CODE["evaluate"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/frequency/cross_dataset.log",
    benchmark:
        "logs/bench/frequency/cross_dataset.tsv"
    shell:
        "python -m fillrobust cross-dataset --models {params.models} --datasets {params.data}"
        " --splits {params.splits} --params {params.p:q} --device {params.device} --threads {threads}"
        " --out {params.out} > {log} 2>&1"


rule margins:
    input:
        weights=margin_weights,
        data=[variant_data(d) for d in MARG["data"]],
        split="data/splits/{split}.parquet",
    output:
        "results/margins/{split}/{mmodel}.parquet",
    wildcard_constraints:
        mmodel=_alternatives(MARGIN_MODELS),
    params:
        p=j({k: v for k, v in MARG.items() if k not in ("models", "variant_models", "data")}),
        data=" ".join(f"{d}={variant_data(d)}" for d in MARG["data"]),
        device=config["device"],
        code=CODE["frequency"],
        code_evaluate=CODE["evaluate"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/frequency/margins/{split}/{mmodel}.log",
    benchmark:
        "logs/bench/frequency/margins/{split}/{mmodel}.tsv"
    shell:
        "python -m fillrobust margins --weights {input.weights} --label {wildcards.mmodel}"
        " --datasets {params.data} --split {input.split} --split-name {wildcards.split}"
        " --params {params.p:q} --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule table_margins:
    input:
        expand("results/margins/{split}/{mmodel}.parquet", split=FREQ_SPLITS, mmodel=list(MARGIN_MODELS)),
    output:
        table=multiext("results/tables/margins", ".csv", ".md", ".tex"),
        dct="results/figures/margins_dct.png",
        random="results/figures/margins_random.png",
        median="results/figures/margins_median_original.png",
    params:
        p=j({"decimals": DECIMALS}),
        tables=out_dir("table"),
        figures=out_dir("dct"),
        code=CODE["frequency"],
    log:
        "logs/tables/margins.log",
    benchmark:
        "logs/bench/tables/margins.tsv"
    shell:
        "python -m fillrobust table-margins --margins {input} --params {params.p:q}"
        " --tables {params.tables} --figures {params.figures} > {log} 2>&1"


rule synthetic_margins:
    output:
        "results/frequency/synthetic_margins.parquet",
    priority: 35  # the stage's second-longest job, 24 s (longest-first order)
    params:
        p=j({k: v for k, v in SYN.items() if k != "transition"}),
        code=CODE["synthetic"],
    threads: 1
    log:
        "logs/frequency/synthetic_margins.log",
    benchmark:
        "logs/bench/frequency/synthetic_margins.tsv"
    shell:
        "python -m fillrobust synthetic-margins --params {params.p:q} --out {output} > {log} 2>&1"


rule synthetic_transition_eps:
    output:
        "results/frequency/synthetic_transition/eps{eps}.parquet",
    # The MLP of one eps, about 22 s on the default: after forgetting and synthetic_margins
    # (longest-first order; measured: started first, they left forgetting to end the stage).
    priority: 30
    wildcard_constraints:
        eps=_alternatives(TRANSITION_EPS),
    params:
        p=lambda w: transition_params(w.eps),
        code=CODE["synthetic"],
    threads: 1
    log:
        "logs/frequency/synthetic_transition/eps{eps}.log",
    benchmark:
        "logs/bench/frequency/synthetic_transition/eps{eps}.tsv"
    shell:
        "python -m fillrobust synthetic-transition-eps --params {params.p:q} --out {output} > {log} 2>&1"


rule synthetic_transition:
    input:
        TRANSITION_PARTS,
    output:
        "results/frequency/synthetic_transition.parquet",
    params:
        order=TRANSITION_PARTS,  # a new order of the same parts joins them again
        code=CODE["synthetic"],
    log:
        "logs/frequency/synthetic_transition.log",
    benchmark:
        "logs/bench/frequency/synthetic_transition.tsv"
    shell:
        "python -m fillrobust synthetic-transition --parts {input:q} --out {output} > {log} 2>&1"


rule forgetting:
    input:
        data=lambda w: split_variant_data(w.split, "lp_hp"),
        split="data/splits/{split}.parquet",
    output:
        "results/frequency/forgetting_{split}.parquet",
    priority: 40  # the stage's longest job, 46 s on the default (longest-first order)
    params:
        p=j({"hyper": strategy_params(config, FREQ["strategy"]), "seed": FREQ_SEED,
             "forgetting": {**{k: MARG[k] for k in MARGIN_KEYS}, **FREQ["forgetting"]}}),
        device=config["device"],
        code=CODE["frequency"],
        code_train=CODE["train"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/frequency/forgetting_{split}.log",
    benchmark:
        "logs/bench/frequency/forgetting_{split}.tsv"
    shell:
        "python -m fillrobust forgetting --dataset {input.data} --split {input.split} --params {params.p:q}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule adversarial_energy:
    input:
        data="data/ccm",
        split="data/splits/{split}.parquet",
    output:
        "results/frequency/adversarial_energy_{split}.parquet",
    params:
        p=j({"hyper": adversarial_hyper(), "seed": FREQ_SEED,
             "energy": {"block": MARG["block"], "stride": MARG["stride"], **FREQ["energy"]}}),
        device=config["device"],
        code=CODE["frequency"],
        code_train=CODE["train"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/frequency/adversarial_energy_{split}.log",
    benchmark:
        "logs/bench/frequency/adversarial_energy_{split}.tsv"
    shell:
        "python -m fillrobust adversarial-energy --dataset {input.data} --split {input.split}"
        " --params {params.p:q} --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule tables_frequency:
    input:
        FREQ_RESULTS,
    output:
        tables=[f"results/tables/{name}.{ext}" for name in FREQ_RESULT_NAMES for ext in ("csv", "md", "tex")],
        figures=[f"results/figures/{name}.png" for name in FREQ_RESULT_NAMES if name != "synthetic_margins"],
    params:
        p=j({"decimals": DECIMALS}),
        tables=out_dir("tables"),
        figures=out_dir("figures"),
        code=CODE["frequency"],
    log:
        "logs/tables/frequency.log",
    benchmark:
        "logs/bench/tables/frequency.tsv"
    shell:
        "python -m fillrobust tables-frequency --results {input} --params {params.p:q}"
        " --tables {params.tables} --figures {params.figures} > {log} 2>&1"


rule frequency_all:
    input:
        rules.cross_dataset.output,
        rules.table_margins.output,
        rules.tables_frequency.output,


# Per-DVC-stage targets (dvc.yaml): DVC outputs may not overlap, so each
# stage builds the part of this study that lives in its own folders.
rule frequency_data:
    input:
        [d for d in CROSS_DATA.values() if d != "data/ccm"],
        [split_variant_data(s, "lp_hp") for s in FORGET_SPLITS],
        expand("data/splits/{split}.parquet", split=FORGET_SPLITS),


rule frequency_train:
    input:
        [m for _, _, m in CROSS_MODELS],
        # margins.models may name strategies outside study.strategies
        [model_path(s, model_id(name), FREQ_SEED) if kind == "study" else variant_model(s, name)
         for s in FREQ_SPLITS for kind, name in MARGIN_MODELS.values()],


rule frequency_results:
    input:
        rules.table_margins.input,
        FREQ_RESULTS,


rule frequency_tables:
    input:
        rules.frequency_all.input,
