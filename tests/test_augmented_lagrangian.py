"""The augmented Lagrangian formulation (cooper's AugmentedLagrangian, a constant penalty coefficient c): its primal
Lagrangian in closed form, a toy problem it solves, and a run that resumes from its checkpoint exactly."""

import json

import pytest
import torch
from test_problems import toy_problem, train_toy
from test_resume import Killed, comparable, kill_after

from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import read_checkpoint
from ctrlsparse.training.loop import train


def primal_lagrangian(problem, multiplier, x, y):
    """(primal Lagrangian, loss, violation v) with the multiplier set to ``multiplier``."""
    problem.multiplier.weight.data.fill_(multiplier)
    state = problem.compute_cmp_state(x, y)
    (violation,) = [s.violation for s in state.observed_constraints.values()]
    return state.compute_primal_lagrangian().lagrangian.item(), state.loss.item(), violation.detach()


@pytest.mark.parametrize("multiplier", [0.0, 0.7])
def test_equality_adds_half_c_times_the_squared_violation_to_the_lagrangian(multiplier):
    x, y = torch.randn(32, 20, generator=torch.Generator().manual_seed(3)), torch.zeros(32, dtype=torch.long)
    _, problem, _ = toy_problem((0.3,), constraint="eq", formulation="augmented_lagrangian", penalty_coefficient=4.0)
    torch.manual_seed(5)  # the same gate sample for both formulations
    lagrangian, loss, v = primal_lagrangian(problem, multiplier, x, y)
    assert lagrangian == pytest.approx(loss + multiplier * v.sum().item() + 0.5 * 4.0 * (v**2).sum().item(), rel=1e-6)
    _, plain, _ = toy_problem((0.3,), constraint="eq")
    torch.manual_seed(5)
    assert primal_lagrangian(plain, multiplier, x, y)[0] == pytest.approx(loss + multiplier * v.sum().item(), rel=1e-6)


def test_inequality_takes_the_projected_multiplier_step_form():
    """Under le: L = loss + 1/(2c) (relu(lambda + c v)^2 - lambda^2) (Nocedal & Wright 17.64-17.65)."""
    x, y = torch.randn(32, 20, generator=torch.Generator().manual_seed(3)), torch.zeros(32, dtype=torch.long)
    _, problem, _ = toy_problem((0.3,), formulation="augmented_lagrangian", penalty_coefficient=4.0)
    torch.manual_seed(5)
    lagrangian, loss, v = primal_lagrangian(problem, 0.2, x, y)
    expected = loss + (torch.relu(0.2 + 4.0 * v) ** 2 - 0.2**2).sum().item() / (2 * 4.0)
    assert lagrangian == pytest.approx(expected, rel=1e-6)


def test_the_toy_problem_meets_its_target_under_the_augmented_lagrangian():
    _, problem, optimizer = toy_problem((0.3,), constraint="eq", formulation="augmented_lagrangian")
    train_toy(problem, optimizer, steps=600)
    assert problem.density.model_expected().item() == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("scope", ["model", "layer"])
def test_an_augmented_lagrangian_run_resumes_from_its_checkpoint_exactly(tmp_path, scope):
    hparams = HParams.resolve(
        arch="mlp",
        epochs=4,
        target=(0.4,),
        target_scope=scope,
        checkpoint_seconds=0,
        formulation="augmented_lagrangian",
        penalty_coefficient=3.0,
    )
    straight = train(hparams, tmp_path / "straight", on_epoch=None)
    with pytest.raises(Killed):
        train(hparams, tmp_path / "killed", on_epoch=kill_after(2))
    state = read_checkpoint(paths.checkpoint_path(tmp_path / "killed"))
    assert state["epoch"] == 2
    (coefficient,) = state["cmp"]["penalty_coefficients"].values()  # c is saved beside the multipliers
    assert coefficient["value"].tolist() == [3.0] * len(straight["multipliers"])
    torch.manual_seed(12345)  # a resumed process starts from another RNG state; the checkpoint must restore it
    resumed = train(hparams, tmp_path / "killed", on_epoch=None)
    for key in ("expected_density", "eval_density", "test_accuracy", "test_loss", "train_loss", "multipliers"):
        assert resumed[key] == straight[key], key
    rows = json.loads(json.dumps(read_checkpoint(paths.checkpoint_path(tmp_path / "killed"))["rows"]))
    assert comparable(rows) == comparable(read_checkpoint(paths.checkpoint_path(tmp_path / "straight"))["rows"])
