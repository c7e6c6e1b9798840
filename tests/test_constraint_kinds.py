"""Constraint kinds as one registry: each kind states its targets, gives its expected value from the gates and its
value on the purged model, consistently; the constrained problem builds its one cooper constraint once, in its
constructor; the violations a step sees are the ones each epoch reports."""

from __future__ import annotations

import json

import pytest
import torch

from ctrlsparse import feasibility
from ctrlsparse import gates as hc
from ctrlsparse.constraint_kinds import (
    BUDGET_KINDS,
    CONSTRAINT_KINDS,
    COST_KINDS,
    DENSITY_KINDS,
    measured_value,
    purged_name,
    stated,
)
from ctrlsparse.cost.expected import QUANTITIES
from ctrlsparse.errors import UnknownNameError
from ctrlsparse.hparams import HParams
from ctrlsparse.hparams.checks import SCOPES, parse_budget
from ctrlsparse.problems.constrained import ConstrainedL0Problem
from ctrlsparse.purge import count, purge, size_report
from ctrlsparse.training.setup import build_model, build_primal_optimizer

SHAPE = (1, 8, 8)  # digits


def problem_for(**given) -> ConstrainedL0Problem:
    hparams = HParams.resolve(arch="cnn", **given)
    torch.manual_seed(0)
    return ConstrainedL0Problem(build_model(hparams, SHAPE, 10), hparams, torch.zeros(1, *SHAPE))


def mixed_gates_(problem: ConstrainedL0Problem) -> None:
    """Every gate set half open, half closed, at log alpha +-4 (0/1 eval gates, P(active) neither 0 nor 1)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for log_alpha in problem.density.log_alphas:
            signs = torch.randint(0, 2, log_alpha.shape, generator=generator) * 2 - 1
            signs[0] = 1
            log_alpha.copy_(4.0 * signs)


def test_the_registry_names_every_kind_once_and_the_rest_reads_it():
    assert DENSITY_KINDS == ("model", "layer") and BUDGET_KINDS == ("macs", "params", "latency")
    assert SCOPES == (*DENSITY_KINDS, "none")  # a target scope is a density kind, or none
    assert set(COST_KINDS) <= set(QUANTITIES)  # a cost kind is a quantity the cost model counts
    assert list(parse_budget("latency=0.5,params=0.5,macs=0.25")) == list(
        BUDGET_KINDS
    )  # a budget is written in registry order
    for name in CONSTRAINT_KINDS:
        assert callable(CONSTRAINT_KINDS[name])
        assert CONSTRAINT_KINDS.spec(name).budget == (name in BUDGET_KINDS)
    with pytest.raises(UnknownNameError, match="unknown constraint kind 'flops'; choose one of: model, layer, macs"):
        CONSTRAINT_KINDS.check("flops")


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ({"target": (0.6,), "budget": "params=0.5,macs=0.3"}, ["model", "macs", "params"]),
        ({"target": (0.5, 0.4, 0.3, 0.6), "target_scope": "layer", "budget": "macs=0.3"}, None),
        ({"target_scope": "none", "budget": "macs=0.3,params=0.4"}, ["macs", "params"]),
    ],
)
def test_each_kind_states_its_targets_and_gives_its_expected_value_from_the_gates(given, names):
    problem = problem_for(**given)
    mixed_gates_(problem)
    hp, density = problem.hparams, problem.density
    entries = stated(hp.target_scope, hp.target, hp.budgets, density.names, hp.arch, density.kinds)
    assert problem.constraint_names == [name for named in entries.values() for name in named]
    assert names is None or problem.constraint_names == names
    assert problem.constraint_set.targets.tolist() == pytest.approx([t for e in entries.values() for t in e.values()])
    p = density.prob_active()
    independent = {"model": density.model_expected(p).view(1), "layer": density.layer_expected(p)}
    independent |= {kind: problem.cost.shares()[kind].view(1) for kind in COST_KINDS}
    expected = torch.cat([independent[kind] for kind in entries])
    assert torch.equal(problem.constraint_set.values(p), expected)


def test_each_budget_kinds_purged_value_is_what_the_cost_model_says_at_the_eval_gates():
    """What a kind's value on the purged model is (the purge's measurement, ``measured``) equals its cost at the
    eval gates, which each epoch reports as eval_<kind>: the feasibility verdict judges the same number."""
    problem = problem_for(target_scope="none", budget="macs=0.3,params=0.4")
    mixed_gates_(problem)
    model, example = problem.model.eval(), torch.zeros(1, *SHAPE)
    summary = size_report(count(model, example), count(purge(model, example), example))
    exact = problem.cost.exact_shares(hc.median_gates(torch.cat(problem.density.log_alphas)) > 0)
    for kind in COST_KINDS:  # the latency kind's purged value is a measured time (tests/test_latency_budget.py)
        assert measured_value(kind, summary) == pytest.approx(exact[kind], rel=1e-12)
        assert measured_value(kind, {}) is None  # before the purge


def test_the_verdict_states_the_entries_as_the_problem_does_and_says_a_miss_in_the_kinds_words():
    problem = problem_for(target=(0.5, 0.4, 0.3, 0.6), target_scope="layer", budget="macs=0.3")
    summary = {
        "method": "constrained",
        "arch": "cnn",
        "target_scope": "layer",
        "constraint": "eq",
        "target": [0.5, 0.4, 0.3, 0.6],
        "budgets": {"macs": 0.3},
        "layer_expected_density": dict.fromkeys(problem.density.names, 0.5),
        "macs_pct": 41.0,
    }
    targets = feasibility.constraint_targets(summary)
    assert list(targets) == [*problem.constraint_names, purged_name("macs")]
    assert list(targets.values())[:-1] == pytest.approx(problem.constraint_set.targets.tolist())
    summary["violations"] = dict.fromkeys(problem.constraint_names, 0.0)
    assert feasibility.describe_missed(summary) == "purged macs at 0.410 > 0.3"


def test_the_problem_builds_its_one_constraint_once_in_its_constructor(monkeypatch):
    import cooper

    registered = []
    original = cooper.ConstrainedMinimizationProblem.__setattr__

    def spy(self, name, value):
        if isinstance(value, cooper.Constraint):
            registered.append(name)
        original(self, name, value)

    monkeypatch.setattr(cooper.ConstrainedMinimizationProblem, "__setattr__", spy)
    problem = problem_for(target=(0.6,), budget="macs=0.3,params=0.5")
    assert registered == ["density_constraint"] and not hasattr(problem, "add_budgets")
    assert problem.constraint.multiplier.weight.shape == (3,) and problem.cost is not None
    alone = problem_for(target_scope="none", budget="params=0.4")
    assert registered[1:] == ["budget_constraint"] and [name for name, _ in alone.named_constraints()] == registered[1:]
    hparams = HParams.resolve(arch="cnn", budget="macs=0.3")
    with pytest.raises(ValueError, match="need an example input"):  # the cost model is traced in the constructor
        ConstrainedL0Problem(build_model(hparams, SHAPE, 10), hparams)


@pytest.mark.parametrize(
    "given",
    [
        {"target": (0.3,)},
        {"target": (0.5,), "target_scope": "layer"},
        {"target": (0.6,), "budget": "macs=0.3,params=0.5"},
        {"target_scope": "none", "budget": "params=0.4"},
    ],
)
@pytest.mark.parametrize("violation", ["absolute", "relative"])
def test_the_step_sees_the_violations_each_epoch_reports(given, violation):
    """Against the final targets (no anneal), the violation vector of a step is the reported one (divided by the
    targets when relative); a budget run's step takes it out of the cost model's one form, equal up to rounding."""
    problem = problem_for(violation=violation, **given)
    mixed_gates_(problem)
    optimizer = problem.build_optimizer(build_primal_optimizer(problem.hparams, problem.model))
    problem.before_epoch(0)
    reported = problem.violations()
    state = problem.compute_cmp_state(torch.randn(8, *SHAPE), torch.randint(0, 10, (8,)))
    (stepped,) = [s.violation for s in state.observed_constraints.values()]
    targets = problem.constraint_set.targets
    expected = reported / targets if violation == "relative" else reported
    if problem.cost is None:
        assert torch.equal(stepped, expected)
    else:
        assert stepped.tolist() == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)
    assert optimizer is not None and len(reported) == len(problem.constraint_names)


def test_the_reported_violations_are_against_the_final_targets_while_the_step_sees_this_epochs():
    problem = problem_for(budget="params=0.2", target=(0.5,), epochs=10, target_anneal=0.5, violation="absolute")
    problem.before_epoch(1)  # this epoch's targets lie above the final ones
    p = problem.density.prob_active()
    values = problem.constraint_set.values(p)
    assert problem.violations().tolist() == pytest.approx((values - problem.constraint_set.targets).tolist())
    assert problem.violation(p, step=True).tolist() == pytest.approx((values - problem.current).tolist(), abs=1e-6)


def test_a_summary_writes_its_budget_once_and_old_summaries_with_both_forms_still_read(tmp_path):
    from synthetic import write_synthetic_run

    from ctrlsparse.report.aggregate import run_row

    out = write_synthetic_run(tmp_path, arch="cnn", target_scope="none", budget="params=0.4,macs=0.3")
    path = out / "summary.json"
    summary = json.loads(path.read_text())
    assert summary["budgets"] == {"macs": 0.3, "params": 0.4} and "budget" not in summary
    assert run_row(path)[0]["budget"] == "macs=0.3,params=0.4"
    old = {key: value for key, value in summary.items() if key != "budgets"} | {"budget": "macs=0.3,params=0.4"}
    path.write_text(json.dumps(old))  # a summary older than the mapping: its text
    assert run_row(path)[0]["budget"] == "macs=0.3,params=0.4"
    path.write_text(json.dumps(summary | {"budget": "macs=0.3,params=0.4"}))  # both forms, as runs before this wrote
    assert run_row(path)[0]["budget"] == "macs=0.3,params=0.4"
