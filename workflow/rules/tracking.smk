# MLflow, files first. Train and purge jobs mirror their run to the store and experiment named in this grid's env
# file, results/<experiment>/tracking.env (read as data, never sourced; an empty URI: mlflow.enabled false), which
# `onstart` writes with `ctrlsparse mlflow-init` (init_tracking in common.smk), creating the store and experiment
# once before any job starts (parallel first-time creation crashes SQLite). The jobs find the file through
# $CTRLSPARSE_MLFLOW_ENV, neither as an input nor as a param: where a run is tracked is not part of the run, so a
# changed tracking setting or experiment neither reruns a finished run (Snakemake's params/input rerun triggers)
# nor hides an unfinished one.
#
# A run this grid reuses (trained by another grid: same key) is copied into this grid's experiment once every run
# is finished and purged, without writing into its directory; runs the experiment holds finished are skipped.
# A changed tracking setting or experiment reruns this rule (params), never a train job.
rule track:
    input:
        summaries=SUMMARIES,
        purged=PURGED,
    output:
        f"{GRID}/tracked",
    params:
        uri=TRACKING_URI,
        experiment=config["experiment"],
        runs=lambda wildcards, input: [os.path.dirname(summary) for summary in input.summaries],
    log:
        f"{GRID_LOGS}/track.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse track --missing {params.runs:q} --tracking-uri={params.uri:q} --experiment {params.experiment:q}"
        " > {log:q} 2>&1 && touch {output:q}"
