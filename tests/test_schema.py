"""The workflow config: the JSON schema and the registry checks reject each bad value with a message naming its key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from workflow_cli import ROOT, grid, merged, readable, snakemake_run, train_jobs

PRESETS = sorted((ROOT / "workflow" / "presets").glob("*.yaml"))


def default_config() -> dict:
    return merged()


def check(config: dict) -> list:
    validate(config, schema=str(grid.SCHEMA))
    return grid.check_config(config)


def test_default_config_is_valid_and_expands_to_the_demo_grid():
    runs = check(default_config())
    # 2 archs x (2 scopes x 3 targets + 4 lambdas + dense + 3 magnitude targets) x 2 seeds
    assert len(runs) == 2 * (6 + 4 + 1 + 3) * 2
    assert readable(runs[0].key) == "digits/mlp/constrained-model~0.2/seed~0"
    assert len({run.key for run in runs}) == len(runs)


def test_schema_fills_every_default_from_an_empty_config():
    config: dict = {}
    validate(config, schema=str(grid.SCHEMA))
    assert config["grid"]["constrained"]["targets"] == [0.2, 0.5, 0.8]
    assert config["resources"]["default"]["threads"] == 1
    assert config["mlflow"] == {"enabled": True, "tracking_uri": None}
    # The schema's defaults and config.yaml describe the same grid.
    assert [r.key for r in grid.check_config(config)] == [r.key for r in check(default_config())]


def test_every_schema_property_has_a_description_and_a_default():
    schema = yaml.safe_load(grid.SCHEMA.read_text())

    def walk(node: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}{name} has no description"
            assert "default" in sub, f"{path}{name} has no default"
            walk(sub, f"{path}{name}.")

    walk(schema, "")


def test_schema_lists_exactly_the_registered_names():
    from ctrlsparse.registry import ARCHS, DATASETS

    grid_schema = yaml.safe_load(grid.SCHEMA.read_text())["properties"]["grid"]["properties"]
    for key, registry in (("datasets", DATASETS), ("archs", ARCHS)):
        listed = grid_schema[key]["description"].rsplit("(", 1)[1].rstrip(")").split(", ")
        assert listed == list(registry), f"update the description of grid.{key} in {grid.SCHEMA.name}"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_are_valid_and_use_registered_names(preset):
    assert check(merged(yaml.safe_load(preset.read_text())))


SCHEMA_ERRORS = [
    (
        {"grid": {"constrained": {"targets": [0.5, 1.5]}}},
        "grid.constrained.targets[1]",
        "greater than the maximum of 1",
    ),
    ({"grid": {"constrained": {"targets": [0]}}}, "grid.constrained.targets[0]", "less than or equal to the minimum"),
    ({"grid": {"constrained": {"targets": [[0.5, -0.1]]}}}, "grid.constrained.targets[0][1]", "-0.1"),
    ({"grid": {"constrained": {"scopes": ["network"]}}}, "grid.constrained.scopes[0]", "'network' is not one of"),
    ({"grid": {"penalized": {"penalties": [-1]}}}, "grid.penalized.penalties[0]", "less than the minimum of 0"),
    ({"grid": {"seeds": [-1]}}, "grid.seeds[0]", "less than the minimum of 0"),
    ({"grid": {"seeds": []}}, "grid.seeds", "should be non-empty"),
    ({"grid": {"archs": "mlp"}}, "grid.archs", "is not of type 'array'"),
    ({"grid": {"pruned": {"targets": [0.5]}}}, "grid", "'pruned' was unexpected"),
    ({"grid": {"dense": "yes"}}, "grid.dense", "is not of type 'boolean'"),
    ({"experiment": ""}, "experiment", "should be non-empty"),
    ({"experiment": "my grid"}, "experiment", "does not match"),  # it names the grid's directory
    ({"resultz": "out"}, "(top level)", "'resultz' was unexpected"),
    ({"resources": {"default": {"threads": 0}}}, "resources.default.threads", "less than the minimum of 1"),
    ({"resources": {"per_run": {"digits/cnn": {"gpus": 1}}}}, "resources.per_run.digits/cnn", "'gpus' was unexpected"),
    ({"mlflow": {"tracking_uri": 5}}, "mlflow.tracking_uri", "is not of type 'string', 'null'"),
]


@pytest.mark.parametrize(("update", "key", "text"), SCHEMA_ERRORS, ids=[key for _, key, _ in SCHEMA_ERRORS])
def test_schema_rejects_bad_values_naming_the_key(update, key, text):
    config = merged(update)
    with pytest.raises(Exception, match="Error validating config"):
        validate(config, schema=str(grid.SCHEMA))
    explained = grid.explain_schema_error(config)
    assert explained.startswith(f"config key {key}: ")
    assert text in explained


REGISTRY_ERRORS = [
    ({"grid": {"archs": ["mlp", "resnet"]}}, "grid.archs", "unknown arch 'resnet'; choose one of: mlp, cnn"),
    ({"grid": {"datasets": ["svhn"]}}, "grid.datasets", "unknown dataset 'svhn'"),
    ({"hparams": {"learning_rate": 0.1}}, "hparams.learning_rate", "unknown hyperparameter"),
    ({"hparams": {"epochs": 0}}, "hparams.epochs", "must be a positive integer"),
    ({"hparams": {"dual_lr": -1}}, "hparams.dual_lr", "must be > 0"),
    ({"hparams": {"optimizer": "lion"}}, "hparams.optimizer", "choose one of: adam, sgd"),
    ({"hparams": {"target": [0.5]}}, "hparams.target", "set per run by the grid"),
    ({"hparams": {"threads": 4}}, "hparams.threads", "set per run by resources"),
    (
        {"grid": {"constrained": {"scopes": ["model"], "targets": [[0.5, 0.3]]}}},
        "grid.constrained.targets",
        "needs 'layer'",
    ),
    (
        {
            "grid": {
                "constrained": {"targets": []},
                "penalized": {"penalties": []},
                "dense": False,
                "magnitude": {"targets": []},
            }
        },
        "grid",
        "the grid is empty",
    ),
    ({"grid": {"dense": False}}, "grid.magnitude.targets", "starts from the dense runs"),
    ({"grid": {"constrained": {"targets": [0.5, 0.5]}}}, "grid", "same run"),
    ({"experiment": "runs"}, "experiment", "names a directory that every grid shares"),
]


@pytest.mark.parametrize(("update", "key", "text"), REGISTRY_ERRORS, ids=[k for _, k, _ in REGISTRY_ERRORS])
def test_registry_checks_reject_bad_names_naming_the_key(update, key, text):
    config = merged(update)
    validate(config, schema=str(grid.SCHEMA))
    with pytest.raises(grid.ConfigError) as error:
        grid.check_config(config)
    assert error.value.key == key
    assert str(error.value).startswith(f"config key {key}: ")
    assert text in str(error.value)


def test_train_args_pass_grid_axes_and_overrides_as_cli_flags():
    config = merged({"hparams": {"epochs": 3, "lr_milestones": [2, 4], "dual_restarts": False}})
    validate(config, schema=str(grid.SCHEMA))
    runs = grid.check_config(config)
    layer = next(run for run in runs if run.hparams.variant == "constrained-layer")
    args = grid.train_args(layer, config)
    assert args[:8] == ["--dataset", "digits", "--arch", "mlp", "--method", "constrained", "--seed", "0"]
    assert args[8:10] == ["--target-scope", "layer"]
    assert "--no-dual-restarts" in args
    assert args[args.index("--lr-milestones") + 1] == "2,4"
    assert args[args.index("--device") + 1] == "cpu"
    penalized = next(run for run in runs if run.hparams.method == "penalized")
    assert grid.train_args(penalized, config)[grid.train_args(penalized, config).index("--penalty") + 1] == "0.001"


def test_resources_lookup_order_and_tracking_uri(monkeypatch, tmp_path):
    config = merged({"resources": {"per_run": {"digits": {"mem_mb": 100}, "digits/cnn": {"threads": 2}}}})
    validate(config, schema=str(grid.SCHEMA))
    # config.yaml's digits/cnn entry (mem_mb 3000) is merged with ours; dataset/arch beats dataset beats default
    assert grid.resources_for(config, "digits", "cnn") == {"threads": 2, "mem_mb": 3000, "runtime": 30, "gpu": 0}
    assert grid.resources_for(config, "digits", "mlp") == {"threads": 1, "mem_mb": 100, "runtime": 30, "gpu": 0}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert grid.tracking_uri(config, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert grid.tracking_uri(config, tmp_path) == "http://tracking:5000"
    config["mlflow"]["tracking_uri"] = "sqlite:////elsewhere.db"
    assert grid.tracking_uri(config, tmp_path) == "sqlite:////elsewhere.db"
    config["mlflow"]["enabled"] = False
    assert grid.tracking_uri(config, tmp_path) is None


def dry_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake -n`` on its own project directory: what the working tree's results/ holds does not count."""
    return snakemake_run(project, "-n", "--quiet", "rules", *args, timeout=120)


def test_snakemake_stops_before_any_job_with_a_message_naming_the_key(tmp_path):
    result = dry_run(tmp_path, "--config", "grid={'archs': ['mlp', 'vgg']}")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Invalid config: config key grid.archs: unknown arch 'vgg'; choose one of: mlp, cnn" in output
    preset = tmp_path / "bad.yaml"
    preset.write_text("grid:\n  seeds: [0, -2]\n")
    result = dry_run(tmp_path, "--configfile", str(preset))
    assert result.returncode != 0
    assert "Invalid config: config key grid.seeds[1]: -2 is less than the minimum of 0" in result.stdout + result.stderr


@pytest.mark.parametrize("preset", [None, *PRESETS], ids=lambda p: "default" if p is None else p.stem)
def test_dry_run_lists_every_train_job_of_the_default_config_and_every_preset(preset, tmp_path):
    config = merged(yaml.safe_load(preset.read_text())) if preset else default_config()
    result = dry_run(tmp_path, *(["--configfile", str(preset)] if preset else []))
    assert result.returncode == 0, result.stderr[-2000:]
    assert train_jobs(result) == len(check(config))
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
