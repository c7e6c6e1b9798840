"""Checks of a valid config against this machine and the models, before any job starts.

``grid.check_config`` already checked the config against the schema and the registries (misspelled keys,
unknown names, targets outside (0, 1], negative epochs, ...). What it cannot see is checked here, each failure
one :class:`grid.ConfigError` naming the config key and what to do:

- :func:`check_config` (while Snakemake parses, dry runs included): a layer-wise target list must have one target
  per gated layer of each arch it is trained on (counted on a model built on torch's meta device, so no memory
  and no data; torch is imported only when such a list is configured), and the results directory must be
  creatable (its nearest existing ancestor a directory this user may write).
- :func:`set_aside_corrupt_summaries` (while Snakemake parses, dry runs too): a grid run whose ``summary.json``
  does not parse is moved aside to ``summary.json.corrupt`` (one line each), so its train job is back in the DAG
  and reruns, resuming from the run's checkpoint (and the jobs after it), instead of ``aggregate`` failing on it.
- :func:`check_data` (Snakemake's ``onstart``, which runs only when jobs will really run: not in dry runs, not in
  cluster jobs): the data set of every unfinished run lies in its data root in the layout its loader expects
  (``ctrlsparse.data.layouts``); digits ships with scikit-learn and needs none.

Plain Python beside ``grid.py``: imports the ctrlsparse library, never the other way round.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grid import ConfigError, Run, sweeps

from ctrlsparse.data.layouts import DEFAULT_ROOT, ENV, LAYOUTS, data_root, missing
from ctrlsparse.density_targets import layer_targets
from ctrlsparse.errors import HParamError
from ctrlsparse.plumbing import paths
from ctrlsparse.report.aggregate import CorruptSummary, read_summary

# Any input the archs accept (lenet5 needs >= 16x16 pixels); the number of gated layers depends on the arch only.
PROBE_INPUT = ((3, 32, 32), 10)


def stop_on_error(check: Callable[..., None], *args: Any) -> None:
    """Run ``check``; its :class:`ConfigError` becomes the one line ``Invalid config: config key ...: ...``
    (Snakemake's WorkflowError, as for the schema and registry checks)."""
    from snakemake.exceptions import WorkflowError

    try:
        check(*args)
    except ConfigError as error:
        raise WorkflowError(f"Invalid config: {error}") from None


def check_config(config: dict[str, Any]) -> None:
    """Layer-wise target lists against the archs' gated layers, then the results directory."""
    check_layer_targets(config)
    check_results_dir(config["results"])


@functools.cache
def gated_layers_of(arch: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The gated layers of ``arch``, in order, and their kinds (gate groups: heads / width / hidden, else ""),
    from a model built on the meta device (once per arch)."""
    import torch

    from ctrlsparse.layers import gated_layers
    from ctrlsparse.models.factory import LayerFactory
    from ctrlsparse.registry import ARCHS

    with torch.device("meta"):
        model = ARCHS[arch](*PROBE_INPUT, LayerFactory())
    named = gated_layers(model)
    return tuple(name for name, _ in named), tuple(getattr(layer, "kind", "") for _, layer in named)


def gated_layer_names(arch: str) -> tuple[str, ...]:
    return gated_layers_of(arch)[0]


def check_layer_targets(config: dict[str, Any]) -> None:
    """Each per-layer target list (constrained, layer scope; magnitude) has one target per gated layer (or, gate
    groups, one per kind)."""
    for where, grid in sweeps(config):
        lists = []
        if "layer" in grid["constrained"]["scopes"]:
            lists.append(("constrained", grid["constrained"]["targets"]))
        lists.append(("magnitude", grid.get("magnitude", {}).get("targets", [])))
        for method, targets in lists:
            for index, target in enumerate(targets):
                if not isinstance(target, list) or len(target) == 1:
                    continue
                for arch in grid["archs"]:
                    try:
                        names, kinds = gated_layers_of(arch)
                        layer_targets(target, names, arch, shown=str(target), kinds=kinds)
                    except HParamError as error:
                        raise ConfigError(f"{where}.{method}.targets[{index}]", error.message) from None


def check_results_dir(results: str) -> None:
    """The results directory exists or can be created: its nearest existing ancestor is a writable directory."""
    path = Path(results).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("results", f"{existing} is a file, so {path} cannot be created; choose another directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            "results", f"{path} cannot be written ({existing} is not writable); choose a directory you can write"
        )


def set_aside_corrupt_summaries(summaries: list[str]) -> list[Path]:
    """Move every unparsable ``summary.json`` among ``summaries`` aside (one stderr line each); return the moves.

    The workflow's target lists every run's summary, so a missing one brings its train job back into the DAG
    (Snakemake reruns a job for a missing output only when a target, or a job that must run, needs it).
    """
    moved = []
    for summary in map(Path, summaries):
        if not summary.exists():
            continue
        try:
            read_summary(summary)
        except CorruptSummary as error:
            aside = paths.corrupt_path(summary)
            summary.replace(aside)
            moved.append(aside)
            print(f"ctrlsparse: {error}; moved it to {aside.name}, so that run's train job reruns", file=sys.stderr)
    return moved


def check_data(runs: list[Run], config: dict[str, Any]) -> None:
    """The data set of every run without a summary (the runs still to train) is where its loader looks."""
    checked = set()
    for run in runs:
        hparams = run.hparams
        if hparams.dataset not in LAYOUTS or paths.summary_path(paths.runs_root(config["results"]) / run.key).exists():
            continue  # digits ships with scikit-learn; a finished run needs no data
        if hparams.download and LAYOUTS[hparams.dataset].downloadable:
            continue  # the job fetches it
        root = data_root(hparams.data_root).absolute()
        if (hparams.dataset, root) in checked:
            continue
        checked.add((hparams.dataset, root))
        absent = missing(hparams.dataset, root)
        if absent is not None:
            layout = LAYOUTS[hparams.dataset]
            fetch = ", or hparams.download: true to fetch it" if layout.downloadable else ""
            raise ConfigError(
                data_root_key(hparams.data_root),
                f"dataset {hparams.dataset!r}: {absent} is missing; expected <data root>/{layout.expected}; set "
                f"hparams.data_root (or ${ENV}) to the folder that holds {layout.folder.split('/')[0]}/{fetch}",
            )


def data_root_key(given: str) -> str:
    """The config key of a run's data root, and where it came from when the config leaves it empty."""
    if given:
        return "hparams.data_root"
    source = f"${ENV}={os.environ[ENV]}" if os.environ.get(ENV) else f"neither it nor ${ENV} is set: ./{DEFAULT_ROOT}"
    return f"hparams.data_root ({source})"
