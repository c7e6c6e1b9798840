"""Compress a trained model: a constrained run from a dense run's weights (a warm start) starts at the dense
model's function; no layer is ever cut away (keep_a_gate_open); a run that is cut or at chance is not feasible."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from ctrlsparse import feasibility
from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import L0Linear, gated_layers
from ctrlsparse.problems.constrained import ConstrainedL0Problem
from ctrlsparse.training.evaluate import evaluate
from ctrlsparse.training.loop import train
from ctrlsparse.training.setup import build_primal_optimizer, build_run


@pytest.fixture(scope="module")
def dense_runs(tmp_path_factory):
    """Finished dense runs on digits: the CNN (10 epochs) and torchvision's MobileNetV3-small (2 epochs)."""
    root = tmp_path_factory.mktemp("dense")
    runs = {}
    for arch, epochs in (("cnn", 10), ("torchvision:mobilenet_v3_small", 2)):
        out = root / arch.replace(":", "_")
        hparams = HParams.resolve(arch=arch, method="dense", epochs=epochs, device="cpu", threads=1)
        runs[arch] = (out, train(hparams, out, None))
    return runs


@pytest.mark.parametrize("arch", ["cnn", "torchvision:mobilenet_v3_small"])
def test_a_warm_start_keeps_the_dense_models_accuracy_at_its_first_evaluation(dense_runs, arch):
    out, dense = dense_runs[arch]
    hparams = HParams.resolve(arch=arch, budget="macs=0.3", target_scope="none", pretrained=str(out), device="cpu")
    assert hparams.variant == "constrained-budget+warm" and hparams.droprate_init == 0.05
    run = build_run(hparams)
    assert evaluate(run)["test_accuracy"] == dense["test_accuracy"]  # every gate open at eval: the dense function


def test_a_warm_start_names_a_run_it_cannot_start_from(dense_runs, tmp_path):
    out, _ = dense_runs["cnn"]
    with pytest.raises(HParamError, match="is a dense run of digits/cnn; give a dense run of digits/mlp"):
        build_run(HParams.resolve(arch="mlp", target=(0.5,), pretrained=str(out), device="cpu"))
    with pytest.raises(HParamError, match="holds no finished run"):
        build_run(HParams.resolve(arch="cnn", target=(0.5,), pretrained=str(tmp_path), device="cpu"))
    with pytest.raises(HParamError, match="a dense run trains from scratch"):
        HParams.resolve(arch="cnn", method="dense", pretrained=str(out))


def test_the_warm_start_is_part_of_the_run_key(dense_runs):
    from ctrlsparse.identity import pretrained_key, run_key

    out, dense = dense_runs["cnn"]
    scratch = HParams.resolve(arch="cnn", budget="macs=0.3", target_scope="none")
    warm = dataclasses.replace(scratch, pretrained=str(out))
    assert pretrained_key(warm) == dense["run_key"]
    assert run_key(warm, pretrained_key(warm)).startswith("digits/cnn/constrained-budget+warm~macs=0.3/")
    assert run_key(warm, pretrained_key(warm)).split("/")[-2] != run_key(scratch).split("/")[-2]


def two_layers(keep: bool) -> tuple[nn.Module, ConstrainedL0Problem, object]:
    """A 2-layer gated MLP under a 1% parameter budget: cheapest met by closing a whole layer."""
    torch.manual_seed(0)
    model = nn.Sequential(L0Linear(16, 32), nn.ReLU(), L0Linear(32, 4))
    hparams = HParams.resolve(
        budget="params=0.01", target_scope="none", gates_lr=0.2, dual_lr=0.5, lr=0.01, keep_a_gate_open=keep
    )
    problem = ConstrainedL0Problem(model, hparams, torch.zeros(1, 16))
    optimizer = problem.build_optimizer(build_primal_optimizer(hparams, model))
    return model, problem, optimizer


@pytest.mark.parametrize("keep", [True, False])
def test_no_layer_is_cut_away_with_keep_a_gate_open(keep):
    model, problem, optimizer = two_layers(keep)
    generator = torch.Generator().manual_seed(1)
    for _ in range(300):
        x = torch.randn(64, 16, generator=generator)
        y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
        rollout = optimizer.roll(compute_cmp_state_kwargs={"inputs": x, "labels": y})
        problem.after_step(rollout.cmp_state)
    open_per_layer = [int((layer.log_alpha >= 0.0).sum()) for _, layer in gated_layers(model)]
    if keep:
        assert min(open_per_layer) >= 1
    else:  # the paper's dynamics: the budget closes a whole layer, which then cannot reopen
        assert min(int((layer.log_alpha > -1.6).sum()) for _, layer in gated_layers(model)) == 0


def summary(**given):
    base = {
        "method": "constrained",
        "arch": "cnn",
        "target_scope": "none",
        "constraint": "eq",
        "target": [0.5],
        "budgets": {"macs": 0.02},
        "violations": {"macs": 0.001},
        "expected_density": 0.05,
        "eval_density": 0.05,
        "layer_expected_density": {"conv1": 0.1, "conv2": 0.0001, "fc1": 0.05, "fc2": 0.2},
        "layer_eval_density": {"conv1": 0.125, "conv2": 0.0, "fc1": 0.05, "fc2": 0.2},
        "test_accuracy": 0.1,
        "chance_accuracy": 0.1028,
    }
    return base | given


def test_a_cut_network_at_chance_is_not_feasible_and_says_where():
    verdict = feasibility.assess(summary())
    assert verdict["feasible"] is False and verdict["collapsed_layers"] == ["conv2"] and verdict["at_chance"]
    text = feasibility.describe_missed(summary() | verdict)
    assert text.startswith("conv2 has no open gate (the network is cut there), test accuracy 0.100 is at chance")
    healthy = summary(layer_eval_density={"conv1": 0.125, "conv2": 0.03, "fc1": 0.05, "fc2": 0.2}, test_accuracy=0.9)
    assert feasibility.assess(healthy)["feasible"] is True
    # a gate group closed whole is a residual branch the stream passes by (a block's heads), not a cut
    branch = {"gates.stem": 0.5, "gates.blocks_2_heads": 0.0, "gates.blocks_2_mlp": 0.4}
    grouped = healthy | {"layer_eval_density": branch, "layer_expected_density": branch}
    assert feasibility.assess(grouped)["feasible"] is True
    assert feasibility.assess(healthy | {"test_accuracy": 0.11})["at_chance"] is True
    assert feasibility.assess(healthy | {"chance_accuracy": None})["at_chance"] is None  # older summaries


@pytest.mark.parametrize("constraint", [{"target": (0.5,)}, {"budget": "macs=0.3", "target_scope": "none"}])
def test_distillation_learns_from_the_dense_run(dense_runs, constraint):
    out, dense = dense_runs["cnn"]
    hparams = HParams.resolve(arch="cnn", **constraint, pretrained=str(out), distill=0.5, epochs=1, device="cpu")
    run = build_run(hparams)
    assert run.problem.teacher is not None and not run.problem.teacher.training
    inputs, labels = next(run.data.train_batches(64, torch.Generator().manual_seed(0)))
    run.model.eval()  # eval gates: the student is the dense model, so the distillation term is 0
    loss, _ = run.problem.objective(inputs, labels)
    plain = nn.functional.cross_entropy(run.model(inputs), labels)
    assert loss.item() == pytest.approx(0.5 * plain.item(), rel=1e-4)
    with pytest.raises(HParamError, match="distillation needs the dense run"):
        HParams.resolve(arch="cnn", distill=0.5)


@pytest.mark.parametrize("violation", ["relative", "absolute"])
def test_annealed_targets_move_from_the_dense_model_to_the_budget(violation):
    """target_anneal 0.5 over 10 epochs: epoch e sees B + (1 - B)(1 - e / 5)^3, then B; the multipliers see the
    violation against this epoch's target."""
    torch.manual_seed(0)
    model = nn.Sequential(L0Linear(16, 32), nn.ReLU(), L0Linear(32, 4))
    hparams = HParams.resolve(
        budget="params=0.2", target=(0.5,), epochs=10, target_anneal=0.5, violation=violation, device="cpu"
    )
    problem = ConstrainedL0Problem(model, hparams, torch.zeros(1, 16))
    p = problem.density.prob_active()
    value = torch.cat([problem.density.model_expected(p).view(1), problem.cost.share_vector(p)[1:]])
    final = torch.tensor([0.5, 0.2])
    for epoch, left in ((0, 1.0), (2, 0.6), (5, 0.0), (9, 0.0)):
        problem.before_epoch(epoch)
        current = final + (1 - final) * left**3
        expected = (value - current) / current if violation == "relative" else value - current
        (observed,) = problem._observed(p).values()
        assert observed.tolist() == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)


def test_fixed_gates_train_the_weights_of_the_eval_model_alone(dense_runs):
    """fix_gates 0.5 of 4 epochs: epochs 0-1 train the gates, 2-3 keep every log alpha and sample no gate (the
    training forward is the eval model's), while the weights still learn."""
    from ctrlsparse.training.loop import train_epoch
    from ctrlsparse.training.setup import set_learning_rates

    out, _ = dense_runs["cnn"]
    hparams = HParams.resolve(
        arch="cnn", budget="macs=0.3", target_scope="none", pretrained=str(out), epochs=4, fix_gates=0.5, device="cpu"
    )
    run = build_run(hparams)
    layers = [layer for _, layer in gated_layers(run.model)]
    for epoch, fixed in ((1, False), (2, True)):
        set_learning_rates(run, epoch)
        run.problem.before_epoch(epoch)
        alphas = [layer.log_alpha.detach().clone() for layer in layers]
        weights = [layer.weight.detach().clone() for layer in layers if hasattr(layer, "weight")]
        train_epoch(run)
        same = [torch.equal(a, layer.log_alpha) for a, layer in zip(alphas, layers, strict=True)]
        assert all(same) if fixed else not any(same)
        assert not any(torch.equal(w, layer.weight) for w, layer in zip(weights, layers, strict=True))
    run.model.train()
    train_gates = [layer.gates() for layer in layers]
    run.model.eval()
    assert all(torch.equal(z, layer.gates()) for z, layer in zip(train_gates, layers, strict=True))
    with pytest.raises(HParamError, match="fix_gates"):
        HParams.resolve(arch="cnn", target=(0.5,), fix_gates=0.6, target_anneal=0.5)


@pytest.mark.parametrize("keep", [True, False])
def test_an_impossible_budget_ends_infeasible_and_says_why(tmp_path, keep):
    """macs=0.001 on the digits CNN (one channel of conv1 alone is 0.16% of its MACs): with a gate of every layer
    kept open no layer is cut, but the model is at chance; without, a layer is cut. Either way never feasible."""
    from ctrlsparse.plumbing import paths
    from ctrlsparse.training.purge_cli import purge_run

    hparams = HParams.resolve(
        arch="cnn", budget="macs=0.001", target_scope="none", epochs=3, keep_a_gate_open=keep, device="cpu"
    )
    train(hparams, tmp_path, None)
    purge_run(tmp_path)
    result = json.loads(paths.summary_path(tmp_path).read_text())
    assert result["feasible"] is False
    text = feasibility.describe_missed(result)
    if keep:  # the smallest model that keeps every layer is within a point of 0.1%, and answers at chance
        assert "has no open gate" not in text and "is at chance" in text, text
    else:
        assert "has no open gate (the network is cut there)" in text, text
