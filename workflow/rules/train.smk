# One job per run: `ctrlsparse train` into results/runs/<run key>/ (summary.json is written last). A run that
# another grid already trained (same key: same hyperparameters) is not trained again.
# metrics.csv, hparams.json and checkpoint.pt are not declared outputs on purpose: Snakemake deletes declared
# outputs before a job reruns, and a killed run resumes from its checkpoint. A diverged run exits 3 and a
# SIGTERM'd one (SLURM preemption/time limit) exits 143 after saving its checkpoint; the log names the run.
# A search run (method search) trains its steps, penalized runs with keys of their own, under the runs directory
# (--runs-root), one after the other inside its job; the grid's runs it may take as steps are trained first.


rule train:
    input:
        pretrained=pretrained_input,  # magnitude runs start from the dense run's weights
        steps=shared_steps_input,  # a search finds the grid's runs at its lambdas finished
    output:
        summary=f"{RUN_DIR}/{RUN_PATTERN}/{paths.SUMMARY}",
    params:
        args=train_args,
        out=lambda wildcards, output: os.path.dirname(output.summary),
        runs_root=runs_root_of,  # where a search trains its steps
        # gpu > 1: one DDP process per GPU of this node (torchrun picks a free port; --threads is shared out)
        launch=lambda wildcards, resources: (
            f"torchrun --standalone --nproc-per-node {resources.gpu} -m ctrlsparse" if resources.gpu > 1 else "ctrlsparse"
        ),
    log:
        f"{LOGS}/train/{RUN_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN_PATTERN}.tsv"
    threads: job_resource("threads")
    resources:
        mem_mb=job_memory,
        runtime=job_resource("runtime"),
        gpu=job_resource("gpu"),
        cpus_per_gpu=job_cpus_per_gpu,
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "{params.launch} train {params.args} --threads {threads} --out {params.out:q} --runs-root {params.runs_root:q}"
        ' --tracking-env "$CTRLSPARSE_MLFLOW_ENV"'  # workflow/rules/tracking.smk
        " > {log:q} 2>&1"
