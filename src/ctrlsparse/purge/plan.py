"""Which channels of every tensor the purged model keeps (paper.md §4, steps 1 and 3, as a dataflow analysis).

Two passes over the traced graph, one boolean mask per tensor over its channels (dim 1):

- forward, ``nonzero``: channels that may be non-zero. A gated conv's channels with eval gate 0 are zero
  (its bias is gated with them); zero stays zero through ReLU, pooling, a depthwise conv without bias and the
  masked BatchNorm; an add is
  non-zero where either side is; a plain BatchNorm turns zero into its shift, so everything is non-zero after it.
- backward, ``needed``: channels some consumer reads. A gated Linear does not read inputs whose gate is 0;
  channel-wise ops, adds and flattens pass their needs back; anything else reads every channel.

A tensor keeps ``nonzero & needed`` (at least one channel, so that every layer stays a valid module): a channel
that is left out is either exactly zero or read by nobody. That is the only rule the rebuild relies on.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn

from ctrlsparse import gates as hc
from ctrlsparse.layers import GatedLayer, L0Conv2d, L0Linear
from ctrlsparse.purge.graph import Traced, flatten_area, kind

PASS_THROUGH = ("channelwise", "depthwise", "batchnorm", "add", "flatten")


def open_gates(layer: GatedLayer) -> Tensor:
    """Boolean mask of the groups whose eval (median) gate is non-zero."""
    return hc.median_gates(layer.log_alpha.detach()).cpu() > 0


def tensor_inputs(node: fx.Node, traced: Traced) -> list[fx.Node]:
    """The node's arguments that are tensors with a channel dimension."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda arg: found.append(arg) or arg)
    return [arg for arg in found if traced.channels(arg) is not None]


class Plan:
    """Per-node kind, non-zero and needed masks, and the channels each tensor keeps."""

    def __init__(self, traced: Traced):
        self.traced = traced
        self.kinds = {node: kind(node, traced) for node in traced.module.graph.nodes}
        self.nonzero: dict[fx.Node, Tensor] = {}
        self.needed: dict[fx.Node, Tensor] = {}
        nodes = list(traced.module.graph.nodes)
        for node in nodes:
            width = traced.channels(node)
            if width is not None:
                self.nonzero[node] = self._nonzero(node, width)
                self.needed[node] = torch.zeros(width, dtype=torch.bool)
        for node in reversed(nodes):
            self._pass_needs_back(node)

    def module(self, node: fx.Node) -> nn.Module:
        return self.traced.modules[str(node.target)]

    def bn_mask(self, node: fx.Node) -> Tensor | None:
        """The constant channel mask an ``L0BatchNorm2d`` call was traced with (None: a plain BatchNorm)."""
        if len(node.args) > 1 and isinstance(node.args[1], fx.Node):
            return self.traced.constant(node.args[1]).detach().cpu().bool()
        return None

    def _nonzero(self, node: fx.Node, width: int) -> Tensor:
        everything = torch.ones(width, dtype=torch.bool)
        node_kind = self.kinds[node]
        if node_kind == "weight":
            module = self.module(node)
            return open_gates(module) if isinstance(module, L0Conv2d) else everything
        if node_kind == "batchnorm":
            mask = self.bn_mask(node)
            return everything if mask is None else self.nonzero[node.args[0]] | mask
        if node_kind == "channelwise" or (node_kind == "depthwise" and self.module(node).bias is None):
            return self.nonzero[node.args[0]].clone()
        if node_kind == "add":
            return self.nonzero[node.args[0]] | self.nonzero[node.args[1]]
        if node_kind == "flatten":
            return self.nonzero[node.args[0]].repeat_interleave(flatten_area(node, self.traced))
        return everything

    def input_needs(self, node: fx.Node) -> Tensor | None:
        """What a ``weight`` node reads of its input (None: every channel)."""
        module = self.module(node)
        return open_gates(module) if isinstance(module, L0Linear) else None

    def _pass_needs_back(self, node: fx.Node) -> None:
        node_kind = self.kinds[node]
        if node_kind == "batch_size":
            return
        if node_kind in PASS_THROUGH:
            out = self.needed[node]
            sources = node.args[:2] if node_kind == "add" else node.args[:1]
            for source in sources:
                if node_kind == "flatten":
                    self.needed[source] |= out.view(self.traced.channels(source), -1).any(1)
                else:
                    self.needed[source] |= out
            return
        if node_kind == "weight":
            source = node.args[0]
            needs = self.input_needs(node)
            self.needed[source] |= True if needs is None else needs
            return
        for source in tensor_inputs(node, self.traced):
            self.needed[source] |= True

    def kept(self, node: fx.Node) -> Tensor:
        """Indices (into the full width) of the channels the purged tensor holds, sorted; never empty."""
        keep = self.nonzero[node] & self.needed[node]
        if not keep.any():
            keep = keep.clone()
            keep[0] = True  # an all-closed layer keeps one (all-zero) channel
        return keep.nonzero().flatten()
