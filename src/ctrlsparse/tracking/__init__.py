"""Mirror finished run directories to MLflow. Files first, MLflow second.

A run directory (``hparams.json``, ``metrics.csv``, ``summary.json``) is the source of truth; this module copies
it into an MLflow experiment: run name = run key, tags for every grid axis plus the git commit, all hparams as
params, every ``metrics.csv`` column as a per-epoch metric, and the files plus the run's dynamics figure (drawn
by the train job, ``dynamics.png``) as artifacts.

- **Idempotent.** Runs are indexed by the tag ``run_key``: mirroring a finished run again replaces the previous
  MLflow run (deleted, and purged on SQL stores), so reruns never leave duplicates. The id lands in
  ``mlflow_run.json``.
- **Resumable.** ``ctrlsparse train`` opens its MLflow run when it starts (RUNNING); a killed or preempted run
  (RUNNING or KILLED) continues under the same id when rerun, and ends FINISHED, or FAILED if it diverged.
- **Never fatal.** Any MLflow failure prints a warning and returns ``None``; the files stay. SQLite's
  "database is locked" is retried with backoff.
- **Create the store once** (:func:`init_store`, the workflow's ``mlflow_init`` rule) before parallel jobs
  log: first-time schema creation from parallel processes crashes SQLite.

``mlflow`` is imported lazily (it costs seconds); nothing here imports torch.
"""

from ctrlsparse.tracking.cli import main_init, main_track
from ctrlsparse.tracking.mirror import end_run, find_runs, mirror_run, open_run, read_metrics, read_record, run_tags
from ctrlsparse.tracking.store import default_uri, init_store, sqlite_path, with_retries
from ctrlsparse.tracking.target import TrackingTarget, add_tracking_flags, read_env_file, tracking_target

__all__ = [
    "TrackingTarget",
    "add_tracking_flags",
    "default_uri",
    "end_run",
    "find_runs",
    "init_store",
    "main_init",
    "main_track",
    "mirror_run",
    "open_run",
    "read_env_file",
    "read_metrics",
    "read_record",
    "run_tags",
    "sqlite_path",
    "tracking_target",
    "with_retries",
]
