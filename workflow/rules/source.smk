# Source domain: SynthSource + standard/robust source training (embedded
# default), or one-time import of ImageNet checkpoints (params/paper.yaml).

if config["source"]["kind"] == "synth":

    rule synthesize_source:
        output:
            directory("data/synth_source"),
        params:
            p=j(config["source"]["synth"]),
            code=CODE["synthesize_source"],
        log:
            "logs/data/synthesize_source.log",
        benchmark:
            "logs/bench/data/synthesize_source.tsv"
        shell:
            "python -m fillrobust synthesize-source --params {params.p:q} --out {output} > {log} 2>&1"

    rule train_source:
        input:
            unpack(train_source_inputs),
        output:
            weights="models/source/eps{eps}/model.safetensors",
            sidecar="models/source/eps{eps}/model.json",
        # Every fine-tuning waits on the source models: start them first.
        priority: 50
        params:
            p=lambda w: j(source_params(config, float(w.eps))),
            source_dir=lambda w, input: f"--source-dir {os.path.dirname(os.path.dirname(input.standard))}"
            if "standard" in input.keys() else "",
            device=config["device"],
            code=CODE["train"],
        threads: config["threads"]
        resources:
            mem_mb=3000,
            gpu=GPU,
        log:
            "logs/source/eps{eps}.log",
        benchmark:
            "logs/bench/source/eps{eps}.tsv"
        shell:
            "python -m fillrobust train-source --dataset {input.data} --eps {wildcards.eps} --params {params.p:q}"
            " {params.source_dir} --device {params.device} --threads {threads} --out {output.weights} > {log} 2>&1"

else:

    rule import_source:
        input:
            lambda w: IMPORTS[w.eps]["path"],
        output:
            weights="models/source/eps{eps}/model.safetensors",
            sidecar="models/source/eps{eps}/model.json",
        params:
            sha=lambda w: IMPORTS[w.eps]["sha256"] or "none",
            fmt=lambda w: IMPORTS[w.eps]["format"],
            code=CODE["import"],
        log:
            "logs/source/import_eps{eps}.log",
        benchmark:
            "logs/bench/source/import_eps{eps}.tsv"
        shell:
            "python -m fillrobust import-source --file {input} --sha256 {params.sha} --format {params.fmt}"
            " --eps {wildcards.eps} --out {output.weights} > {log} 2>&1"


rule source_all:
    input:
        [source_path(eps) for eps in config["source"]["eps"]],
