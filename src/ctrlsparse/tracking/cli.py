"""``ctrlsparse track`` and ``ctrlsparse mlflow-init``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_json, write_text
from ctrlsparse.tracking.mirror import find_runs, mirror_run
from ctrlsparse.tracking.store import default_uri, init_store, store_client, with_retries
from ctrlsparse.tracking.target import TrackingTarget, add_tracking_flags, env_file_text, tracking_target


def _target_args(parser: argparse.ArgumentParser) -> None:
    add_tracking_flags(parser, default="$MLFLOW_TRACKING_URI, else <results>/mlflow/mlflow.db")
    parser.add_argument("--results", default="results", help="results directory holding the default SQLite store")


def _target(args: argparse.Namespace) -> TrackingTarget:
    return tracking_target(args, lambda: default_uri(args.results))


def main_track(argv: list[str]) -> int:
    """``ctrlsparse track RUN_DIR...``: mirror finished runs (e.g. to backfill a tracking server)."""
    parser = argparse.ArgumentParser(prog="ctrlsparse track", description=main_track.__doc__)
    parser.add_argument("runs", nargs="+", help="run directories, or roots searched for summary.json")
    _target_args(parser)
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra tag (repeatable)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any run could not be mirrored")
    parser.add_argument(
        "--missing",
        action="store_true",
        help="only the runs the experiment holds no finished run of (by run key), copied without writing into their "
        "directories: the workflow's backfill of the runs a grid reuses from another grid",
    )
    args = parser.parse_args(argv)
    target = _target(args)
    if not target.enabled:  # as for mlflow-init: MLflow is off
        print("MLflow is off (empty tracking URI): nothing to mirror")
        return 0
    uri, experiment = target.uri, target.experiment
    tags = dict(item.split("=", 1) for item in args.tag)
    runs = find_runs(args.runs)
    if args.missing:
        present = finished_keys(uri, experiment)
        runs = [run for run in runs if json.loads(paths.summary_path(run).read_text())["run_key"] not in present]
    keep = not args.missing
    mirrored = [mirror_run(run, tracking_uri=uri, experiment=experiment, tags=tags, keep=keep) for run in runs]
    failed = mirrored.count(None)
    what = "missing runs" if args.missing else "runs"
    print(f"mirrored {len(runs) - failed} of {len(runs)} {what} to {uri} (experiment {experiment})")
    return 1 if failed and args.strict else 0


def finished_keys(uri: str, experiment: str) -> set[str]:
    """Run keys of the FINISHED runs of the experiment (none if it does not exist yet or MLflow fails: a warning)."""

    def search() -> set[str]:
        client = store_client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return set()
        runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'", max_results=50_000)
        return {run.data.tags.get("run_key") for run in runs}

    try:
        return with_retries(search, what="list the finished runs")
    except Exception as error:
        print(f"ctrlsparse: warning: could not list the runs of {experiment} at {uri} ({error})", file=sys.stderr)
        return set()


def main_init(argv: list[str]) -> int:
    """``ctrlsparse mlflow-init``: create the store and experiment once, before parallel jobs log to it.

    An empty ``--tracking-uri ''`` (or a tracking env file's empty URI) means MLflow is off: only the marker files are written. A store that cannot
    be reached is a warning, not an error: training must not depend on the tracking server.
    """
    parser = argparse.ArgumentParser(prog="ctrlsparse mlflow-init", description=main_init.__doc__.splitlines()[0])
    _target_args(parser)
    parser.add_argument("--marker", help="JSON file to write (uri, experiment, id) once the store is ready")
    parser.add_argument("--shell-env", help="file of MLFLOW_URI=... / MLFLOW_EXPERIMENT=... lines (shell syntax)")
    args = parser.parse_args(argv)
    target = _target(args)
    uri = target.uri
    record: dict[str, Any] = {"tracking_uri": uri, "experiment": target.experiment}
    if not uri:
        print("MLflow is off (empty tracking URI): runs keep their files only")
    else:
        try:
            record["experiment_id"] = init_store(uri, target.experiment)
            print(f"MLflow store ready: {uri} (experiment {target.experiment}, id {record['experiment_id']})")
        except Exception as error:
            record["error"] = f"{type(error).__name__}: {error}"
            print(
                f"ctrlsparse: warning: MLflow store {uri} not ready ({record['error']}); runs keep their files",
                file=sys.stderr,
            )
    if args.marker:
        write_json(args.marker, record)
    if args.shell_env:
        write_text(args.shell_env, env_file_text(target))
    return 0
