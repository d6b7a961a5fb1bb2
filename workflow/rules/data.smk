# Dataset preparation: SynthCCM frames -> C-CCM crops (embedded default), or
# real CCM videos -> C-CCM (data.source: ccm); then the S1/S2/S3 splits.

if config["data"]["source"] == "synth":

    rule synthesize_ccm:
        output:
            directory("data/synth_ccm/frames"),
        params:
            p=j(config["data"]["synth_ccm"]),
            containers=j(config["data"]["containers"]),
            code=CODE["synthesize"],
        threads: config["threads"]
        log:
            "logs/data/synthesize_ccm.log",
        benchmark:
            "logs/bench/data/synthesize_ccm.tsv"
        shell:
            "python -m fillrobust synthesize-ccm --params {params.p:q} --containers {params.containers:q}"
            " --out {output} --workers {threads} > {log} 2>&1"

    rule crop_ccm:
        input:
            "data/synth_ccm/frames",
        output:
            directory("data/ccm"),
        params:
            p=j(config["data"]["crop"]),
            code=CODE["crop"],
        log:
            "logs/data/crop_ccm.log",
        benchmark:
            "logs/bench/data/crop_ccm.tsv"
        shell:
            "python -m fillrobust crop-ccm --frames {input} --params {params.p:q} --out {output} > {log} 2>&1"

else:

    rule ingest_ccm:
        input:
            unpack(ccm_inputs),
        output:
            directory("data/ccm"),
        params:
            p=j(ccm_params(config)),
            root=config["data"]["ccm"]["root"],
            seed=config["data"]["ccm"].get("seed", 0),
            code=CODE["ingest"],
        threads: config["threads"]
        log:
            "logs/data/ingest_ccm.log",
        benchmark:
            "logs/bench/data/ingest_ccm.tsv"
        shell:
            "python -m fillrobust ingest-ccm --root {params.root:q} --params {params.p:q}"
            " --seed {params.seed} --out {output} > {log} 2>&1"


rule fetch:
    output:
        "external/{name}",
    wildcard_constraints:
        name="|".join(re.escape(n) for n in config["data"].get("fetch", {})) or "(?!x)x",
    params:
        url=lambda w: config["data"]["fetch"][w.name]["url"],
        sha=lambda w: config["data"]["fetch"][w.name]["sha256"],
    log:
        "logs/data/fetch_{name}.log",
    shell:
        "python -m fillrobust fetch --url {params.url:q} --sha256 {params.sha} --dest {output} > {log} 2>&1"


rule contact_sheets:
    input:
        "data/ccm",
    output:
        directory("results/figures/ccm_sheets"),
    params:
        code=CODE["sheets"],
    log:
        "logs/data/contact_sheets.log",
    benchmark:
        "logs/bench/data/contact_sheets.tsv"
    shell:
        "python -m fillrobust contact-sheets --dataset {input} --out {output} > {log} 2>&1"


rule split:
    input:
        split_input,
    output:
        "data/splits/{split}.parquet",
    params:
        p=split_params,
        code=CODE["split"],
    log:
        "logs/data/split_{split}.log",
    benchmark:
        "logs/bench/data/split_{split}.tsv"
    shell:
        "python -m fillrobust split --dataset {input} --name {wildcards.split} --params {params.p:q}"
        " --out {output} > {log} 2>&1"


# Data products of the later studies: corrupted test sets (perturbation
# benchmark, evaluate.smk) and frequency-derived datasets (frequency.smk).
rule corrupt_set:
    input:
        data=split_input,
        split="data/splits/{split}.parquet",
    output:
        directory("data/corrupted/{split}"),
    params:
        p=j(CORRUPTION_PARAMS),
        code=CODE["corrupt"],
    threads: EVAL["corruptions"]["workers"]
    log:
        "logs/data/corrupted/{split}.log",
    benchmark:
        "logs/bench/data/corrupted/{split}.tsv"
    shell:
        "python -m fillrobust corrupt-set --dataset {input.data} --split {input.split}"
        " --params {params.p:q} --workers {threads} --out {output} > {log} 2>&1"


rule derive_variant:
    input:
        "data/ccm",
    output:
        directory("data/derived/{variant}"),
    wildcard_constraints:
        variant=_alternatives(FREQ_VARIANTS),
    params:
        p=j(FREQ["derive"]),
        code=CODE["derive"],
    log:
        "logs/data/derived/{variant}.log",
    benchmark:
        "logs/bench/data/derived/{variant}.tsv"
    shell:
        "python -m fillrobust derive-variant --dataset {input} --variant {wildcards.variant}"
        " --params {params.p:q} --out {output} > {log} 2>&1"


# The same variants of SynthSource, for frequency experiments run on it
# (frequency.forgetting.splits: SynthSource, the stand-in for CIFAR-10).
use rule derive_variant as derive_source_variant with:
    input:
        "data/synth_source",
    output:
        directory("data/synth_source_derived/{variant}"),
    log:
        "logs/data/synth_source_derived/{variant}.log",
    benchmark:
        "logs/bench/data/synth_source_derived/{variant}.tsv"


rule data_all:
    input:
        "data/ccm",
        expand("data/corrupted/{split}", split=SPLITS),
        expand("data/splits/{split}.parquet", split=SPLITS),
        ["data/synth_source"] if config["source"]["kind"] == "synth" else [],
