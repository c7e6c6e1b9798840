"""Where a command tracks its runs: one set of flags for every CLI and one precedence rule.

Flags (train, purge, track, mlflow-init): ``--tracking-uri URI`` (empty: MLflow off), ``--experiment NAME`` and
``--tracking-env FILE`` (the ``MLFLOW_URI=`` / ``MLFLOW_EXPERIMENT=`` lines that ``ctrlsparse mlflow-init
--shell-env`` writes; read as data, never sourced). ``--mlflow-uri``, ``--mlflow-experiment`` and ``--mlflow-env``
are accepted as hidden aliases.

Precedence, for the URI and the experiment alike: the flag > the env file > the command's default. The default
store of ``track`` and ``mlflow-init`` is ``$MLFLOW_TRACKING_URI``, else ``<results>/mlflow/mlflow.db``; ``train``
and ``purge`` track nothing unless told (the workflow tells them with ``--tracking-env``). The default
experiment is ``ctrlsparse``.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXPERIMENT = "ctrlsparse"
ENV_KEYS = {"uri": "MLFLOW_URI", "experiment": "MLFLOW_EXPERIMENT"}  # the env file's keys
ALIASES = {"--tracking-uri": "--mlflow-uri", "--experiment": "--mlflow-experiment", "--tracking-env": "--mlflow-env"}


@dataclass(frozen=True)
class TrackingTarget:
    """The MLflow store (``uri``; "" when MLflow is off) and experiment a command logs to."""

    uri: str
    experiment: str

    @property
    def enabled(self) -> bool:
        return bool(self.uri)


def add_tracking_flags(parser: argparse.ArgumentParser, default: str) -> None:
    """``--tracking-uri``, ``--experiment``, ``--tracking-env`` (and their hidden aliases); ``default`` says in
    the help where the URI comes from when none is given."""
    helps = {
        "--tracking-uri": f"MLflow tracking URI; empty: MLflow off (default: {default})",
        "--experiment": f"MLflow experiment name (default: {DEFAULT_EXPERIMENT})",
        "--tracking-env": "file of MLFLOW_URI=/MLFLOW_EXPERIMENT= lines (ctrlsparse mlflow-init), under the flags",
    }
    for flag, text in helps.items():
        dest = flag[2:].replace("-", "_")
        kind = Path if flag == "--tracking-env" else str
        parser.add_argument(flag, dest=dest, type=kind, help=text)
        parser.add_argument(ALIASES[flag], dest=dest, type=kind, help=argparse.SUPPRESS)


def tracking_target(args: argparse.Namespace, default_uri: Callable[[], str]) -> TrackingTarget:
    """The flag > the env file > ``default_uri()`` (for the URI) or ``ctrlsparse`` (for the experiment)."""
    values = read_env_file(args.tracking_env) if args.tracking_env else {}
    uri = args.tracking_uri if args.tracking_uri is not None else values.get(ENV_KEYS["uri"])
    experiment = args.experiment or values.get(ENV_KEYS["experiment"]) or DEFAULT_EXPERIMENT
    return TrackingTarget(default_uri() if uri is None else uri, experiment)


def off() -> str:
    """The default of the commands that track only when told: MLflow off."""
    return ""


def env_file_text(target: TrackingTarget) -> str:
    """The env file that :func:`read_env_file` reads back (what ``mlflow-init --shell-env`` writes)."""
    lines = [
        f"{ENV_KEYS['uri']}={shlex.quote(target.uri)}",
        f"{ENV_KEYS['experiment']}={shlex.quote(target.experiment)}",
    ]
    return "# written by ctrlsparse mlflow-init; read by the train jobs\n" + "\n".join(lines) + "\n"


def read_env_file(path: str | Path) -> dict[str, str]:
    """The ``KEY=value`` lines that ``mlflow-init --shell-env`` wrote, parsed as data: nothing is executed."""
    values = {}
    for line in Path(path).read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 1 and "=" in words[0]:
            key, _, value = words[0].partition("=")
            values[key] = value
    return values
