# Top-GAP (papers/topgap-..., issue 15): the topgap.strategy recipe (TOPGAP)
# at each k of topgap.k_grid and each ablation member (report.topgap.members:
# k{k}, fpn{0|1}-l1{0|1}-top{0|1}), trained on topgap.splits; each of them,
# and each topgap.compare study model (through GradCAM), meets FGSM and PGD
# and gets CAM sparsity and IoU with the container masks; then the three
# tables (Tables 2-4, 7, 8) and the CAM overlay grid.
include: "topgap_common.smk"  # its constants and input functions (no rules there: Snakemake lint)


rule train_topgap:
    input:
        unpack(topgap_train_inputs),
    output:
        weights="models/{split}/topgap/{member}/seed{seed}/model.safetensors",
        sidecar="models/{split}/topgap/{member}/seed{seed}/model.json",
        predictions="results/eval/{split}/topgap/{member}/seed{seed}/clean/predictions.parquet",
        summary="results/eval/{split}/topgap/{member}/seed{seed}/clean/summary.json",
    wildcard_constraints:
        member=TOPGAP_MEMBER_RE,
    params:
        p=lambda w: j(member_params(config, w.member, w.split)),
        strategy=TOPGAP.get("strategy"),
        source=lambda w, input: "--source-dir models/source" if "source" in input.keys() else "",
        eval_dir=lambda w, output: os.path.dirname(output.predictions),
        device=config["device"],
        code=CODE["topgap_train"],
    threads: config["threads"]
    resources:
        mem_mb=3000,
        gpu=GPU,
    log:
        "logs/train/{split}/topgap/{member}/seed{seed}.log",
    benchmark:
        "logs/bench/train/{split}/topgap/{member}/seed{seed}.tsv"
    shell:
        "python -m fillrobust train-topgap --dataset {input.data} --split {input.split}"
        " --split-name {wildcards.split} --strategy {params.strategy} --seed {wildcards.seed}"
        " --params {params.p:q} {params.source} --device {params.device} --threads {threads}"
        " --out {output.weights} --eval-out {params.eval_dir} > {log} 2>&1"


rule evaluate_topgap:
    input:
        data=split_input,
        split="data/splits/{split}.parquet",
        weights=topgap_weights,
    output:
        summary="results/eval/{split}/topgap/{model}/seed{seed}/summary.json",
        predictions="results/eval/{split}/topgap/{model}/seed{seed}/predictions.parquet",
        maps="results/eval/{split}/topgap/{model}/seed{seed}/maps.npz",
    wildcard_constraints:
        model="|".join(re.escape(m) for m in TOPGAP_MODELS) or "(?!x)x",
    params:
        p=j(TOPGAP.get("evaluate")),
        out=out_dir("summary"),
        device=config["device"],
        code=CODE["topgap_evaluate"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        "logs/evaluate/{split}/topgap/{model}/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/{split}/topgap/{model}/seed{seed}.tsv"
    shell:
        "python -m fillrobust evaluate-topgap --dataset {input.data} --split {input.split}"
        " --checkpoint {input.weights} --strategy {wildcards.model} --params {params.p:q}"
        " --device {params.device} --threads {threads} --out {params.out} > {log} 2>&1"


rule tables_topgap:
    input:
        data=[dataset_dir(split) for split in dict.fromkeys(TOPGAP["splits"])],
        summaries=expand("results/eval/{split}/topgap/{model}/seed{seed}/summary.json",
                         split=TOPGAP["splits"], model=TOPGAP_MODELS, seed=SEEDS),
    output:
        robustness=multiext("results/tables/topgap_robustness", ".csv", ".md", ".tex"),
        sparsity_iou=multiext("results/tables/topgap_sparsity_iou", ".csv", ".md", ".tex"),
        ablation=multiext("results/tables/topgap_ablation", ".csv", ".md", ".tex"),
        figures=expand("results/figures/topgap_{name}.png",
                       name=["robustness", "sparsity_iou", "ablation", "cam_overlays"]),
    params:
        p=j({"decimals": config["tables"]["decimals"], "ablation_k": TOPGAP.get("ablation_k"),
             "seed": SEEDS[0]}),
        datasets=" ".join(f"{split}={dataset_dir(split)}" for split in TOPGAP["splits"]),
        tables=out_dir("robustness"),
        figures=out_dir("figures"),
        code=CODE["topgap_tables"],
    log:
        "logs/tables/topgap.log",
    benchmark:
        "logs/bench/tables/topgap.tsv"
    shell:
        "python -m fillrobust tables-topgap --summaries {input.summaries} --datasets {params.datasets}"
        " --params {params.p:q} --tables {params.tables} --figures {params.figures} > {log} 2>&1"


# Per-stage targets (targets.smk) and the whole study.
rule topgap_train:
    input:
        expand("models/{split}/topgap/{member}/seed{seed}/model.safetensors",
               split=TOPGAP["splits"], member=TOPGAP_MEMBERS, seed=SEEDS),
        # the GradCAM comparison models on every Top-GAP split (SynthSource: not a study split)
        [model_path(split, model_id(m), seed) for split in TOPGAP["splits"]
         for m in TOPGAP["compare"] if m not in TOPGAP_MEMBERS for seed in SEEDS],


rule topgap_evaluate:
    input:
        rules.tables_topgap.input.summaries,


rule topgap_tables:
    input:
        rules.tables_topgap.output if config.get("topgap") else [],


rule topgap_all:
    input:
        rules.topgap_tables.input,
