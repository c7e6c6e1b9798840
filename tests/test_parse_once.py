"""Budgets and targets are parsed and checked once: ``hparams.checks.parse_budget`` is the one budget parser and
``HParams`` keeps its mapping; a bad budget or target gives the same one-line error through the workflow and the CLI,
and so does a layer-wise target list that does not fit the arch."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
from snakemake.utils import validate
from workflow_cli import grid, merged

from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.hparams import checks as checks_module
from ctrlsparse.hparams.checks import budget_text, parse_budget


def test_hparams_keep_the_parsed_budget_in_kind_order_and_its_text_written_one_way():
    hparams = HParams.resolve(budget=" params=0.250, macs=3e-1 ")
    assert hparams.budget == "macs=0.3,params=0.25"
    assert hparams.budgets == {"macs": 0.3, "params": 0.25} and list(hparams.budgets) == ["macs", "params"]
    assert budget_text(hparams.budgets) == hparams.budget
    hparams.budgets["macs"] = 0.9  # a copy: the run's budget stays as made
    assert hparams.budgets["macs"] == 0.3
    assert pickle.loads(pickle.dumps(hparams)).budgets == hparams.budgets
    assert replace(hparams, budget="params=0.5").budgets == {"params": 0.5}
    assert HParams.resolve().budgets == {} and HParams.from_dict(hparams.to_dict()) == hparams


def test_the_budgets_property_reads_what_was_parsed_when_made(monkeypatch):
    hparams = HParams.resolve(budget="macs=0.3")
    monkeypatch.setattr(checks_module, "parse_budget", lambda text: pytest.fail(f"parsed again: {text}"))
    assert hparams.budgets == {"macs": 0.3} and hparams.budget == "macs=0.3"


@pytest.mark.parametrize("bad", ["macs=1.5", "macs=0.3,macs=0.2", "flops=0.3"])
def test_a_bad_budget_gives_the_same_line_through_the_workflow_and_the_cli(bad, capsys):
    with pytest.raises(HParamError) as parsed:
        parse_budget(bad)
    message = parsed.value.message
    config = merged({"grid": {"constrained": {"budgets": [bad]}}})
    try:
        validate(config, schema=str(grid.SCHEMA))
    except Exception as error:  # the schema's pattern stops some forms first (flops=): no budget got parsed
        assert "budgets" in str(error)
    else:
        with pytest.raises(grid.ConfigError) as workflow:
            grid.check_config(config)
        assert str(workflow.value) == f"config key grid.constrained.budgets: {message}"
    from ctrlsparse.training.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--budget", bad, "--target-scope", "none", "--out", "unused"])
    assert exited.value.code == 2
    assert f"error: --budget: {message} (see" in capsys.readouterr().err.splitlines()[-1]


def test_a_bad_density_target_is_the_schemas_range_check_then_the_same_hparams_check_as_the_cli(capsys):
    config = merged({"grid": {"constrained": {"targets": [1.5]}}})
    with pytest.raises(Exception, match="1.5"):
        validate(config, schema=str(grid.SCHEMA))  # the schema checks the config's ranges
    with pytest.raises(HParamError) as made:
        HParams.resolve(target=(1.5,))
    with pytest.raises(grid.ConfigError) as workflow:  # past the schema (a caller that skipped it): HParams' check
        grid.check_config(config)
    assert str(workflow.value).endswith(f": {made.value.message}")
    from ctrlsparse.training.cli import main

    with pytest.raises(SystemExit):
        main(["--target", "1.5", "--out", "unused"])
    assert f"error: --target: {made.value.message} (see" in capsys.readouterr().err.splitlines()[-1]


def test_a_layer_wise_target_list_that_does_not_fit_the_arch_is_one_check_through_the_workflow_and_the_cli(
    tmp_path, capsys
):
    """The layer count has one check, ``density_targets.layer_targets``: the workflow's preflight calls it, the
    problem (and the feasibility verdict) through ``constraint_kinds.stated``; the lines differ only in how they
    show the targets (the config's list, or "given")."""
    import preflight

    config = merged({"grid": {"archs": ["cnn"], "constrained": {"scopes": ["layer"], "targets": [[0.5, 0.3, 0.2]]}}})
    with pytest.raises(grid.ConfigError) as workflow:
        preflight.check_layer_targets(config)
    fit = "but arch 'cnn' has 4 gated layers (conv1, conv2, fc1, fc2); give one target or 4"
    assert str(workflow.value) == f"config key grid.constrained.targets[0]: 3 layer-wise targets [0.5, 0.3, 0.2], {fit}"
    from ctrlsparse.training.cli import main

    flags = ["--arch", "cnn", "--target-scope", "layer", "--target", "0.5,0.3,0.2", "--epochs", "1", "--threads", "1"]
    with pytest.raises(SystemExit) as exited:
        main([*flags, "--quiet", "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert f"error: --target: 3 layer-wise targets given, {fit} (see" in capsys.readouterr().err.splitlines()[-1]
