# Helpers shared by the rules: config validation, the grid, paths and train-job arguments.
# Training logic lives in the ctrlsparse package; this file only decides which `ctrlsparse train` calls to make.
import json
import os
import shlex
import subprocess
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))
import grid  # noqa: E402  (workflow/grid.py: plain-Python config checks and run expansion)
from ctrlsparse import identity  # noqa: E402
from ctrlsparse.plumbing import paths  # noqa: E402  (every filename)
from ctrlsparse.report import aggregate, plots  # noqa: E402  (the tables' and figures' names)

# 1. The JSON schema (types, ranges, defaults), then names against the library's registries.
try:
    validate(config, schema=str(grid.SCHEMA))
except WorkflowError:
    raise WorkflowError(f"Invalid config: {grid.explain_schema_error(config)}") from None
try:
    RUNS = grid.check_config(config)
except grid.ConfigError as error:
    raise WorkflowError(f"Invalid config: {error}") from None

# ... then against the archs and this machine (workflow/preflight.py): layer-wise target lists and the results
# directory while parsing (dry runs too; cluster jobs skip it), the data sets only when jobs will really run
# (onstart: Snakemake skips it in dry runs and cluster jobs).
import preflight  # noqa: E402

if workflow.is_main_process:
    preflight.stop_on_error(preflight.check_config, config)


# The warm job server (workflow/job_server.py, config key job_server) for local runs: train/purge/track jobs
# fork from one process that imported torch once. Stopped however the workflow ends.
import job_server  # noqa: E402


onstart:
    preflight.stop_on_error(preflight.check_data, RUNS, config)
    init_tracking()  # workflow/rules/tracking.smk: the MLflow store and experiment, before any job
    job_server.start(config["job_server"], workflow.local_exec, f"{config['results']}/logs/job_server.log")


onsuccess:
    job_server.stop()


onerror:
    job_server.stop()


# Jobs call the `ctrlsparse` of the environment snakemake runs in, even from a venv that is not activated
# (with --software-deployment-method conda, the job's conda env comes first on PATH instead).
envvars:
    "PATH",


# envs/ctrlsparse.post-deploy.sh installs the project from here into a --software-deployment-method conda env.
os.environ.update(CTRLSPARSE_SOURCE=workflow.basedir)
BIN = os.path.dirname(sys.executable)
SEARCH_PATH = os.environ["PATH"]
if SEARCH_PATH.split(os.pathsep)[0] != BIN:
    os.environ["PATH"] = BIN + os.pathsep + SEARCH_PATH

# 2. Paths: every output lands under the results directory (config key `results`). Runs are shared by every grid
# (a run's key is its identity: ctrlsparse.identity), the tables, figures and report belong to this grid alone.
RESULTS = config["results"]
RUN_DIR = f"{RESULTS}/{paths.RUN_ROOT}"
RUN_PATTERN = identity.RUN_PATTERN  # {dataset}/{arch}/{variant}~{level}/{hash}/seed~{seed}
LOGS = f"{RESULTS}/logs"  # the runs' logs (logs/train/<run key>.log, logs/purge/...)
GRID = f"{RESULTS}/{config['experiment']}"  # this grid's own outputs
TABLES = f"{GRID}/tables"
PLOTS = f"{GRID}/plots"
GRID_LOGS = f"{GRID}/logs"
REPORT_SOURCES = os.path.join(workflow.basedir, "report")
# MLflow (see tracking.smk): the jobs read the store and experiment from this grid's env file, named to them by
# an environment variable, so that neither is a train job's input or param.
TRACKING_URI = grid.tracking_uri(config, RESULTS) or ""
TRACKING_ENV = f"{GRID}/tracking.env"
os.environ["CTRLSPARSE_MLFLOW_ENV"] = TRACKING_ENV


envvars:
    "CTRLSPARSE_MLFLOW_ENV",


SUMMARIES = [f"{RUN_DIR}/{run.key}/{paths.SUMMARY}" for run in RUNS]
if workflow.is_main_process:  # an unparsable summary.json is moved aside, so its train job reruns
    preflight.set_aside_corrupt_summaries(SUMMARIES)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    arch=r"[A-Za-z0-9_.:-]+",  # torchvision:resnet18, module:pkg.mod:fn
    variant=identity.VARIANT_PATTERN,  # from the method registry and the scopes
    level=identity.LEVEL_PATTERN,  # targets, a penalty or 1; budget runs: the budget
    hash=rf"[0-9a-f]{{{identity.HASH_LENGTH}}}",
    seed=r"\d+",


def run_of(wildcards):
    return grid.find_run(RUNS, dict(wildcards))


def train_args(wildcards):
    """The `ctrlsparse train` flags of one run, shell-quoted."""
    return shlex.join(grid.train_args(run_of(wildcards), config))


def pretrained_input(wildcards):
    """The summary of the dense run a magnitude run prunes (it must finish first); nothing for other runs."""
    run = run_of(wildcards)
    return str(paths.summary_path(grid.pretrained_dir(run, config))) if run.pretrained else []


def shared_steps_input(wildcards):
    """The summaries of the grid's runs that a search may take as steps (it must find them finished, never train
    them beside the grid's own train job); nothing for other runs."""
    return [f"{RUN_DIR}/{run.key}/{paths.SUMMARY}" for run in grid.shared_steps(run_of(wildcards), RUNS)]


def runs_root_of(wildcards, output):
    """The runs directory that holds a train job's run (RUN_DIR, found from its output): a search's steps go there."""
    run_dir = os.path.dirname(output.summary)
    return run_dir[: len(run_dir) - len(RUN_PATTERN.format(**dict(wildcards))) - 1]


def job_resource(name):
    """A resource of the train job (threads, mem_mb, runtime, gpu) from the config's resources table."""
    return lambda wildcards: grid.resources_for(config, wildcards.dataset, wildcards.arch)[name]


def job_memory(wildcards, attempt):
    """mem_mb of a train job times the attempt: a retried job (e.g. killed for memory) asks for more."""
    return job_resource("mem_mb")(wildcards) * attempt


def job_cpus_per_gpu(wildcards):
    """SLURM's --cpus-per-gpu of a GPU train job (its threads per GPU); 0 for CPU jobs (--cpus-per-task)."""
    resources = grid.resources_for(config, wildcards.dataset, wildcards.arch)
    return max(1, resources["threads"] // resources["gpu"]) if resources["gpu"] else 0


def figure(name, filename):
    """A figure output, shown by `snakemake --report` with its caption from report/captions/."""
    return report(f"{PLOTS}/{filename}", caption=f"../../report/captions/{name}.rst", category="Figures")


def write_yaml(path, data):
    with open(path, "w") as handle:
        handle.write("# The workflow's config after presets, --config and schema defaults.\n")
        yaml.safe_dump(data, handle, sort_keys=False, default_flow_style=None)


def init_tracking():
    """`ctrlsparse mlflow-init` for this grid (log: results/<experiment>/logs/mlflow_init.log); an unreachable
    store is a warning there, a missing env file stops the workflow before any job."""
    os.makedirs(GRID_LOGS, exist_ok=True)
    command = ["ctrlsparse", "mlflow-init", f"--tracking-uri={TRACKING_URI}", "--experiment", config["experiment"]]
    with open(f"{GRID_LOGS}/mlflow_init.log", "w") as log:
        subprocess.run([*command, "--shell-env", TRACKING_ENV], stdout=log, stderr=subprocess.STDOUT, check=False)
    if not os.path.exists(TRACKING_ENV):
        raise WorkflowError(f"ctrlsparse mlflow-init wrote no {TRACKING_ENV}; see {GRID_LOGS}/mlflow_init.log")
