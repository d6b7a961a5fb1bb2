# fillrobust: the whole study as one DAG. Parameters come from params.yaml
# (embedded default); `--configfile params/paper.yaml` switches to full scale.
# The configuration is validated before any job is planned or run.
from snakemake.utils import min_version

min_version("9.0")

# Read params.yaml and every --configfile with the project's loader first: a YAML error or a
# key given twice (YAML keeps the last) is named by file and line, every file at once
# (Snakemake's own reading of params.yaml says only "not valid JSON or YAML").
from fillrobust.config import check_unique_keys

check_unique_keys("params.yaml", *workflow.configfiles)


configfile: "params.yaml"


envvars:
    "PATH",  # jobs find the venv's python through it (see common.smk)


include: "workflow/rules/common.smk"
include: "workflow/rules/frequency_common.smk"  # helpers data.smk's derive_variant needs too
include: "workflow/rules/data.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/prime.smk"
include: "workflow/rules/frequency.smk"
include: "workflow/rules/mtlat.smk"
include: "workflow/rules/topgap.smk"
include: "workflow/rules/report.smk"  # the results report: reads everything `all` builds
include: "workflow/rules/targets.smk"  # one target per DVC stage (dvc.yaml)


rule all:
    default_target: True
    input:
        rules.tables_all.input,
        rules.frequency_all.input,
        rules.prime_all.input,
        rules.mtlat_tables.input,
        rules.topgap_all.input,
        rules.report.output,
