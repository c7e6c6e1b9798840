"""The workflow on a real SLURM: `snakemake --profile slurm`, typed in the project root, against a single-node
cluster (controller, accounting, one node with two fake GPUs) that tests/slurm/start_cluster.sh starts once per
session and tests/slurm/stop_cluster.sh always stops.

One grid (tests/slurm/config.yaml: two MLP runs of 20 epochs, every epoch checkpointed) goes through the profile
as typed plus two test settings: status checks 2 s after submission instead of 40, and SLURM logs in the temporary
workdir. While it runs, the constrained run's job is cancelled with scancel once it has a checkpoint; the profile's
retries must resubmit it and the run must resume from its checkpoint. Not marked slow on purpose: CI must run it.
The module took 170-220 s on 2 cores shared with other work, almost all of it the grid (each SLURM job pays ~35 s
of start-up: two Snakemake parses, torch, MLflow); the cluster starts in ~4 s (plus ~50 s of apt on a fresh
machine) and stops in ~4 s.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from workflow_cli import runs_of

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CLUSTER = ROOT / "tests" / "slurm"
CONFIG = CLUSTER / "config.yaml"
EPOCHS = 20
RUNS = [run.key for run in runs_of(yaml.safe_load(CONFIG.read_text()))]  # constrained model-wise 0.5, dense
VICTIM = RUNS[0]  # the run whose job is cancelled mid-training
GRID = "ctrlsparse-slurm-test"  # the config's experiment: results/<experiment>/ holds its tables and report


def comment(rule: str, key: str) -> str:
    """The sbatch --comment the SLURM plugin gives a job: rule and wildcard values, e.g. rule_train_wildcards_digits_..."""
    dataset, arch, setting, digest, seed = key.split("/")  # digits/mlp/constrained-model~0.5/64cb9e76/seed~0
    return f"rule_{rule}_wildcards_" + "_".join([dataset, arch, *setting.split("~"), digest, seed.split("~")[1]])


def test_the_profile_is_found_by_its_bare_name_in_the_project_root(monkeypatch):
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(ROOT)
    folder, profile = get_profile_dir("slurm")
    assert folder.resolve() == ROOT / "profiles" / "slurm" and profile.name == "config.v8+.yaml"
    import yaml

    settings = yaml.safe_load(profile.read_text())
    assert settings["executor"] == "slurm" and settings["slurm-logdir"].startswith("results/")
    assert settings["retries"] >= 1 and settings["slurm-status-command"] == "squeue"


def test_the_summary_and_mlflow_tags_name_the_slurm_job_that_trained_the_run(monkeypatch):
    from ctrlsparse.plumbing.provenance import slurm_job
    from ctrlsparse.tracking import run_tags

    for name in ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_CLUSTER_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_job() == {}
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu017")
    assert slurm_job() == {"job_id": "4242", "node": "gpu017"}
    training = {"run_key": RUNS[1], "method": "dense"}  # hparams.json: no summary yet
    assert run_tags(training)["slurm.job_id"] == "4242"
    finished = {**training, "slurm": {"job_id": "17"}}  # mirrored later by another job (purge, backfill)
    assert run_tags(finished)["slurm.job_id"] == "17" and "slurm.node" not in run_tags(finished)
    assert not any(tag.startswith("slurm.") for tag in run_tags({**training, "slurm": {}}))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running test cluster for the session; stopped afterwards whatever the tests did."""
    started = subprocess.run([str(CLUSTER / "start_cluster.sh")], capture_output=True, text=True, timeout=900)
    try:
        if started.returncode == 3:  # not root, or this machine has its own SLURM
            pytest.skip(started.stderr.strip())
        assert started.returncode == 0, started.stdout + started.stderr
        yield
    finally:
        stopped = subprocess.run([str(CLUSTER / "stop_cluster.sh")], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def slurm_jobs(since: str) -> list[dict[str, str]]:
    """Every job the cluster accounted for since ``since``, as sacct reports it."""
    fields = ["JobIDRaw", "State", "Comment", "ReqTRES", "ReqMem", "Account", "Partition"]
    out = subprocess.run(
        ["sacct", "-X", "-a", "--parsable2", "--noheader", "-S", since, "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def cancel_after_first_checkpoint(run_dir: Path, job_comment: str, process: subprocess.Popen) -> dict:
    """scancel the job training ``run_dir`` as soon as it has saved a checkpoint; what it had done by then."""
    deadline = time.monotonic() + 400
    while not (run_dir / "checkpoint.pt").exists():
        assert process.poll() is None, "snakemake ended before the job to cancel checkpointed"
        assert time.monotonic() < deadline, f"{run_dir} never checkpointed"
        time.sleep(0.05)
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    job_id = next(line.split("|")[0] for line in queue.splitlines() if line.split("|")[1] == job_comment)
    with open(run_dir / "metrics.csv") as handle:
        epochs_done = len(list(csv.DictReader(handle)))  # at least this many epochs are in the checkpoint
    subprocess.run(["scancel", job_id], check=True)
    return {"job_id": job_id, "epochs_done": epochs_done}


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The grid through `snakemake --profile slurm`, with one train job cancelled mid-run."""
    workdir = tmp_path_factory.mktemp("slurm")
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PATH=f"{SNAKEMAKE.parent}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    command = [
        str(SNAKEMAKE),
        "--profile",
        "slurm",  # resolved from the current directory, the project root
        "--directory",
        str(workdir),
        "--configfile",
        str(CONFIG),
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-logdir",
        str(workdir / "results" / "slurm_logs"),
    ]
    log = workdir / "snakemake.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            cancelled = cancel_after_first_checkpoint(
                workdir / "results" / "runs" / VICTIM, comment("train", VICTIM), process
            )
            returncode = process.wait(timeout=600)
        finally:
            if process.poll() is None:  # a hung run: SIGINT makes snakemake cancel its jobs
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
    assert returncode == 0, log.read_text()[-5000:]
    return SimpleNamespace(workdir=workdir, results=workdir / "results", jobs=slurm_jobs(since), cancelled=cancelled)


def mlflow_runs(results: Path) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(GRID)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == len({run.data.tags["run_key"] for run in runs}), "duplicate MLflow runs"
    return {run.data.tags["run_key"]: run for run in runs}


def test_every_train_job_ran_under_slurm_on_a_gpu_and_the_workflow_finished(slurm_run):
    jobs = {job["JobIDRaw"]: job for job in slurm_run.jobs}
    mlflow = mlflow_runs(slurm_run.results)
    assert sorted(mlflow) == sorted(RUNS)
    for key in RUNS:
        summary = json.loads((slurm_run.results / "runs" / key / "summary.json").read_text())
        assert summary["epochs"] == EPOCHS
        run = mlflow[key]
        assert run.info.status == "FINISHED"
        job = jobs[run.data.tags["slurm.job_id"]]  # the SLURM job that finished training
        assert summary["slurm"] == {
            "job_id": job["JobIDRaw"],
            "node": os.uname().nodename.split(".")[0],
            "cluster": "ctrlsparse-test",
        }
        assert job["State"] == "COMPLETED" and job["Comment"] == comment("train", key)
        assert "gres/gpu=1" in job["ReqTRES"] and (job["Account"], job["Partition"]) == ("ctrlsparse", "gpu")
        log = slurm_run.results / "slurm_logs" / "rule_train" / comment("train", key).split("wildcards_")[1]
        assert (log / f"{job['JobIDRaw']}.log").stat().st_size > 0
    # Only train (GPU) and purge (CPU) jobs were submitted; aggregate, plots, report ran locally.
    rules = {job["Comment"].split("_wildcards_")[0] for job in jobs.values()}
    assert rules == {"rule_train", "rule_purge"}
    for job in jobs.values():
        assert ("gres/gpu=1" in job["ReqTRES"]) == job["Comment"].startswith("rule_train")
    grid = slurm_run.results / GRID
    for name in ("runs.csv", "settings.csv", "layers.csv", "tables.md"):
        assert (grid / "tables" / name).stat().st_size > 0
    assert len((grid / "tables" / "runs.csv").read_text().splitlines()) == 1 + len(RUNS)
    assert (grid / "plots" / "control.png").stat().st_size > 0
    assert (grid / "report.pdf").read_bytes().startswith(b"%PDF")


def test_a_cancelled_train_job_is_resubmitted_and_resumes_from_its_checkpoint(slurm_run):
    cancelled = slurm_run.cancelled
    attempts = [job for job in slurm_run.jobs if job["Comment"] == comment("train", VICTIM)]
    assert [job["JobIDRaw"] for job in attempts][0] == cancelled["job_id"]
    assert [job["State"].split()[0] for job in attempts] == ["CANCELLED", "COMPLETED"]
    assert [job["ReqMem"] for job in attempts] == ["400M", "800M"]  # the retry asked for mem_mb x attempt
    run = mlflow_runs(slurm_run.results)[VICTIM]  # one MLflow run, continued by the retry
    assert run.info.status == "FINISHED" and run.data.tags["slurm.job_id"] == attempts[1]["JobIDRaw"]

    # The retry's log: it resumed after the epochs the cancelled job had checkpointed and trained only the rest.
    log = (slurm_run.results / "logs" / "train" / f"{VICTIM}.log").read_text()
    resumed = re.search(r"resuming from the checkpoint after epoch (\d+)", log)
    assert resumed, log
    kept = int(resumed.group(1))
    assert cancelled["epochs_done"] <= kept < EPOCHS
    trained = [int(epoch) for epoch in re.findall(r"^epoch +(\d+)/", log, flags=re.M)]
    assert trained == list(range(kept + 1, EPOCHS + 1))
    with open(slurm_run.results / "runs" / VICTIM / "metrics.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, EPOCHS + 1))
