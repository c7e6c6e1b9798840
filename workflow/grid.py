"""The workflow's grid: config checks, run expansion and train-job arguments.

Plain Python (no snakemake, no torch) so tests import it directly; ``workflow/rules/common.smk`` wraps it.
Run identity (:func:`ctrlsparse.identity.run_key`) and the train command line
(:func:`ctrlsparse.training.cli.train_argv`) come from the library, never from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ctrlsparse.errors import HParamError, UnknownNameError
from ctrlsparse.hparams import HParams, format_number
from ctrlsparse.identity import RUN_PATTERN, run_fields, run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import ARCHS, DATASETS, METHODS
from ctrlsparse.tracking.store import default_uri
from ctrlsparse.training.cli import train_argv

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"
# Keys the grid sets per run; an ``hparams:`` override of one of them would silently fight the grid.
GRID_FIELDS = (
    *("dataset", "arch", "method", "target", "target_scope", "budget", "penalty", "seed", "tag"),
    *("search_range", "search_iterations"),  # grid.search's range and iterations
)
# Keys the workflow sets per job from the resources.
JOB_FIELDS = ("threads", "device")
# A warm start's ``pretrained`` in the grid (the dense run of its seed); the job gets that run's directory.
DENSE_RUN = "the dense run of the same seed"
# Directories under the results directory that every grid shares; a grid's own one is named by its experiment.
SHARED_DIRS = (paths.RUN_ROOT, "logs", "benchmarks", "mlflow", "slurm_logs")


class ConfigError(ValueError):
    """A bad config value; ``key`` is its dotted path in the config (e.g. ``grid.archs``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Run:
    """One train job: the grid point, its resolved hyperparameters and its key (= output subdirectory)."""

    hparams: HParams
    pretrained: str = ""  # key of the run it starts from (magnitude: the dense run of its seed), else ""
    key: str = field(init=False)
    # the parts of the key, named as the workflow's wildcards (dataset, arch, variant, level, hash, seed)
    wildcards: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wildcards", run_fields(self.hparams, self.pretrained))
        object.__setattr__(self, "key", RUN_PATTERN.format(**self.wildcards))


def explain_schema_error(config: dict[str, Any]) -> str | None:
    """The most relevant JSON-schema violation as ``config key a.b[0]: message``, or None if the config is valid.

    ``snakemake.utils.validate`` stays the gate; this only turns its report into one line naming the key.
    """
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    while error.context:  # oneOf/anyOf: report the alternative that got furthest
        error = jsonschema.exceptions.best_match(error.context)
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties":
        return f"config key {key or '(top level)'}: {error.message}; see {SCHEMA.name} for the valid keys"
    return f"config key {key}: {error.message}"


def check_config(config: dict[str, Any]) -> list[Run]:
    """Check names against the registries and every run's hparams; return the runs, in grid order.

    Assumes ``snakemake.utils.validate`` already applied the JSON schema (types, ranges, defaults).
    """
    grid = config["grid"]
    if config["experiment"] in SHARED_DIRS:
        raise ConfigError(
            "experiment", f"{config['experiment']!r} names a directory that every grid shares; choose another name"
        )
    for key, registry in (("grid.datasets", DATASETS), ("grid.archs", ARCHS)):
        for name in grid[key.split(".")[1]]:
            try:
                registry.check(name)
            except UnknownNameError as error:
                raise ConfigError(key, str(error)) from None
    valid = {f.name for f in fields(HParams)}
    for where, sweep in sweeps(config):
        prefix = "" if where == "grid" else f"{where}."
        for name in config["hparams"] if where == "grid" else sweep["hparams"]:
            if name not in valid:
                raise ConfigError(
                    f"{prefix}hparams.{name}", f"unknown hyperparameter; valid ones: {', '.join(sorted(valid))}"
                )
            if name in GRID_FIELDS + JOB_FIELDS:
                section = "the grid: section" if name in GRID_FIELDS else "resources:"
                raise ConfigError(f"{prefix}hparams.{name}", f"is set per run by {section}; set it there instead")
    # a target's range is the schema's check (and HParams' for each run); a per-layer list needs the layer scope
    for target in grid["constrained"]["targets"]:
        if isinstance(target, list) and len(target) > 1 and "layer" not in grid["constrained"]["scopes"]:
            raise ConfigError(
                "grid.constrained.targets", f"per-layer target {target} needs 'layer' in grid.constrained.scopes"
            )
    if grid.get("magnitude", {}).get("targets") and not grid["dense"]:
        raise ConfigError(
            "grid.magnitude.targets", "magnitude pruning starts from the dense runs: set grid.dense: true (or [] here)"
        )
    for where, sweep in sweeps(config):
        if sweep["constrained"].get("warm_budgets") and not grid["dense"]:
            raise ConfigError(
                f"{where}.constrained.warm_budgets",
                "warm starts begin from the dense runs: set grid.dense: true (or [] here)",
            )
    runs = expand_runs(config)
    if not runs:
        raise ConfigError(
            "grid",
            "the grid is empty: give constrained targets or budgets, penalized penalties, search targets or dense: true",
        )
    return runs


def sweeps(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config key, sub-grid) of ``grid`` and of each entry of ``sweeps``. A sweep takes datasets, and unless it
    gives them archs and seeds, from ``grid``; it trains only the methods it lists; its ``hparams`` apply to
    its runs only (over the config's ``hparams``) and, where they change a value, name the runs (the tag)."""
    grid = config["grid"]
    result = [("grid", {**grid, "hparams": {}})]
    for index, sweep in enumerate(config.get("sweeps", [])):
        sub = {
            "datasets": grid["datasets"],
            "archs": sweep.get("archs", grid["archs"]),
            "seeds": sweep.get("seeds", grid["seeds"]),
            "constrained": {"scopes": ["model", "layer"], "targets": [], **sweep.get("constrained", {})},
            "penalized": {"scopes": ["model"], "penalties": [], **sweep.get("penalized", {})},
            "dense": sweep.get("dense", False),
            "hparams": sweep.get("hparams", {}),
        }
        result.append((f"sweeps[{index}]", sub))
    return result


def _owner(name: str, where: str, overrides: dict[str, Any], extra: dict[str, Any]) -> str:
    """The config key a bad hyperparameter came from."""
    if name == "budget":
        return f"{where}.constrained.budgets"
    if name in extra:
        return f"{where}.hparams.{name}"
    return f"hparams.{name}" if name in overrides else f"{where} ({name})"


def run_tag(changed: HParams, plain: HParams, names: list[str]) -> str:
    """``key=value`` (joined by ``+``) of each of ``names`` whose value ``changed`` sets differently from ``plain``."""
    parts = []
    for name in sorted(names):
        value = getattr(changed, name)
        if value != getattr(plain, name):
            parts.append(f"{name}={str(value).lower() if isinstance(value, bool) else tag_value(value)}")
    return "+".join(parts)


def _settings(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """The method settings of one dataset/arch/seed, in report order."""
    settings: list[dict[str, Any]] = []
    for scope in grid["constrained"]["scopes"]:
        for target in grid["constrained"]["targets"]:
            values = tuple(target) if isinstance(target, list) else (target,)
            if len(values) > 1 and scope != "layer":
                continue  # a per-layer list only makes sense layer-wise
            settings.append({"method": "constrained", "target_scope": scope, "target": values})
    for budget in grid["constrained"].get("budgets", []):  # MAC / param budgets alone (no density constraint)
        settings.append({"method": "constrained", "target_scope": "none", "budget": budget})
    for budget in grid["constrained"].get("warm_budgets", []):  # the same, from the dense run of the same seed
        settings.append({"method": "constrained", "target_scope": "none", "budget": budget, "pretrained": DENSE_RUN})
    for scope in grid["penalized"]["scopes"]:
        for penalty in grid["penalized"]["penalties"]:
            settings.append({"method": "penalized", "target_scope": scope, "penalty": penalty})
    search = grid.get("search", {})  # the penalized method bisected over log10 lambda
    named = (("range", "search_range"), ("iterations", "search_iterations"))
    interval = {name: search[key] for key, name in named if key in search}
    for scope in search.get("scopes", []):
        for target in search["targets"]:
            settings.append({"method": "search", "target_scope": scope, "target": (target,), **interval})
    if grid["dense"]:
        settings.append({"method": "dense"})
    for target in grid.get("magnitude", {}).get("targets", []):  # pruned from the dense run of the same seed
        values = tuple(target) if isinstance(target, list) else (target,)
        settings.append({"method": "magnitude", "target_scope": "layer", "target": values})
    return settings


def expand_runs(config: dict[str, Any]) -> list[Run]:
    """Every (dataset, arch, setting, seed) of the grid and of each sweep as a :class:`Run`, in config order.

    A run that two sweeps both list (same key) is trained once; a grid point repeated within one sweep, or two
    runs that differ only in hyperparameters the readable part of the key does not show, is an error.
    """
    runs: dict[str, Run] = {}
    readable: dict[str, str] = {}  # the key without its hash -> the key
    for where, grid in sweeps(config):
        overrides, extra = config["hparams"], grid["hparams"]
        mine: set[str] = set()
        for dataset in grid["datasets"]:
            for arch in grid["archs"]:
                for setting in _settings(grid):
                    for seed in grid["seeds"]:
                        given = {**overrides, **setting, "dataset": dataset, "arch": arch, "seed": seed}
                        try:
                            hparams = HParams.resolve(**given)
                            if extra:
                                changed = HParams.resolve(**{**given, **extra})
                                hparams = HParams.resolve(**given, **extra, tag=run_tag(changed, hparams, list(extra)))
                        except HParamError as error:
                            raise ConfigError(_owner(error.key, where, overrides, extra), error.message) from None
                        starts = METHODS.spec(hparams.method).starts_from or hparams.pretrained
                        start = dense_key(overrides, hparams) if starts else ""
                        run = Run(hparams, start)
                        if run.key in mine:
                            raise ConfigError(
                                where, f"two grid points give the same run {run.key}; remove the repeated value"
                            )
                        mine.add(run.key)
                        runs.setdefault(run.key, run)
                        shown = run.key.replace(f"/{run.wildcards['hash']}/", "/")
                        if readable.setdefault(shown, run.key) != run.key:
                            raise ConfigError(
                                where,
                                f"gives {run.key} beside {readable[shown]}: the runs differ in hyperparameters their "
                                "keys do not show, so the report would average them; give one of them a sweep",
                            )
    return list(runs.values())


def shared_steps(run: Run, runs: list[Run]) -> list[Run]:
    """The grid's runs that a search run may take as steps (same run key at one of the lambdas it can visit):
    the workflow trains them before the search, which then finds them finished (never two trainers at once)."""
    if not METHODS.spec(run.hparams.method).runs_of:
        return []
    search = METHODS[run.hparams.method]
    keys = {run_key(search.step(run.hparams, penalty)) for penalty in search.of(run.hparams).candidates()}
    return [other for other in runs if other.key in keys]


def purged(run: Run) -> bool:
    """Whether the purge step makes a smaller model of the run: structured runs that trained a model."""
    return run.hparams.gating == "structured" and not METHODS.spec(run.hparams.method).runs_of


def dense_key(overrides: dict[str, Any], run: HParams) -> str:
    """Key of the dense run that a magnitude run prunes: same dataset, arch and seed, the config's hparams."""
    dense = HParams.resolve(**overrides, dataset=run.dataset, arch=run.arch, seed=run.seed, method="dense")
    return run_key(dense)


def find_run(runs: list[Run], wildcards: dict[str, str]) -> Run:
    """The run whose path matches the wildcards; KeyError names the path if it is not in the grid."""
    wanted = {key: str(value) for key, value in wildcards.items()}
    for run in runs:
        if all(run.wildcards[key] == wanted[key] for key in run.wildcards):
            return run
    raise KeyError(f"{RUN_PATTERN.format(**wanted)} is not a point of the configured grid")


def resources_for(config: dict[str, Any], dataset: str, arch: str) -> dict[str, Any]:
    """Resources of a train job: default < per_run[dataset] < per_run[dataset/arch]."""
    table = config["resources"]
    merged = dict(table["default"])
    for key in (dataset, f"{dataset}/{arch}"):
        merged.update(table.get("per_run", {}).get(key, {}))
    return merged


def tag_value(value: Any) -> str:
    """A hyperparameter's value as a tag shows it: lists joined by commas, numbers in their shortest form."""
    if isinstance(value, list | tuple):
        return ",".join(tag_value(item) for item in value)
    return format_number(value) if isinstance(value, float) else str(value)


def train_args(run: Run, config: dict[str, Any]) -> list[str]:
    """The ``ctrlsparse train`` flags of a run (its hparams, the dense run to start from, the device), from the
    library's :func:`~ctrlsparse.training.cli.train_argv`; without --out/--threads."""
    resources = resources_for(config, run.hparams.dataset, run.hparams.arch)
    device = resources.get("device") or ("cuda" if resources["gpu"] > 0 else "cpu")
    return train_argv(replace(run.hparams, pretrained=str(pretrained_dir(run, config)), device=device))


def pretrained_dir(run: Run, config: dict[str, Any]) -> Path | str:
    """Directory of the run a run starts from (magnitude: its dense run, under the results directory), else ""."""
    return paths.runs_root(config["results"]) / run.pretrained if run.pretrained else ""


def tracking_uri(config: dict[str, Any], results: str | Path) -> str | None:
    """The config key, else the tracking default (``$MLFLOW_TRACKING_URI``, else a SQLite file under the results
    directory: :func:`ctrlsparse.tracking.store.default_uri`); None if disabled."""
    if not config["mlflow"]["enabled"]:
        return None
    return config["mlflow"]["tracking_uri"] or default_uri(results)
