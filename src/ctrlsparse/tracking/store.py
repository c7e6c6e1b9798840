"""The tracking store: URIs, creating the store and experiment once, retries."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
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


def store_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` of the store (HTTP retries kept short: a job must not wait minutes on a server)."""
    _quiet_http()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


# MLflow 3's UI opens an experiment without a kind on its GenAI overview (traces, tokens); this kind opens the
# runs table, where training runs belong.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: Any, tracking_uri: str, experiment: str) -> str:
    """Get the experiment by name, creating it (artifacts next to a SQLite file, tagged
    :data:`EXPERIMENT_KIND`) if missing; an existing one without a kind gets the tag."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if not any(key in found.tags for key in EXPERIMENT_KIND):
            for key, value in EXPERIMENT_KIND.items():
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    db = sqlite_path(tracking_uri)
    location = (db.parent / "artifacts" / experiment).resolve().as_uri() if db else None
    try:
        return client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_KIND)
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
    client = store_client(tracking_uri)
    return with_retries(lambda: experiment_id(client, tracking_uri, experiment), what="mlflow init")
