# MLflow, files first: train and purge jobs mirror their run to the store and experiment named in this grid's
# env file, results/<experiment>/tracking.env (read as data, never sourced; `--tracking-uri=` keeps an empty
# URI, mlflow.enabled: false). `onstart` writes it with `ctrlsparse mlflow-init`, which also creates the store
# and the experiment once, before any job starts (parallel first-time creation crashes SQLite).
# The jobs find the file through $CTRLSPARSE_MLFLOW_ENV, neither as an input nor as a param: where a run is
# tracked is not part of the run, so a changed tracking setting or experiment name neither reruns a finished
# run (Snakemake's params/input rerun triggers) nor hides an unfinished one.
import subprocess

TRACKING_URI = grid.tracking_uri(config, RESULTS) or ""
TRACKING_ENV = f"{GRID}/tracking.env"
os.environ["CTRLSPARSE_MLFLOW_ENV"] = TRACKING_ENV


envvars:
    "CTRLSPARSE_MLFLOW_ENV",


def init_tracking():
    """`ctrlsparse mlflow-init` for this grid (log: results/<experiment>/logs/mlflow_init.log); an unreachable
    store is a warning there, a missing env file stops the workflow before any job."""
    os.makedirs(GRID_LOGS, exist_ok=True)
    command = ["ctrlsparse", "mlflow-init", f"--tracking-uri={TRACKING_URI}", "--experiment", config["experiment"]]
    with open(f"{GRID_LOGS}/mlflow_init.log", "w") as log:
        subprocess.run([*command, "--shell-env", TRACKING_ENV], stdout=log, stderr=subprocess.STDOUT, check=False)
    if not os.path.exists(TRACKING_ENV):
        raise WorkflowError(f"ctrlsparse mlflow-init wrote no {TRACKING_ENV}; see {GRID_LOGS}/mlflow_init.log")
