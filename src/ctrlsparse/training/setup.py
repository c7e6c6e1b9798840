"""Everything a run needs, built from its hyperparameters alone (so a resumed run rebuilds the same)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import cooper
import torch
from torch import nn

from ctrlsparse.data.base import TensorData
from ctrlsparse.data.layouts import data_root
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import gate_parameters, round_channels_
from ctrlsparse.models.external import PREFIXES as EXTERNAL
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.problems.base import L0Problem, fixed_from
from ctrlsparse.problems.warm_start import dense_checkpoint
from ctrlsparse.registry import ARCHS, DATASETS, METHODS
from ctrlsparse.training import distributed, forward
from ctrlsparse.training.budget import ControlRates, control_rates


@dataclass
class Run:
    hparams: HParams
    device: torch.device
    data: TensorData
    model: nn.Module
    problem: L0Problem
    primal: torch.optim.Optimizer
    optimizer: cooper.optim.CooperOptimizer
    evaluator: nn.Module  # the eval forward pass: ``model`` with the device speed-ups (autocast, channels-last)
    generator: torch.Generator  # data order
    rates: ControlRates  # the gates' and multipliers' learning rates for this run's step budget
    processes: distributed.Processes = distributed.Processes()  # DDP: this process's rank among the job's


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(hparams: HParams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    factory = LayerFactory(
        gated=METHODS.spec(hparams.method).gates,
        structured=hparams.gating == "structured",
        droprate_init=hparams.droprate_init,
        gate_after_norm=hparams.gate_after_norm,
    )
    if hparams.arch.startswith(EXTERNAL):  # torchvision:, module: (ctrlsparse.models.external)
        weights, size = hparams.arch_weights, hparams.arch_input_size
        return ARCHS[hparams.arch](input_shape, num_classes, factory, weights=weights, size=size)
    return ARCHS[hparams.arch](input_shape, num_classes, factory)


def build_primal_optimizer(hparams: HParams, model: nn.Module, gates_lr: float | None = None) -> torch.optim.Optimizer:
    """One optimizer, two groups: weights (decayed by the schedule) and gates (own lr, never decayed;
    ``gates_lr``: the budget-scaled one, :func:`~ctrlsparse.training.budget.control_rates`)."""
    gates = gate_parameters(model)
    gate_ids = {id(p) for p in gates}
    weights = [p for p in model.parameters() if id(p) not in gate_ids]
    groups = [{"params": weights, "lr": hparams.lr, "name": "weights"}]
    if gates:
        gate_group = {"params": gates, "lr": hparams.gates_lr if gates_lr is None else gates_lr, "name": "gates"}
        if hparams.optimizer == "adam":
            gate_group["betas"] = (0.9, hparams.gates_beta2)
        groups.append(gate_group)
    # foreach: one multi-tensor kernel per update op instead of a Python loop over parameters (torch only
    # picks it by default on CUDA; on CPU it removes most of the per-parameter overhead of small models)
    if hparams.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hparams.lr, momentum=hparams.momentum, foreach=True)
    return torch.optim.Adam(groups, lr=hparams.lr, foreach=True)


def weights_lr(hparams: HParams, epoch: int) -> float:
    """Multi-step schedule of the weights' learning rate (epoch counts from 0)."""
    passed = sum(1 for milestone in hparams.lr_milestones if epoch >= milestone)
    return hparams.lr * hparams.lr_gamma**passed


def set_learning_rates(run: Run, epoch: int) -> None:
    for group in run.primal.param_groups:
        group["lr"] = weights_lr(run.hparams, epoch) if group["name"] == "weights" else gates_lr(run, epoch)


def gates_lr(run: Run, epoch: int) -> float:
    """The gates' learning rate in ``epoch``: 0 once they are fixed (``fix_gates``)."""
    return run.rates.gates_lr if epoch < fixed_from(run.hparams) else 0.0


def load_data(hparams: HParams, processes: distributed.Processes) -> TensorData:
    """The run's data set from the data root; with several processes only rank 0 downloads or checks an image
    folder (the others wait), and each process keeps its share of every minibatch."""
    load = DATASETS[hparams.dataset]
    root, workers = data_root(hparams.data_root), distributed.data_workers(hparams, processes)
    if hparams.dataset == "imagefolder":  # your images: their size and normalisation are hyperparameters
        images = {"image_size": hparams.image_size, "image_mean": hparams.image_mean, "image_std": hparams.image_std}
        load = functools.partial(load, **images)
    checked = hparams.dataset in ("imagefolder", "imagenet")  # their files are decoded once before training
    if checked:
        load = functools.partial(load, skip_bad_images=hparams.skip_bad_images)
    first = processes.main or not (hparams.download or checked)  # the others then find the verdict cached
    data = load(root, download=hparams.download, workers=workers) if first else None
    if (hparams.download or checked) and processes.world > 1:
        distributed.barrier()
    data = data if data is not None else load(root, download=False, workers=workers)
    data.shard = processes.shard
    return data


def teacher_model(hparams: HParams, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> nn.Module:
    """The dense run ``hparams.pretrained``'s model, frozen, in eval mode (the teacher of ``--distill``)."""
    state = dense_checkpoint(hparams, device)
    known = {field.name for field in dataclasses.fields(HParams)}  # the dense run's own settings build its model
    dense = HParams.from_dict({key: value for key, value in state["hparams"].items() if key in known})
    teacher = build_model(dense, input_shape, num_classes)
    teacher.load_state_dict(state["model"])
    return teacher.to(device).eval().requires_grad_(False)


def build_run(hparams: HParams) -> Run:
    processes, device = distributed.start(resolve_device(hparams.device))
    if hparams.threads:
        torch.set_num_threads(distributed.threads_per_process(hparams.threads, processes))
    data = load_data(hparams, processes).to(device)
    torch.manual_seed(hparams.seed)
    model = forward.prepare_model(build_model(hparams, data.input_shape, data.num_classes), hparams, device)
    round_channels_(model, hparams.round_channels)  # the eval model's channel counts (ctrlsparse.layers.Gates)
    # the example input: a problem whose constraints need the traced model (budgets) traces the plain model on it
    problem = METHODS[hparams.method](model, hparams, torch.zeros(1, *data.input_shape, device=device))
    if hparams.distill:  # the dense run's model, to distil into the gated one
        problem.teacher = teacher_model(hparams, data.input_shape, data.num_classes, device)
    problem.model = forward.training_forward(model, hparams, device, processes)  # DDP, autocast, compile
    rates = control_rates(hparams, data.num_train)
    primal = build_primal_optimizer(hparams, model, rates.gates_lr)
    generator = torch.Generator().manual_seed(hparams.seed)
    optimizer = problem.build_optimizer(primal, rates.dual_lr)
    evaluator = forward.eval_forward(model, hparams, device)
    return Run(hparams, device, data, model, problem, primal, optimizer, evaluator, generator, rates, processes)
