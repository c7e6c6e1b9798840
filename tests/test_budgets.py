"""MAC / parameter budgets: the hyperparameter (one written form, run key, one-line errors), one cooper
constraint per kind beside or instead of the density one, and a budget run through the train and purge CLIs."""

from __future__ import annotations

import json
import subprocess
import sys

import cooper
import pytest
import torch

from ctrlsparse import feasibility
from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.problems.constrained import ConstrainedL0Problem
from ctrlsparse.training.setup import build_model, build_primal_optimizer


def readable(key: str) -> str:
    """A run key without its hash (``{dataset}/{arch}/{variant}~{level}/seed~{seed}``)."""
    head, _, seed = key.rpartition("/")
    return f"{head.rpartition('/')[0]}/{seed}"


def test_budget_has_one_written_form_and_names_the_run():
    hparams = HParams.resolve(budget=" params=0.250, macs=.3")
    assert hparams.budget == "macs=0.3,params=0.25" and hparams.budgets == {"macs": 0.3, "params": 0.25}
    assert readable(run_key(hparams)) == "digits/mlp/constrained-model+macs=0.3,params=0.25~0.5/seed~0"
    alone = HParams.resolve(budget="macs=0.2", target_scope="none")
    assert readable(run_key(alone)) == "digits/mlp/constrained-budget~macs=0.2/seed~0"
    plain = HParams.resolve()
    assert plain.budgets == {} and readable(run_key(plain)) == "digits/mlp/constrained-model~0.5/seed~0"
    same_knobs = HParams.resolve(budget="macs=0.3", gates_polarization=plain.gates_polarization, keep_a_gate_open=False)
    assert run_key(same_knobs).split("/")[3] == run_key(plain).split("/")[3]  # an axis: the budget is not hashed
    assert run_key(HParams.resolve(budget="macs=0.3")).split("/")[3] != run_key(plain).split("/")[3]  # its knobs


@pytest.mark.parametrize(
    ("given", "key", "words"),
    [
        ({"budget": "flops=0.3"}, "budget", "one of: macs, params"),
        ({"budget": "macs=0.3,macs=0.2"}, "budget", "once each"),
        ({"budget": "macs=1.5"}, "budget", "(0, 1]"),
        ({"budget": "macs=0.3", "method": "penalized"}, "budget", "method constrained"),
        ({"budget": "macs=0.3", "gating": "unstructured"}, "budget", "structured"),
        ({"target_scope": "none"}, "target_scope", "give a --budget"),
    ],
)
def test_bad_budgets_get_one_line_naming_the_key(given, key, words):
    with pytest.raises(HParamError, match=key) as error:
        HParams.resolve(**given)
    assert words in str(error.value) and "\n" not in str(error.value)


def problem_for(**given) -> tuple[ConstrainedL0Problem, cooper.optim.CooperOptimizer]:
    hparams = HParams.resolve(arch="cnn", **given)
    torch.manual_seed(0)
    model = build_model(hparams, (1, 8, 8), 10)
    problem = ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))
    return problem, problem.build_optimizer(build_primal_optimizer(hparams, model))


def test_each_budget_is_one_more_constraint_entry_with_its_own_multiplier():
    problem, optimizer = problem_for(budget="macs=0.3,params=0.5", target=(0.6,))
    assert problem.constraint_names == ["model", "macs", "params"]
    constraint = problem.density_constraint  # the checkpoints' key of density runs, budgets appended
    assert list(problem.constraints()) == [constraint] and constraint.multiplier.weight.shape == (3,)
    assert [p.shape for p in problem.dual_parameters()] == [(3,)]  # the dual optimizer steps all three
    inputs, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    shares = problem.cost.shares()  # before the step moves the gates
    density = problem.density.model_expected().item()
    rollout = optimizer.roll(compute_cmp_state_kwargs={"inputs": inputs, "labels": labels})
    observed = rollout.cmp_state.observed_constraints[constraint].violation
    relative = problem.hparams.violation == "relative"  # the multipliers see what the density one sees
    for index, (value, goal) in enumerate(
        ((density, 0.6), (shares["macs"].item(), 0.3), (shares["params"].item(), 0.5))
    ):
        assert observed[index].item() == pytest.approx((value - goal) / (goal if relative else 1.0))
    assert problem.violations()[1].item() == pytest.approx(problem.cost.shares()["macs"].item() - 0.3)  # absolute
    assert problem.multiplier_values().shape == (3,) and bool((problem.multiplier_values() != 0).all())


@pytest.mark.parametrize("violation", ["relative", "absolute"])
def test_layer_wise_density_entries_come_out_of_the_cost_form_like_the_density_does(violation):
    problem, _ = problem_for(budget="params=0.4", target=(0.6,), target_scope="layer", violation=violation)
    with torch.no_grad():  # gates away from their init, each layer differently
        for i, log_alpha in enumerate(problem.density.log_alphas):
            log_alpha.copy_(torch.linspace(-3.0, 3.0, len(log_alpha)) + 0.5 * i)
    state = problem.compute_cmp_state(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    observed = state.observed_constraints[problem.density_constraint].violation
    targets = problem.targets
    density = (problem.density.layer_expected() - targets) / (targets if violation == "relative" else 1.0)
    share = (problem.cost.shares()["params"] - 0.4) / (0.4 if violation == "relative" else 1.0)
    assert observed.tolist() == pytest.approx(density.tolist() + [share.item()], abs=1e-6)


def test_a_budget_alone_has_no_density_constraint_and_restarts_like_it():
    problem, _ = problem_for(budget="params=0.4,macs=0.5", target_scope="none", constraint="le")
    assert problem.constraint_names == ["macs", "params"] and len(problem.violations()) == 2
    assert "density_constraint" not in dict(problem.named_constraints())
    constraint = problem.budget_constraint
    constraint.multiplier.weight.data.fill_(0.3)
    state = cooper.CMPState(
        loss=torch.tensor(0.0),
        observed_constraints={constraint: cooper.ConstraintState(violation=torch.tensor([-0.1, 0.2]))},
    )
    problem.after_step(state)
    assert constraint.multiplier.weight.tolist() == pytest.approx([0.0, 0.3])  # restarted where strictly satisfied


def test_a_budget_weighs_the_tie_breaker_by_each_gates_cost():
    """The polarization tie-breaker of a budget run weighs a gate by what it costs in the constrained quantities
    (mean of the density's and each budget's per-gate shares); without a budget, by its parameter count."""
    plain = ConstrainedL0Problem(build_model(HParams.resolve(arch="cnn"), (1, 8, 8), 10), HParams.resolve(arch="cnn"))
    assert plain.tie_weights is None
    problem, _ = problem_for(budget="macs=0.3", target_scope="none")
    density, costs = problem.density, problem.cost.gate_shares()
    assert problem.tie_weights.sum().item() == pytest.approx(1.0)
    assert problem.tie_weights.tolist() == pytest.approx(costs["macs"].tolist())
    conv1 = density.layer_of_gate == density.names.index("conv1")
    assert (problem.tie_weights[conv1] > 20 * density.gate_shares[conv1]).all()  # a conv1 channel: ~2.6% of MACs
    both, _ = problem_for(budget="macs=0.3", target=(0.5,))
    assert both.tie_weights.tolist() == pytest.approx(((density.gate_shares + costs["macs"].float()) / 2).tolist())
    p = torch.full((len(density.gate_shares),), 0.5)
    p[conv1] = 0.9  # the conv1 channels decided-ish: the cost-weighted term drops by far more
    assert density.polarization(p, problem.tie_weights) < 0.2 < density.polarization(p)  # 0.18 vs 0.25


def test_budget_runs_resolve_their_own_tie_breaker_default():
    assert HParams.resolve(arch="cnn").gates_polarization == 0.02
    assert HParams.resolve(arch="cnn", budget="macs=0.3").gates_polarization == 0.05
    assert HParams.resolve(arch="cnn", budget="macs=0.3", gates_polarization=0.0).gates_polarization == 0.0


def test_feasibility_reads_budget_violations():
    summary = {
        "method": "constrained",
        "target_scope": "none",
        "constraint": "eq",
        "target": [0.5],
        "budgets": {"macs": 0.3},
        "violations": {"macs": 0.04},
        "expected_density": 0.7,
        "eval_density": 0.7,
        "layer_expected_density": {"fc1": 0.7},
        "layer_eval_density": {"fc1": 0.7},
    }
    verdict = feasibility.assess(summary)
    assert verdict["feasible"] is False and verdict["max_violation"] == pytest.approx(0.04)
    assert feasibility.describe_missed(summary | verdict) == "macs at 0.340 > 0.3"


def ctrlsparse(*args):
    return subprocess.run([sys.executable, "-m", "ctrlsparse", *args], capture_output=True, text=True)


def test_a_budget_run_through_the_train_and_purge_clis(tmp_path):
    out = tmp_path / "run"
    flags = ["--arch", "mlp", "--budget", "macs=0.4", "--target-scope", "none", "--epochs", "40", "--threads", "1"]
    result = ctrlsparse("train", *flags, "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(paths.summary_path(out).read_text())
    assert readable(summary["run_key"]) == "digits/mlp/constrained-budget~macs=0.4/seed~0"
    assert summary["budgets"] == {"macs": 0.4} and list(summary["violations"]) == ["macs"]
    assert summary["expected_macs"] == pytest.approx(0.4, abs=0.02)
    metrics = paths.metrics_path(out).read_text().splitlines()
    assert {"expected_macs", "eval_macs", "violation/macs", "multiplier/macs"} <= set(metrics[0].split(","))
    result = ctrlsparse("purge", str(out))
    assert result.returncode == 0, result.stderr
    purged = json.loads(paths.summary_path(out).read_text())
    assert purged["macs_pct"] == pytest.approx(100 * summary["eval_macs"], abs=1e-9)  # eval shares = the purge's
    assert purged["params_pct"] == pytest.approx(100 * summary["eval_params"], abs=1e-9)


def test_a_budget_below_what_every_gate_closed_leaves_is_one_line_before_training(tmp_path):
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="params=0.0001")  # the biases stay
    model = build_model(hparams, (1, 8, 8), 10)
    with pytest.raises(HParamError, match=r"params=0.0001 is below the least this model reaches, 0\.\d+"):
        ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))
    out = tmp_path / "run"
    flags = ["--arch", "cnn", "--budget", "params=0.0001", "--target-scope", "none", "--epochs", "2"]
    result = ctrlsparse("train", *flags, "--quiet", "--out", str(out))
    assert result.returncode == 2 and not paths.summary_path(out).exists()
    (line,) = result.stderr.strip().splitlines()
    assert "--budget: params=0.0001 is below the least" in line and "or more" in line


def test_a_budget_is_judged_on_the_purged_model_once_it_is_measured():
    """The cost model said 0.5, the purge measured 27.6%: not feasible, naming the purged share."""
    summary = {
        "method": "constrained",
        "target_scope": "none",
        "constraint": "eq",
        "target": [0.5],
        "budgets": {"macs": 0.5},
        "violations": {"macs": 0.001},
        "expected_density": 0.7,
        "eval_density": 0.7,
        "layer_expected_density": {"fc1": 0.7},
        "layer_eval_density": {"fc1": 0.7},
    }
    assert feasibility.assess(summary)["feasible"] is True  # before the purge: the expected share only
    purged = summary | {"macs_pct": 27.6, "params_pct": 40.0}
    verdict = feasibility.assess(purged)
    assert verdict["feasible"] is False and verdict["max_violation"] == pytest.approx(-0.224)
    assert feasibility.describe_missed(purged | verdict) == "purged macs at 0.276 < 0.5"
    assert feasibility.assess(purged | {"macs_pct": 50.4})["feasible"] is True
    assert feasibility.assess(purged | {"constraint": "le"})["feasible"] is True  # <= 0.5 allows ending smaller


def test_a_budget_run_made_to_miss_says_so_after_the_purge(tmp_path):
    out = tmp_path / "run"
    flags = ["--arch", "mlp", "--budget", "macs=0.05", "--target-scope", "none", "--epochs", "1", "--threads", "1"]
    assert ctrlsparse("train", *flags, "--quiet", "--out", str(out)).returncode == 0
    result = ctrlsparse("purge", str(out))
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{out}: target missed: ") and "purged macs at " in last and " 0.05" in last
    purged = json.loads(paths.summary_path(out).read_text())
    assert purged["feasible"] is False and "purged macs" in feasibility.constraint_violations(purged)
