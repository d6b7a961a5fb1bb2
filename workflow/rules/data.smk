# Dataset preparation: SynthCCM frames -> C-CCM crops -> S1/S2/S3 splits.


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
        "python -m fillrobust synthesize --params {params.p:q} --containers {params.containers:q}"
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
        "python -m fillrobust crop --frames {input} --params {params.p:q} --out {output} > {log} 2>&1"


rule split:
    input:
        "data/ccm",
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


rule data_all:
    input:
        "data/ccm",
        expand("data/splits/{split}.parquet", split=SPLITS),
        ["data/synth_source"] if config["source"]["kind"] == "synth" else [],
