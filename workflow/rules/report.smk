# Tables + figures + the paper's reference numbers -> results/<experiment>/report.pdf (reportlab).


rule resolved_config:
    output:
        f"{GRID}/config.yaml",
    params:
        config=json.dumps(config),
    log:
        f"{GRID_LOGS}/resolved_config.log",
    run:
        write_yaml(output[0], json.loads(params.config))


rule report:
    input:
        rules.plots.output,
        tables=rules.aggregate.output.settings,
        config=rules.resolved_config.output,
        paper=os.path.join(REPORT_SOURCES, "paper_results.csv"),
        captions=os.path.join(REPORT_SOURCES, "captions"),
    output:
        pdf=report(f"{GRID}/report.pdf", category="Report", caption="../../report/captions/report.rst"),
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables),
        plots=lambda wildcards, input: os.path.dirname(input[0]),
        title=f"ctrlsparse report: {config['experiment']}",
    log:
        f"{GRID_LOGS}/report.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse report --tables {params.tables:q} --plots {params.plots:q} --config {input.config:q}"
        " --paper {input.paper:q} --captions {input.captions:q} --title {params.title:q} --out {output.pdf:q}"
        " > {log:q} 2>&1"
