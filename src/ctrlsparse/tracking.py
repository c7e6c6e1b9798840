"""Mirror finished run directories to MLflow. Files first, MLflow second.

A run directory (``hparams.json``, ``metrics.csv``, ``summary.json``) is the source of truth; this module copies
it into an MLflow experiment: run name = run key, tags for every grid axis plus the git commit, all hparams as
params, every ``metrics.csv`` column as a per-epoch metric, and the files plus a dynamics plot as artifacts.

- **Idempotent.** Runs are indexed by the tag ``run_key``: mirroring again replaces the previous MLflow run
  (deleted, and purged on SQL stores), so reruns never leave duplicates. The id lands in ``mlflow_run.json``.
- **Never fatal.** Any MLflow failure prints a warning and returns ``None``; the files stay. SQLite's
  "database is locked" is retried with backoff.
- **Create the store once** (:func:`init_store`, the workflow's ``mlflow_init`` rule) before parallel jobs
  log: first-time schema creation from parallel processes crashes SQLite.

``mlflow`` is imported lazily (it costs seconds); nothing here imports torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ctrlsparse import paths

T = TypeVar("T")
DEFAULT_EXPERIMENT = "ctrlsparse"
# Summary keys that become tags (the grid axes and identity); numbers in the summary become final metrics.
AXIS_TAGS = (
    "dataset",
    "arch",
    "method",
    "variant",
    "target_scope",
    "level",
    "seed",
    "run_key",
    "hparams_hash",
)
RETRIES = 6


def default_uri(results: str | Path = "results") -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else the project's SQLite file ``<results>/mlflow/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + str(
        (Path(results) / "mlflow" / "mlflow.db").resolve()
    )


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def _quiet_http() -> None:
    # MLflow retries an unreachable server for minutes by default; a training job should not wait that long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def with_retries(action: Callable[[], T], *, what: str, tries: int = RETRIES) -> T:
    """Run ``action``, retrying with exponential backoff while SQLite reports "database is locked"."""
    for attempt in range(tries):
        try:
            return action()
        except Exception as error:
            if "database is locked" not in str(error) or attempt == tries - 1:
                raise
            delay = 0.5 * 2**attempt * (1 + random.random())
            print(f"ctrlsparse: {what}: database is locked, retrying in {delay:.1f} s", file=sys.stderr)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _client(tracking_uri: str) -> Any:
    _quiet_http()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: Any, tracking_uri: str, experiment: str) -> str:
    """Get the experiment by name, creating it (artifacts next to a SQLite file) if missing."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    db = sqlite_path(tracking_uri)
    location = (db.parent / "artifacts" / experiment).resolve().as_uri() if db else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except Exception:
        found = client.get_experiment_by_name(experiment)  # another process won the race
        if found is None:
            raise
        return found.experiment_id


def init_store(tracking_uri: str, experiment: str) -> str:
    """Create the tracking store (SQLite schema) and the experiment once; return the experiment id."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    client = _client(tracking_uri)
    return with_retries(lambda: _experiment_id(client, tracking_uri, experiment), what="mlflow init")


def git_commit() -> str | None:
    """Commit of the project checkout (``-dirty`` if tracked files changed); ``$CTRLSPARSE_GIT_COMMIT`` wins."""
    if os.environ.get("CTRLSPARSE_GIT_COMMIT"):
        return os.environ["CTRLSPARSE_GIT_COMMIT"]
    for where in (Path(__file__).resolve().parents[2], Path.cwd()):
        try:
            commit = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        return commit + ("-dirty" if dirty else "")
    return None


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


def _mirror(run_dir: Path, tracking_uri: str, experiment: str, tags: dict[str, str] | None) -> str:
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
        from ctrlsparse.report.plots import plot_run_dynamics

        return plot_run_dynamics(run_dir, paths.dynamics_plot_path(run_dir))
    except Exception as error:  # a missing plot must not block the mirror
        print(f"ctrlsparse: warning: no dynamics plot for {run_dir}: {error}", file=sys.stderr)
        return None


def mirror_run(
    run_dir: str | Path, *, tracking_uri: str, experiment: str, tags: dict[str, str] | None = None
) -> str | None:
    """Mirror one finished run directory to MLflow; return the MLflow run id, or None (with a warning) on failure."""
    run_dir = Path(run_dir)
    try:
        return with_retries(lambda: _mirror(run_dir, tracking_uri, experiment, tags), what=f"mirror {run_dir}")
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


def _uri_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else SQLite)")
    parser.add_argument("--results", default="results", help="results directory holding the default SQLite store")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")


def main_track(argv: list[str]) -> int:
    """``ctrlsparse track RUN_DIR...``: mirror finished runs (e.g. to backfill a tracking server)."""
    parser = argparse.ArgumentParser(prog="ctrlsparse track", description=main_track.__doc__)
    parser.add_argument("runs", nargs="+", help="run directories, or roots searched for summary.json")
    _uri_args(parser)
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra tag (repeatable)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any run could not be mirrored")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or default_uri(args.results)
    tags = dict(item.split("=", 1) for item in args.tag)
    runs = find_runs(args.runs)
    failed = [run for run in runs if mirror_run(run, tracking_uri=uri, experiment=args.experiment, tags=tags) is None]
    print(f"mirrored {len(runs) - len(failed)} of {len(runs)} runs to {uri} (experiment {args.experiment})")
    return 1 if failed and args.strict else 0


def main_init(argv: list[str]) -> int:
    """``ctrlsparse mlflow-init``: create the store and experiment once, before parallel jobs log to it.

    An empty ``--tracking-uri ''`` means MLflow is off: only the marker files are written. A store that cannot
    be reached is a warning, not an error: training must not depend on the tracking server.
    """
    parser = argparse.ArgumentParser(prog="ctrlsparse mlflow-init", description=main_init.__doc__.splitlines()[0])
    _uri_args(parser)
    parser.add_argument("--marker", help="JSON file to write (uri, experiment, id) once the store is ready")
    parser.add_argument("--shell-env", help="file of MLFLOW_URI=... / MLFLOW_EXPERIMENT=... lines for `source`")
    args = parser.parse_args(argv)
    uri = default_uri(args.results) if args.tracking_uri is None else args.tracking_uri
    record: dict[str, Any] = {"tracking_uri": uri, "experiment": args.experiment}
    if not uri:
        print("MLflow is off (empty tracking URI): runs keep their files only")
    else:
        try:
            record["experiment_id"] = init_store(uri, args.experiment)
            print(f"MLflow store ready: {uri} (experiment {args.experiment}, id {record['experiment_id']})")
        except Exception as error:
            record["error"] = f"{type(error).__name__}: {error}"
            print(
                f"ctrlsparse: warning: MLflow store {uri} not ready ({record['error']}); runs keep their files",
                file=sys.stderr,
            )
    if args.marker:
        Path(args.marker).parent.mkdir(parents=True, exist_ok=True)
        Path(args.marker).write_text(json.dumps(record, indent=2) + "\n")
    if args.shell_env:
        Path(args.shell_env).parent.mkdir(parents=True, exist_ok=True)
        lines = [f"MLFLOW_URI={shlex.quote(uri)}", f"MLFLOW_EXPERIMENT={shlex.quote(args.experiment)}"]
        Path(args.shell_env).write_text(
            "# written by ctrlsparse mlflow-init; sourced by the train jobs\n" + "\n".join(lines) + "\n"
        )
    return 0
