# Tables -> the report's figures (PNG), also shown with captions by `snakemake --report`.


rule plots:
    input:
        rules.aggregate.output.runs,
        rules.aggregate.output.settings,
        rules.aggregate.output.layers,
    output:
        **{name: figure(name, filename) for name, (_, filename) in plots.FIGURES.items()},  # report/plots.py
    params:
        tables=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{GRID_LOGS}/plots.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse plots --tables {params.tables:q} --out {params.out:q} > {log:q} 2>&1"
