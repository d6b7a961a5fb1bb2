# The results report (issue 16): one self-contained HTML page of every table,
# figure and claim the run produced, the run's deviations from the paper
# profile and its provenance; and the DVC metrics (`dvc metrics show/diff`)
# and plot data (`dvc plots`) read from the same tables. The last job of `all`.

PAPER_PROFILE = "params/paper.yaml"
REPORT_METRICS = ["results/metrics/headline.json", "results/metrics/robustness.json"]
REPORT_PLOTS = [f"results/plots/{name}.csv"
                for name in ("sensitivity_frozen_layers", "sensitivity_eps_source", "filling_per_container")]


rule report:
    input:
        # everything `all` builds but the report itself: a table or figure that
        # another rule file adds to `all` is in the report (and reruns it) too
        results=lambda w: [f for f in rules.all.input if f not in set(rules.report.output)],
        claims=CLAIMS_FILE,
        paper=PAPER_PROFILE,
    output:
        html="results/report/index.html",
        metrics=REPORT_METRICS,
        plots=REPORT_PLOTS,
    params:
        # all params: the report shows their hash and where they differ from the paper profile
        p=j(config),
        metrics=lambda w, output: os.path.dirname(output.metrics[0]),
        plots=lambda w, output: os.path.dirname(output.plots[0]),
        code=CODE["results_report"],
    log:
        "logs/report/report.log",
    benchmark:
        "logs/bench/report/report.tsv"
    shell:
        "python -m fillrobust report --params {params.p:q} --out {output.html} --tables results/tables"
        " --figures results/figures --metrics {params.metrics} --plots {params.plots}"
        " --claims {input.claims} --paper {input.paper} --models models --bench logs/bench"
        " --inputs {input.results} > {log} 2>&1"
