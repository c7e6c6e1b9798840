# MLflow: create the store and experiment once, before the train jobs fan out (parallel first-time
# creation crashes SQLite). Train jobs read the env file this writes (as data, never sourced); they never
# fail because of MLflow. (`--tracking-uri=` keeps an empty URI, mlflow.enabled: false, one argument.)


rule mlflow_init:
    output:
        env=f"{RESULTS}/mlflow/tracking.env",
    params:
        uri=TRACKING_URI,
        experiment=config["experiment"],
    log:
        f"{LOGS}/mlflow_init.log",
    conda:
        "../../envs/ctrlsparse.yaml"
    shell:
        "ctrlsparse mlflow-init --tracking-uri={params.uri:q} --experiment {params.experiment:q}"
        " --shell-env {output.env:q} > {log:q} 2>&1"
