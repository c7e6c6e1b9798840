"""Mirror one run directory into an MLflow run (replacing any earlier mirror of the same run key)."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ctrlsparse import paths
from ctrlsparse.tracking.store import _client, _experiment_id, git_commit, with_retries

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
    """Tags of a mirrored run: grid axes, target/penalty, versions, git commit, then ``extra``."""
    tags = {key: _text(summary[key]) for key in AXIS_TAGS if key in summary}
    if summary.get("method") == "constrained":
        tags["target"] = _text(summary.get("target", ""))
    if summary.get("method") == "penalized":
        tags["penalty"] = _text(summary.get("penalty", ""))
    for name, version in (summary.get("versions") or {}).items():
        tags[f"version.{name}"] = str(version)
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    tags.update(extra or {})
    return tags


def _metric_batches(run_dir: Path, summary: dict[str, Any]) -> list[list[Any]]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    rows = read_metrics(paths.metrics_path(run_dir)) if paths.metrics_path(run_dir).exists() else []
    columns = set()
    for index, row in enumerate(rows):
        step = int(row.get("epoch", index))
        for key, value in row.items():
            if key != "epoch":
                columns.add(key)
                metrics.append(Metric(key, value, now + index, step))
    final_step = int(summary.get("epochs", len(rows)))
    for key, value in summary.items():
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if numeric and key not in columns and key not in ("seed", "epochs", "penalty"):
            metrics.append(Metric(key, float(value), now + len(rows), final_step))
    return [metrics[i : i + 1000] for i in range(0, len(metrics), 1000)]


def _mirror(run_dir: Path, tracking_uri: str, experiment: str, tags: dict[str, str] | None, started: float) -> str:
    from mlflow.entities import Param, RunStatus
    from mlflow.entities.view_type import ViewType

    summary = json.loads(paths.summary_path(run_dir).read_text())
    hparams_file = paths.hparams_path(run_dir)
    hparams = json.loads(hparams_file.read_text()) if hparams_file.exists() else {}
    key = summary["run_key"]
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, tracking_uri, experiment)
    run = client.create_run(experiment_id, run_name=key, tags=run_tags(summary, tags))
    run_id = run.info.run_id
    params = [Param(name, _text(value)[:6000]) for name, value in sorted(hparams.items())]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for batch in _metric_batches(run_dir, summary):
        client.log_batch(run_id, metrics=batch)
    plot = _dynamics_plot(run_dir)
    for path in (paths.summary_path(run_dir), paths.metrics_path(run_dir), hparams_file, plot):
        if path is not None and path.exists():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    # Replace, don't duplicate: drop every other run of this key (the previous mirror, or a half-finished one).
    previous = client.search_runs(
        [experiment_id], filter_string=f"tags.run_key = '{key}'", run_view_type=ViewType.ALL, max_results=1000
    )
    for old in previous:
        if old.info.run_id != run_id:
            _purge(client, old)
    record = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "seconds": round(time.perf_counter() - started, 3),  # imports included: the mirror's cost to the job
    }
    paths.mlflow_run_path(run_dir).write_text(json.dumps(record, indent=2) + "\n")
    return run_id


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


def _dynamics_plot(run_dir: Path) -> Path | None:
    try:
        from ctrlsparse.report.run_plot import plot_run_dynamics

        return plot_run_dynamics(run_dir, paths.dynamics_plot_path(run_dir))
    except Exception as error:  # a missing plot must not block the mirror
        print(f"ctrlsparse: warning: no dynamics plot for {run_dir}: {error}", file=sys.stderr)
        return None


def mirror_run(
    run_dir: str | Path, *, tracking_uri: str, experiment: str, tags: dict[str, str] | None = None
) -> str | None:
    """Mirror one finished run directory to MLflow; return the MLflow run id, or None (with a warning) on failure."""
    run_dir, started = Path(run_dir), time.perf_counter()
    try:
        return with_retries(lambda: _mirror(run_dir, tracking_uri, experiment, tags, started), what=f"mirror {run_dir}")
    except Exception as error:
        print(
            f"ctrlsparse: warning: could not mirror {run_dir} to MLflow at {tracking_uri} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); the run's files are kept",
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
