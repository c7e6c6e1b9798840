"""The constrained problem: dual restarts, non-negative multipliers, a toy problem whose constraint is met."""

import math

import cooper
import pytest
import torch
from torch import nn

from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import L0Linear
from ctrlsparse.problems.constrained import ConstrainedL0Problem, restart_multipliers_
from ctrlsparse.problems.penalized import PenalizedL0Problem
from ctrlsparse.training.setup import build_primal_optimizer


def test_restart_resets_exactly_the_strictly_satisfied_multipliers():
    weight = torch.tensor([0.5, 0.7, 0.2, 0.0])
    weight.grad = torch.tensor([-0.1, 0.0, 0.3, -0.2])
    restart_multipliers_(weight, torch.tensor([-0.1, 0.0, 0.3, -1e-9]))
    assert weight.tolist() == pytest.approx([0.0, 0.7, 0.2, 0.0])
    assert weight.grad.tolist() == pytest.approx([0.0, 0.0, 0.3, 0.0])


def test_restart_also_clears_per_entry_optimizer_state():
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, maximize=True)
    weight.grad = torch.tensor([1.0, 1.0])
    optimizer.step()
    restart_multipliers_(weight, torch.tensor([-0.5, 0.5]), optimizer)
    assert optimizer.state[weight]["momentum_buffer"][0] == 0
    assert optimizer.state[weight]["momentum_buffer"][1] != 0


def toy_problem(target, scope="model", restarts=True, problem_class=ConstrainedL0Problem, **overrides):
    """A linear classifier on 20 features of which 4 carry the label, under a density constraint."""
    torch.manual_seed(0)
    model = nn.Sequential(L0Linear(20, 2, droprate_init=0.5))
    overrides = {
        "constraint": "le",
        "violation": "absolute",
        "alpha_min": 1e-2,
        **overrides,
    }  # the paper's, unless said
    hparams = HParams.resolve(
        target=target, target_scope=scope, dual_restarts=restarts, gates_lr=0.05, dual_lr=0.5, lr=0.05, **overrides
    )
    problem = problem_class(model, hparams)
    optimizer = problem.build_optimizer(build_primal_optimizer(hparams, model))
    return model, problem, optimizer


def toy_batches(steps, batch=64):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(batch, 20, generator=generator)
        y = (x[:, :4].sum(1) > 0).long()
        yield x, y


def train_toy(problem, optimizer, steps=600):
    lowest = []
    for x, y in toy_batches(steps):
        rollout = optimizer.roll(compute_cmp_state_kwargs={"inputs": x, "labels": y})
        problem.after_step(rollout.cmp_state)
        if problem.multiplier_values() is not None:
            lowest.append(problem.multiplier_values().min().item())
    return lowest


def test_toy_problem_meets_its_constraint_and_keeps_the_informative_inputs():
    model, problem, optimizer = toy_problem((0.3,))
    lowest = train_toy(problem, optimizer)
    assert min(lowest) >= 0  # multipliers are never negative
    assert max(problem.multiplier_values().tolist()) >= 0
    assert problem.density.model_expected().item() <= 0.3 + 0.01
    open_gates = set(torch.nonzero(model[0].log_alpha > 0).flatten().tolist())
    assert {0, 1, 2, 3} <= open_gates  # the four inputs that carry the label stay open


def test_penalized_problem_has_no_multipliers_and_a_zero_penalty_stays_above_the_target():
    _, problem, optimizer = toy_problem((0.3,), problem_class=PenalizedL0Problem, method="penalized", penalty=0.0)
    train_toy(problem, optimizer)
    assert problem.multiplier_values() is None and problem.constraint_names == []
    assert problem.density.model_expected().item() > 0.4  # the constrained run of the same toy reaches 0.3


def test_multiplier_is_zero_whenever_the_constraint_is_satisfied_with_restarts():
    _, problem, optimizer = toy_problem((0.9,))  # the initial density 0.83 already satisfies 0.9
    train_toy(problem, optimizer, steps=50)
    assert problem.multiplier_values().tolist() == [0.0]


def test_layerwise_targets_must_match_the_gated_layers():
    model = nn.Sequential(L0Linear(4, 3), nn.ReLU(), L0Linear(3, 2))
    with pytest.raises(HParamError, match="3 layer-wise targets given.*2 gated layers"):
        ConstrainedL0Problem(model, HParams.resolve(target=(0.5, 0.4, 0.3), target_scope="layer"))
    problem = ConstrainedL0Problem(model, HParams.resolve(target=(0.5,), target_scope="layer"))
    assert problem.targets.tolist() == [0.5, 0.5] and problem.constraint_names == ["0", "2"]


def trace_toy(problem, optimizer, steps):
    """(violation seen by the step, multiplier after the step) for every step."""
    trace = []
    for x, y in toy_batches(steps):
        rollout = optimizer.roll(compute_cmp_state_kwargs={"inputs": x, "labels": y})
        problem.after_step(rollout.cmp_state)
        violation = rollout.cmp_state.observed_constraints[problem.density_constraint].violation
        trace.append((violation.item(), problem.multiplier_values().item()))
    return trace


def test_restarts_zero_the_multiplier_at_every_satisfied_step_and_are_switchable():
    _, with_restarts, optimizer = toy_problem((0.3,))
    restarted = trace_toy(with_restarts, optimizer, 300)
    satisfied = [multiplier for violation, multiplier in restarted if violation < 0]
    assert satisfied and all(multiplier == 0 for multiplier in satisfied)
    _, without, optimizer = toy_problem((0.3,), restarts=False)
    plain = trace_toy(without, optimizer, 300)
    # plain gradient ascent lets the multiplier decay gradually: it stays positive on some satisfied steps
    assert any(violation < 0 and multiplier > 0 for violation, multiplier in plain)
    assert all(multiplier >= 0 for _, multiplier in plain)


def test_equality_constraint_holds_a_target_that_the_loss_alone_would_undershoot():
    # 16 of the 20 inputs are noise, so the loss closes their gates: with <= the density ends below 0.6.
    _, problem_le, optimizer_le = toy_problem((0.6,))
    train_toy(problem_le, optimizer_le, steps=1500)
    _, problem_eq, optimizer_eq = toy_problem((0.6,), constraint="eq")
    lowest = train_toy(problem_eq, optimizer_eq, steps=1500)
    assert problem_le.density.model_expected().item() < 0.6 - 0.02
    assert problem_eq.density.model_expected().item() == pytest.approx(0.6, abs=0.01)
    assert min(lowest) < 0  # the multiplier of an equality constraint takes either sign


def test_equality_restarts_reset_a_multiplier_whose_sign_opposes_its_violation():
    _, problem, _ = toy_problem((0.5,), constraint="eq")
    constraint = problem.density_constraint
    for value, violation, expected in [(0.3, -0.01, 0.0), (-0.3, 0.01, 0.0), (-0.3, -0.01, -0.3), (0.3, 0.01, 0.3)]:
        problem.multiplier.weight.data.fill_(value)
        state = cooper.CMPState(
            loss=torch.tensor(0.0),
            observed_constraints={constraint: cooper.ConstraintState(violation=torch.tensor([violation]))},
        )
        problem.after_step(state)
        assert problem.multiplier.weight.item() == pytest.approx(expected)


def test_log_alpha_is_clamped_to_alpha_min_after_every_step():
    model, problem, _ = toy_problem((0.3,), problem_class=PenalizedL0Problem, method="penalized", alpha_min=1e-3)
    model[0].log_alpha.data.fill_(-20.0)
    problem.after_step(None)
    assert model[0].log_alpha.max().item() == pytest.approx(math.log(1e-3))
    with pytest.raises(HParamError, match="alpha_min"):
        HParams(alpha_min=0.0)


def test_keep_a_gate_open_holds_the_largest_gate_of_a_set_at_log_alpha_0():
    model, problem, _ = toy_problem(
        (0.3,), problem_class=PenalizedL0Problem, method="penalized", alpha_min=1e-3, keep_a_gate_open=True
    )
    model[0].log_alpha.data.fill_(-20.0)
    problem.after_step(None)
    values = model[0].log_alpha
    assert values.max().item() == 0.0 and int((values == 0).sum()) == 1  # one gate, the first of the ties
    assert values.min().item() == pytest.approx(math.log(1e-3))
    values.data[3] = 0.5  # a set with a gate above the floor is left as it is
    before = values.detach().clone()
    problem.after_step(None)
    assert torch.equal(values.detach(), before)


@pytest.mark.parametrize("gating", ["structured", "unstructured"])
@pytest.mark.parametrize("detach", [True, False])
def test_expected_l2_in_one_norm_equals_the_sum_of_the_layers_terms(gating, detach):
    """The multi-tensor form (gated tensors scaled by sqrt(P)) against each layer's closed form plus the plain
    parameters' squared norms: the same value and the same gradients for weights and (when not detached) gates."""
    from ctrlsparse.training.setup import build_model

    hparams = HParams.resolve(dataset="cifar10", arch="wrn16_4", gating=gating, l2_detach_gates=detach)
    torch.manual_seed(0)
    model = build_model(hparams, (3, 32, 32), 10)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    problem = ConstrainedL0Problem(model, hparams)
    layers = [layer.expected_l2(detach) for layer in problem.density.layers]
    reference = torch.stack(layers + [0.5 * p.pow(2).sum() for p in problem._dense_params]).sum()
    ours = problem.expected_l2()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    params = list(model.parameters())
    ours_grads = torch.autograd.grad(ours, params, allow_unused=True)
    for param, got, want in zip(
        params, ours_grads, torch.autograd.grad(reference, params, allow_unused=True), strict=True
    ):
        if got is None or want is None:
            assert got is None and want is None and param.ndim == 1  # only detached log alphas take no gradient
        else:
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    gates = [layer.log_alpha for layer in problem.density.layers]
    gate_grads = torch.autograd.grad(problem.expected_l2(), gates, allow_unused=True)
    assert all((g is None) == detach for g in gate_grads)  # the paper detaches P: no push on the gates


@pytest.mark.parametrize("polarization", [0.0, 0.02])
def test_polarization_pushes_gates_the_loss_ignores_towards_open_or_closed(polarization):
    """All inputs zero: the loss has no gradient on the gates and the multiplier is still 0, so what moves a gate
    is the polarization term alone: a gate above P(active) 0.5 is pushed open, one below it closed (descending
    the gradient), and nothing moves without it (the digits MLP's border pixels stayed half open, benchmarks)."""
    model, problem, _ = toy_problem((0.7,), constraint="eq", violation="relative", gates_polarization=polarization)
    with torch.no_grad():
        model[0].log_alpha.copy_(torch.linspace(-3.0, 0.0, 20))  # P(active) from 0.19 to 0.83
    x, y = next(toy_batches(1))
    problem.compute_cmp_state(torch.zeros_like(x), y).loss.backward()
    grad = model[0].log_alpha.grad
    p = torch.sigmoid(model[0].log_alpha.detach() + 1.5986)
    if polarization:
        assert torch.all(grad[p > 0.52] < 0) and torch.all(grad[p < 0.48] > 0)
    else:
        assert torch.count_nonzero(grad) == 0


def test_the_polarization_term_is_zero_for_decided_gates_and_a_quarter_for_coin_flips():
    model, problem, _ = toy_problem((0.5,))
    with torch.no_grad():
        model[0].log_alpha.fill_(20.0)
        assert problem.density.polarization().item() == pytest.approx(0.0, abs=1e-5)
        model[0].log_alpha.fill_(-1.5986)  # P(active) = 0.5
        assert problem.density.polarization().item() == pytest.approx(0.25, abs=1e-4)
