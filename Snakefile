# ctrlsparse workflow: grid of train jobs -> MLflow -> tables, plots, PDF report (results/<experiment>/).
#   snakemake --profile profiles/local                                   # the default grid (config.yaml)
#   snakemake --profile profiles/local --configfile workflow/presets/smoke.yaml
# Stages live in workflow/rules/, one file each; the training itself is `ctrlsparse train` (src/ctrlsparse).
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/purge.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    track,
    aggregate,
    plots,
    resolved_config,
    report,


rule all:
    default_target: True
    input:
        rules.report.output.pdf,
        rules.track.output,
        SUMMARIES,  # a run whose summary went missing (deleted, set aside as corrupt) is retrained, then the report
