# Tables and figures, each beside the papers' numbers where they give one.
from fillrobust.report.claims import claims_inputs

CLAIMS_FILE = "workflow/claims.yaml"


rule table_filling:
    input:
        clean_eval(STRATEGIES),
    output:
        table=multiext("results/tables/filling_per_container", ".csv", ".md", ".tex"),
        figure="results/figures/filling_per_container.png",
        metrics="results/metrics/filling.json",
    params:
        p=j({**config["tables"], "test_containers": TEST_CONTAINERS}),
        out=out_prefix("table"),
        code=CODE["report"],
    log:
        "logs/tables/filling_per_container.log",
    benchmark:
        "logs/bench/tables/filling_per_container.tsv"
    shell:
        "python -m fillrobust table-filling --predictions {input} --params {params.p:q}"
        " --out {params.out} --figure {output.figure}"
        " --metrics {output.metrics} > {log} 2>&1"




rule table_sensitivity:
    input:
        frozen=clean_eval(FROZEN_MODELS, FROZEN_SPLITS),
        fixed_full=FIXED_FULL_EVALS,
        eps=clean_eval(EPS_MODELS),
        selections=expand("models/{split}/selection/eps_source.json", split=SPLITS),
    output:
        frozen=multiext("results/tables/sensitivity_frozen_layers", ".csv", ".md", ".tex"),
        eps=multiext("results/tables/sensitivity_eps_source", ".csv", ".md", ".tex"),
        fixed_vs_full=multiext("results/tables/transfer_fixed_vs_full", ".csv", ".md", ".tex"),
        frozen_figure="results/figures/sensitivity_frozen_layers.png",
        eps_figure="results/figures/sensitivity_eps_source.png",
        transfer_figure="results/figures/transfer_fixed_vs_full.png",
    params:
        # each fixed-vs-full strategy's source eps ("selected": read from the selection files)
        p=j({**config["tables"], "source_eps": fixed_vs_full_sources(config)}),
        tables=out_dir("frozen"),
        figures=out_dir("frozen_figure"),
        code=CODE["report"],
    log:
        "logs/tables/sensitivity.log",
    benchmark:
        "logs/bench/tables/sensitivity.tsv"
    shell:
        "python -m fillrobust table-sensitivity --frozen {input.frozen} --fixed-full {input.fixed_full}"
        " --eps {input.eps}"
        " --selections {input.selections} --params {params.p:q} --tables {params.tables}"
        " --figures {params.figures} > {log} 2>&1"


rule table_robustness:
    input:
        threats=benchmark_eval("threats"),
        corruptions=benchmark_eval("corruptions"),
    output:
        scores=multiext("results/tables/robustness_scores", ".csv", ".md", ".tex"),
        severity=multiext("results/tables/corruption_severity", ".csv", ".md", ".tex"),
        per_container=multiext("results/tables/robust_per_container", ".csv", ".md", ".tex"),
        scores_figure="results/figures/robustness_scores.png",
        norms_figure="results/figures/robustness_median_norms.png",
        severity_figure="results/figures/corruption_severity.png",
    params:
        p=j({"decimals": config["tables"]["decimals"], "reference": "ST",
             "threats": list(config["evaluate"]["threats"]), "corruptions": config["evaluate"]["corruptions"]["names"],
             "threat_attacks": {name: spec["attack"] for name, spec in config["evaluate"]["threats"].items()},
             "suite": config["evaluate"]["corruptions"]["suite"],
             "corruption_images": config["evaluate"]["corruptions"]["images"]}),
        tables=out_dir("scores"),
        figures=out_dir("scores_figure"),
        code=CODE["report_robustness"],
    log:
        "logs/tables/robustness.log",
    benchmark:
        "logs/bench/tables/robustness.tsv"
    shell:
        "python -m fillrobust table-robustness --threats {input.threats} --corruptions {input.corruptions}"
        " --params {params.p:q} --tables {params.tables} --figures {params.figures} > {log} 2>&1"


# The papers' claims (workflow/claims.yaml) checked on the tables `all` builds:
# its inputs are the tables the claims read that exist under the current
# params (others are reported n/a); editing a claim reruns only this rule.
rule claims:
    input:
        claims=CLAIMS_FILE,
        tables=lambda w: claims_inputs(CLAIMS_FILE, rules.all.input, known=known_tables()),
    output:
        table=multiext("results/tables/claims", ".csv", ".md", ".tex"),
    params:
        p=lambda w: j({"decimals": config["tables"]["decimals"], "known": known_tables()}),
        out=out_prefix("table"),
        code=CODE["claims"],
    log:
        "logs/tables/claims.log",
    benchmark:
        "logs/bench/tables/claims.tsv"
    shell:
        "python -m fillrobust claims --claims {input.claims} --tables {input.tables} --params {params.p:q}"
        " --out {params.out} > {log} 2>&1"


rule tables_all:
    input:
        rules.claims.output,
        rules.table_robustness.output,
        rules.table_filling.output,
        rules.table_sensitivity.output,
        "results/figures/ccm_sheets",
