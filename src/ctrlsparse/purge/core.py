"""``purge(model, example)``: the gated model's eval function as a smaller model of plain modules."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from ctrlsparse import gates as hc
from ctrlsparse.channels import trace
from ctrlsparse.layers import gated_layers
from ctrlsparse.purge.build import Builder
from ctrlsparse.purge.plan import eval_flow


@torch.no_grad()
def purge(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """A model of plain modules that computes what ``model`` computes in eval mode, without the closed groups.

    Eval (median) gates decide: a group whose gate is 0 is removed, fractional gates are folded into the
    weights (or one multiply). ``example`` is one input batch (any batch size); it fixes the shapes the trace
    sees. A model without gates (the dense baseline) comes back as the same function in plain modules.
    Unstructured models are not purged (paper.md §4): they have no channels to remove.
    """
    unstructured = [name for name, layer in gated_layers(model) if not layer.structured]
    if unstructured:
        raise ValueError(
            f"layer {unstructured[0]} is gated per weight (unstructured); only structured models can be purged"
        )
    training = model.training
    model.eval()
    try:
        flow = eval_flow(trace(model, example))
        builder = Builder(flow)
        for node in flow.graph.nodes:
            builder.emit(node)
    finally:
        model.train(training)
    graph = fx.GraphModule(builder.attributes, builder.new).graph
    graph.eliminate_dead_code()  # e.g. the masks the L0BatchNorm2d calls were traced with
    purged = fx.GraphModule(builder.attributes, graph, class_name="PurgedModel")  # takes only what graph uses
    return purged.to(example.device).eval()  # index buffers are built on the CPU


@torch.no_grad()
def purge_dense(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """The dense baseline of ``model``: its architecture with every gate open, in the same plain modules as
    :func:`purge` emits (what a user would deploy without sparsity; its weights are not the trained ones)."""
    dense = copy.deepcopy(model)
    for _, unit in gated_layers(dense):
        unit.log_alpha.fill_(hc.LOG_ALPHA_MAX)  # eval gate 1
    return purge(dense, example)
