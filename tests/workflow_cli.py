"""Helpers for tests of the real workflow: the Snakemake CLI on a temporary project directory (never the
working tree's results/, .snakemake/ or MLflow store), and the config and run keys as the Snakefile builds them."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
PRESETS = ROOT / "workflow" / "presets"
sys.path.insert(0, str(ROOT / "workflow"))
import grid  # noqa: E402  (workflow/grid.py)


def snakemake_run(workdir: Path, *args: str, timeout: int = 540) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` with ``workdir`` as the project directory (--directory), outside any MLflow server."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def snakemake(workdir: Path, *args: str, timeout: int = 540) -> subprocess.CompletedProcess:
    """:func:`snakemake_run` that must succeed (the assertion shows the end of its output)."""
    result = snakemake_run(workdir, *args, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def merged(*updates: dict) -> dict:
    """config.yaml with ``updates`` merged the way Snakemake merges --configfile (nested dicts key by key)."""

    def merge(base: dict, update: dict) -> dict:
        for key, value in update.items():
            nested = isinstance(value, dict) and isinstance(base.get(key), dict)
            base[key] = merge(base[key], value) if nested else copy.deepcopy(value)
        return base

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for update in updates:
        merge(config, update)
    return config


def preset(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


def runs_of(*updates: dict) -> list:
    """The runs (grid.Run, in grid order) of config.yaml + ``updates``, checked as the Snakefile checks them."""
    from snakemake.utils import validate

    config = merged(*updates)
    validate(config, schema=str(grid.SCHEMA))
    return grid.check_config(config)


def readable(key: str) -> str:
    """A run key without its hash: ``digits/mlp/dense~1/seed~0`` (unique within one grid)."""
    head, _, seed = key.rpartition("/")
    return f"{head.rpartition('/')[0]}/{seed}"


def train_jobs(dry_run: subprocess.CompletedProcess) -> int:
    """How many train jobs ``snakemake -n --quiet rules`` listed (0 when none)."""
    for line in (dry_run.stdout + dry_run.stderr).splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "train" and words[1].isdigit():
            return int(words[1])
    return 0
