# Tables -> the report's figures (PNG), also shown with captions by `snakemake --report`.


rule plots:
    input:
        rules.aggregate.output.runs,
        rules.aggregate.output.settings,
        rules.aggregate.output.layers,
    output:
        control=figure("control", "control.png"),
        accuracy=figure("accuracy", "accuracy_vs_density.png"),
        size=figure("size", "accuracy_vs_size.png"),
        penalty=figure("penalty", "penalty_vs_density.png"),
        layers=figure("layers", "layer_density.png"),
        dynamics=figure("dynamics", "dynamics.png"),
        budget=figure("budget", "budget_control.png"),
    params:
        tables=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.control),
    log:
        f"{GRID_LOGS}/plots.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse plots --tables {params.tables:q} --out {params.out:q} > {log:q} 2>&1"
