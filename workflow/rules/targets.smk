# Targets: one per DVC stage, the only names dvc.yaml calls (`snakemake
# stage_<name>`). DVC outputs may not overlap, so each stage builds what lives
# in its own folders: data/, models/, results/eval/, results/{margins,frequency}/,
# results/{tables,figures,metrics}/. Each gathers the per-study targets of the
# rule files (data_all, train_all, prime_train, ...), which stay usable alone.


# Splits the M-TLAT / Top-GAP studies add to the study's (SynthSource): their
# split files, and M-TLAT's corrupted test sets, live in data/ too.
MTLAT_SPLITS = MTLAT["splits"] if MTLAT else []
EXTRA_SPLITS = [s for s in dict.fromkeys(MTLAT_SPLITS + TOPGAP["splits"]) if s not in SPLITS]


rule stage_data:
    input:
        rules.data_all.input,
        rules.frequency_data.input,
        expand("data/splits/{split}.parquet", split=EXTRA_SPLITS),
        expand("data/corrupted/{split}", split=[s for s in EXTRA_SPLITS if s in MTLAT_SPLITS]),


rule stage_train:
    input:
        rules.train_all.input,
        rules.prime_train.input,
        rules.mtlat_train.input,
        rules.topgap_train.input,
        rules.frequency_train.input,


rule stage_evaluate:
    input:
        rules.evaluate_all.input,
        rules.prime_evaluate.input,
        rules.mtlat_evaluate.input,
        rules.topgap_evaluate.input,


rule stage_frequency:
    input:
        rules.frequency_results.input,


rule stage_tables:
    input:
        rules.tables_all.input,
        rules.prime_tables.input,
        rules.mtlat_tables.input,
        rules.topgap_tables.input,
        rules.frequency_tables.input,


rule stage_report:
    input:
        rules.report.output,
