# Tables and figures, each beside the papers' numbers where they give one.


rule table_filling:
    input:
        rules.evaluate_all.input,
    output:
        multiext("results/tables/filling_per_container", ".csv", ".md", ".tex"),
        figure="results/figures/filling_per_container.png",
        metrics="results/metrics/filling.json",
    params:
        p=j(config["tables"]),
        code=CODE["report"],
    log:
        "logs/tables/filling_per_container.log",
    benchmark:
        "logs/bench/tables/filling_per_container.tsv"
    shell:
        "python -m fillrobust table-filling --predictions {input} --params {params.p:q}"
        " --out results/tables/filling_per_container --figure {output.figure}"
        " --metrics {output.metrics} > {log} 2>&1"


rule tables_all:
    input:
        rules.table_filling.output,
