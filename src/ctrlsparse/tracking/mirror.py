"""Mirror one run directory into an MLflow run (replacing any earlier mirror of the same run key)."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrlsparse import feasibility
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_json
from ctrlsparse.plumbing.provenance import git_commit, slurm_job
from ctrlsparse.registry import method_spec
from ctrlsparse.tracking.from_files import log_dataset, training_times
from ctrlsparse.tracking.store import experiment_id, store_client, with_retries

# Summary keys that become tags (the grid axes and identity); numbers in the summary become final metrics.
AXIS_TAGS = ("dataset", "arch", "method", "variant", "target_scope", "level", "seed", "run_key", "hparams_hash")


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as floats; empty cells are dropped."""
    with open(path, newline="") as handle:
        return [
            {key: float(value) for key, value in row.items() if value not in ("", None)}
            for row in csv.DictReader(handle)
        ]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_text(item) for item in value)
    return str(value)


def run_tags(summary: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Tags of a mirrored run: grid axes, target/penalty, versions, git commit, SLURM job, then ``extra``."""
    tags = {key: _text(summary[key]) for key in AXIS_TAGS if key in summary}
    spec = method_spec(summary.get("method"))
    if spec and spec.constraints:  # the targets its multipliers aimed at
        tags["target"] = _text(summary.get("target", ""))
    if spec and spec.level == "penalty":
        tags["penalty"] = _text(summary.get("penalty", ""))
    tags.update(feasibility.as_tags(summary))  # feasible, fractional_gates, target_missed
    for name, version in (summary.get("versions") or {}).items():
        tags[f"version.{name}"] = str(version)
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    # The SLURM job that trained the run (from its summary; while it trains, the job running this process).
    job = summary["slurm"] if "slurm" in summary else slurm_job()
    tags.update({f"slurm.{key}": value for key, value in job.items()})
    tags.update(extra or {})
    return tags


def _metric_batches(run_dir: Path, summary: dict[str, Any] | None, base_ms: int) -> list[list[Any]]:
    """Every metrics.csv cell (step = epoch) and the summary's other numbers, in batches of 1,000.

    Timestamps are ``base_ms`` + row index, so logging the same rows into the same run again (a retried or
    resumed mirror) repeats identical metrics, which MLflow's SQL store skips instead of duplicating.
    """
    from mlflow.entities import Metric

    metrics = []
    rows = read_metrics(paths.metrics_path(run_dir)) if paths.metrics_path(run_dir).exists() else []
    columns = set()
    for index, row in enumerate(rows):
        step = int(row.get("epoch", index))
        for key, value in row.items():
            if key != "epoch":
                columns.add(key)
                metrics.append(Metric(key, value, base_ms + index, step))
    final_step = int((summary or {}).get("epochs", len(rows)))
    for key, value in {**(summary or {}), **feasibility.as_metrics(summary or {})}.items():
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if numeric and key not in columns and key not in ("seed", "epochs", "penalty"):
            metrics.append(Metric(key, float(value), base_ms + len(rows), final_step))
    return [metrics[i : i + 1000] for i in range(0, len(metrics), 1000)]


def _identity(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(what names the run: the summary if finished, else hparams.json; the summary or None; the hparams)."""
    hparams_file = paths.hparams_path(run_dir)
    hparams = json.loads(hparams_file.read_text()) if hparams_file.exists() else {}
    summary_file = paths.summary_path(run_dir)
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    identity = summary or hparams
    if "run_key" not in identity:
        raise FileNotFoundError(f"{run_dir} holds neither summary.json nor hparams.json with a run key")
    return identity, summary, hparams


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run directory's ``mlflow_run.json`` (which MLflow run mirrors it), or None."""
    try:
        return json.loads(paths.mlflow_run_path(run_dir).read_text())
    except (OSError, ValueError):
        return None


def _continuable(client: Any, record: dict[str, Any] | None, tracking_uri: str, experiment: str) -> Any:
    """The recorded MLflow run if it lives in this store and experiment and never finished, else None."""
    from mlflow.exceptions import MlflowException

    if not record or record.get("tracking_uri") != tracking_uri or record.get("experiment") != experiment:
        return None
    try:
        run = client.get_run(record["run_id"])
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return run if run.info.lifecycle_stage == "active" and run.info.status != "FINISHED" else None


def _begin(
    client: Any, run_dir: Path, tracking_uri: str, experiment: str, tags: dict[str, str] | None, keep: bool = True
) -> Any:
    """Continue this directory's unfinished MLflow run (same id) or create one; mark it RUNNING, record it
    (``keep=False``: always a new run, and nothing written into the run directory)."""
    from mlflow.entities import Param, RunTag

    identity, summary, hparams = _identity(run_dir)
    found_id = experiment_id(client, tracking_uri, experiment)
    record = read_record(run_dir) if keep else None
    run = _continuable(client, record, tracking_uri, experiment)
    continued = run is not None
    if not continued:
        start_ms = training_times(run_dir, summary)[0] if summary else int(time.time() * 1000)
        name, run_tag_values = identity["run_key"], run_tags(identity, tags)
        run = client.create_run(found_id, start_time=start_ms, run_name=name, tags=run_tag_values)
        record = {"run_id": run.info.run_id, "started_ms": start_ms}
        logged: dict[str, str] = {}
    else:
        client.update_run(run.info.run_id, status="RUNNING")
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in run_tags(identity, tags).items()])
        logged = run.data.params
    # MLflow refuses to change a logged param; a resumed run keeps the first value of execution-only fields.
    params = [Param(name, _text(value)[:6000]) for name, value in sorted(hparams.items()) if name not in logged]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    log_dataset(client, run.info.run_id, run_dir)
    record = {
        "run_id": run.info.run_id,
        "experiment_id": found_id,
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "started_ms": record.get("started_ms", int(time.time() * 1000)),
    }
    if keep:
        write_json(paths.mlflow_run_path(run_dir), record)
    return record


def _mirror(
    run_dir: Path, tracking_uri: str, experiment: str, tags: dict[str, str] | None, status: str, keep: bool = True
) -> str:
    identity, summary, _ = _identity(run_dir)
    key = identity["run_key"]
    client = store_client(tracking_uri)
    record = _begin(client, run_dir, tracking_uri, experiment, tags, keep)
    run_id = record["run_id"]
    for batch in _metric_batches(run_dir, summary, record["started_ms"]):
        client.log_batch(run_id, metrics=batch)
    figure = paths.dynamics_plot_path(run_dir)  # drawn by the train job that ended the run, if any
    for path in (paths.summary_path(run_dir), paths.metrics_path(run_dir), paths.hparams_path(run_dir), figure):
        if path.exists():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status, end_time=training_times(run_dir, summary)[1])
    _drop_others(client, record["experiment_id"], key, run_id)
    return run_id


def _drop_others(client: Any, experiment_id: str, key: str, run_id: str) -> None:
    """Replace, don't duplicate: purge every other run of this key (the previous mirror, or a half-finished one)."""
    from mlflow.entities.view_type import ViewType

    previous = client.search_runs(
        [experiment_id], filter_string=f"tags.run_key = '{key}'", run_view_type=ViewType.ALL, max_results=1000
    )
    for old in previous:
        if old.info.run_id != run_id:
            _purge(client, old)


def _purge(client: Any, run: Any) -> None:
    """Delete a run; on SQL stores also remove it for good (and its local artifacts) so no trace remains."""
    import shutil
    from urllib.parse import unquote, urlparse

    if run.info.lifecycle_stage != "deleted":
        client.delete_run(run.info.run_id)
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if hasattr(store, "_hard_delete_run"):
        store._hard_delete_run(run.info.run_id)
        uri = urlparse(run.info.artifact_uri or "")
        if uri.scheme == "file":
            shutil.rmtree(Path(unquote(uri.path)).parent, ignore_errors=True)


def mirror_run(
    run_dir: str | Path,
    *,
    tracking_uri: str,
    experiment: str,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    keep: bool = True,
) -> str | None:
    """Mirror a run directory to MLflow and end its run with ``status`` (FAILED for a diverged run).

    Continues the directory's own unfinished MLflow run (see :func:`open_run`) under the same id, else creates
    one; any other run of the same run key is purged. Returns the run id, or None (with a warning) on failure.
    ``keep=False`` copies a finished run into one more experiment (a run that another grid trained) and leaves
    its directory alone: no ``mlflow_run.json`` (it keeps naming the run's own experiment). The run's dynamics
    figure is logged when its directory holds one (``dynamics.png``, drawn by the train job); nothing is drawn here.
    """
    run_dir = Path(run_dir)
    action = lambda: _mirror(run_dir, tracking_uri, experiment, tags, status, keep)  # noqa: E731
    return _never_fatal(action, f"mirror {run_dir}", tracking_uri)


def open_run(
    run_dir: str | Path, *, tracking_uri: str, experiment: str, tags: dict[str, str] | None = None
) -> str | None:
    """Start the MLflow run of a training run (status RUNNING, params, id in ``mlflow_run.json``).

    A rerun of a killed, preempted or failed run continues the same MLflow run; a finished one gets a new run
    that replaces it when it ends. Returns the run id, or None (with a warning) if MLflow cannot be reached.
    """
    run_dir = Path(run_dir)

    def begin() -> str:
        return _begin(store_client(tracking_uri), run_dir, tracking_uri, experiment, tags)["run_id"]

    return _never_fatal(begin, f"open the MLflow run of {run_dir}", tracking_uri)


def end_run(run_dir: str | Path, status: str) -> str | None:
    """Set the status (e.g. KILLED) of the MLflow run recorded in ``run_dir``; None if there is none or on error."""
    record = read_record(run_dir)
    if not record:
        return None

    def end() -> str:
        store_client(record["tracking_uri"]).set_terminated(record["run_id"], status)
        return record["run_id"]

    return _never_fatal(end, f"mark the MLflow run of {run_dir} {status}", record["tracking_uri"])


def _never_fatal(action: Callable[[], str], what: str, tracking_uri: str) -> str | None:
    try:
        return with_retries(action, what=what)
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        print(
            f"ctrlsparse: warning: could not {what} at {tracking_uri} ({type(error).__name__}: {first_line}); "
            "the run's files are kept",
            file=sys.stderr,
        )
        return None


def find_runs(roots: list[str]) -> list[Path]:
    """Run directories: each root that holds a summary.json, or every such directory below it."""
    found: list[Path] = []
    for root in map(Path, roots):
        if paths.summary_path(root).exists():
            found.append(root)
        else:
            found += sorted(summary.parent for summary in root.rglob(paths.SUMMARY))
    return found
