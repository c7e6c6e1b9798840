"""Links that open each experiment's runs table in the MLflow UI (``make ui`` prints them).

MLflow 3.17's UI picks an experiment's page from its workflow switch (GenAI / Model training), remembered in
the browser and GenAI at first, not from the experiment's ``mlflow.experimentKind`` tag (which ctrlsparse sets
anyway, for MLflow versions that read it). A link with ``?workflowType=machine_learning`` opens the runs.

``python -m ctrlsparse.tracking.ui --tracking-uri URI --url http://127.0.0.1:5000``
"""

from __future__ import annotations

import argparse

from ctrlsparse.tracking.store import sqlite_path, store_client

RUNS_VIEW = "workflowType=machine_learning"


def links(tracking_uri: str, url: str) -> list[tuple[str, str]]:
    """(experiment name, link to its runs table) for every active experiment that has runs."""
    client = store_client(tracking_uri)
    found = []
    for experiment in client.search_experiments():
        if client.search_runs([experiment.experiment_id], max_results=1):
            found.append((experiment.name, f"{url.rstrip('/')}/#/experiments/{experiment.experiment_id}?{RUNS_VIEW}"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctrlsparse.tracking.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True, help="the store the UI serves")
    parser.add_argument("--url", required=True, help="where the UI listens, e.g. http://127.0.0.1:5000")
    args = parser.parse_args(argv)
    db = sqlite_path(args.tracking_uri)
    if db is not None and not db.exists():  # don't create a store just to list it
        print(f"no MLflow store at {db} yet (make demo fills it); the UI opens at {args.url}")
        return 0
    try:
        found = links(args.tracking_uri, args.url)
    except Exception as error:  # the UI still starts; it just gets no links
        print(f"ctrlsparse: no experiment links ({type(error).__name__}: {str(error).splitlines()[0]})")
        return 0
    for name, link in found:
        print(f"runs of {name}: {link}")
    if not found:
        print(f"no runs in {args.tracking_uri} yet; the UI opens at {args.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
