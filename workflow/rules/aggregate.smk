# The summary.json of every run of this grid -> results/<experiment>/tables/{runs,settings,layers}.csv + tables.md.


rule aggregate:
    input:
        summaries=SUMMARIES,
        purged=PURGED,  # the purge step adds params/MACs to the summaries
    output:
        runs=f"{TABLES}/{aggregate.RUNS}",
        settings=f"{TABLES}/{aggregate.SETTINGS}",
        layers=f"{TABLES}/{aggregate.LAYERS}",
        markdown=report(f"{TABLES}/{aggregate.MARKDOWN}", category="Tables", caption="../../report/captions/tables.rst"),
    params:
        out=lambda wildcards, output: os.path.dirname(output.runs),
        benchmarks=f"{RESULTS}/benchmarks/train",
    log:
        f"{GRID_LOGS}/aggregate.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse aggregate {input.summaries:q} --benchmarks {params.benchmarks:q} --out {params.out:q} > {log:q} 2>&1"
