"""Helpers of the reliability tests (tests/test_reliability_*.py): real `ctrlsparse train` processes, signals
sent to them, a tiny real Snakemake grid, and an MLflow SQLite store read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# One short digits run: an epoch takes ~0.1 s, so a signal lands while the loop runs.
FLAGS = ["--arch", "mlp", "--target", "0.4", "--epochs", "60", "--threads", "1", "--seed", "0"]
FINAL = ("expected_density", "eval_density", "test_accuracy", "test_loss", "train_loss", "multipliers")


def job_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_train(out: Path, *flags: str, log: Path) -> subprocess.Popen:
    """`ctrlsparse train` as its own process (stdout+stderr to ``log``), like a scheduler starts it."""
    command = [sys.executable, "-m", "ctrlsparse", "train", *flags, "--out", str(out)]
    with open(log, "w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=job_env())


def wait_for(condition: Callable[[], Any], what: str, process: subprocess.Popen | None = None, timeout=120.0) -> Any:
    """Poll ``condition`` every 20 ms until it is truthy; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process ended (rc {process.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def run_mlflow_runs(uri: str, experiment: str) -> list:
    """Every run of the experiment, deleted ones included (a duplicate must not hide among them)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], run_view_type=ViewType.ALL, max_results=1000)


def metric_steps(uri: str, run_id: str, key: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def pids_of_train_jobs(workdir: Path) -> list[int]:
    """Processes running `ctrlsparse train` with ``workdir`` as their working directory (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        is_train = any(w.endswith(b"ctrlsparse") for w in words) and b"train" in words  # not its bash -c parent
        if is_train and Path(cwd) == workdir.resolve():
            found.append(int(entry.name))
    return found


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def one_run_config(workdir: Path, mlflow: bool = True, **hparams: Any) -> Path:
    """A grid of one constrained digits MLP run (target 0.4, seed 0) written as a Snakemake --configfile."""
    config = {
        "experiment": "reliability",
        "grid": {
            "datasets": ["digits"],
            "archs": ["mlp"],
            "seeds": [0],
            "constrained": {"scopes": ["model"], "targets": [0.4]},
            "penalized": {"penalties": []},
            "dense": False,
            "magnitude": {"targets": []},
        },
        "hparams": hparams,
        "mlflow": {"enabled": mlflow},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]


def snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=job_env())
