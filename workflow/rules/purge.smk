# Every finished structured run -> its purged model (purged.pt2, loadable by plain torch; purged.onnx, checked
# with onnxruntime), its size and its latency against the dense model (purge.json; params, MACs, both as % of
# dense, latency at batch 1 and at the batch a latency budget is stated at, else the training batch, on one thread;
# also merged into summary.json and mirrored to MLflow). A model that does not export to ONNX fails its purge job
# with one line in its log.
# (A search run trains no model of its own: nothing to purge; its steps are runs outside the grid.)
PURGED = [f"{RUN_DIR}/{run.key}/{paths.PURGE_SIZES}" for run in RUNS if grid.purged(run)]


rule purge:
    input:
        summary=rules.train.output.summary,
    output:
        model=f"{RUN_DIR}/{RUN_PATTERN}/{paths.PURGED_MODEL}",
        onnx=f"{RUN_DIR}/{RUN_PATTERN}/{paths.PURGED_ONNX}",
        sizes=f"{RUN_DIR}/{RUN_PATTERN}/{paths.PURGE_SIZES}",
    params:
        run=lambda wildcards, input: os.path.dirname(input.summary),
    log:
        f"{LOGS}/purge/{RUN_PATTERN}.log",
    threads: 1
    resources:
        mem_mb=job_resource("mem_mb"),
        runtime=job_resource("runtime"),
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ctrlsparse purge {params.run:q} --threads 1"
        ' --tracking-env "$CTRLSPARSE_MLFLOW_ENV" > {log:q} 2>&1'
