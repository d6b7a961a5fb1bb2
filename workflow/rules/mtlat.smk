# M-TLAT (ECCVW 2020): Tables 1-2 (mtlat_robustness) and Table 3
# (mtlat_labeling). Every model here is an ordinary strategy id (MIXUP, TLAT,
# M-TLAT, IAT, FGSM-AT, TFGSM-AT, LS-AT: a `mixing` step in train.strategies)
# trained and clean-evaluated by rule `train`, benchmarked by evaluate.smk's
# evaluate_threats / evaluate_corruptions; only the tables are new here.
MTLAT = config.get("mtlat")

if MTLAT:
    MTLAT_MODELS = list(dict.fromkeys(MTLAT["robustness"] + MTLAT["labeling"]))
    mtlat_summaries = lambda models, kind: expand(
        "results/eval/{split}/{model}/seed{seed}/{kind}/summary.json",
        split=MTLAT["splits"], model=models, seed=SEEDS, kind=kind,
    )

    rule table_mtlat:
        input:
            threats=mtlat_summaries(MTLAT["robustness"], "threats"),
            corruptions=mtlat_summaries(MTLAT["robustness"], "corruptions"),
            clean=mtlat_summaries(MTLAT_MODELS, "clean"),
        output:
            robustness=multiext("results/tables/mtlat_robustness", ".csv", ".md", ".tex"),
            labeling=multiext("results/tables/mtlat_labeling", ".csv", ".md", ".tex"),
            robustness_figure="results/figures/mtlat_robustness.png",
            labeling_figure="results/figures/mtlat_labeling.png",
        params:
            p=j({"decimals": config["tables"]["decimals"], "reference": MTLAT["reference"],
                 "robustness": MTLAT["robustness"], "labeling": MTLAT["labeling"],
                 "threats": list(config["evaluate"]["threats"]),
                 "suite": config["evaluate"]["corruptions"]["suite"]}),
            tables=out_dir("robustness"),
            figures=out_dir("robustness_figure"),
            code=CODE["report_mtlat"],
        log:
            "logs/tables/mtlat.log",
        benchmark:
            "logs/bench/tables/mtlat.tsv"
        shell:
            "python -m fillrobust table-mtlat --threats {input.threats} --corruptions {input.corruptions}"
            " --clean {input.clean} --params {params.p:q} --tables {params.tables} --figures {params.figures}"
            " > {log} 2>&1"

    # Targets per DVC stage (targets.smk): the models, their evaluations, the tables.
    rule mtlat_train:
        input:
            [model_path(split, model_id(m), seed) for split in MTLAT["splits"] for m in MTLAT_MODELS
             for seed in SEEDS],
            # the MI-FGSM surrogate of each split (a split outside the study's, SynthSource, has none yet)
            [model_path(split, config["evaluate"]["surrogate"], SEEDS[0]) for split in MTLAT["splits"]],

    rule mtlat_evaluate:
        input:
            rules.table_mtlat.input,

    rule mtlat_tables:
        input:
            rules.table_mtlat.output,

else:

    rule mtlat_train:
        input:
            [],

    rule mtlat_evaluate:
        input:
            [],

    rule mtlat_tables:
        input:
            [],
